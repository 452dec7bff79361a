#!/usr/bin/env bash
# Run the deployment check (`loist smoke`) against staging.
#
#   scripts/test-staging-deployment.sh [URL] [--audio-url URL] [--json] [--env staging|production]
#
# URL: the argument, else $STAGING_URL, else the Cloud Run service's URL
#   (gcloud run services describe loist-staging).
#   With --env production: loist-production and production's secrets (what that pipeline needs).
# Token: $SMOKE_BEARER_TOKEN if set, else Secret Manager mcp-bearer-token-staging. It is handed to
#   `loist smoke` through the environment, never on a command line, and never printed.
# Audio: --audio-url / $SMOKE_AUDIO_URL, else (for a non-loopback URL) a WAV made here, uploaded to
#   the staging bucket under tmp/ (deleted on exit, and by the bucket's 1-day tmp/ rule) and
#   signed for 15 minutes as the runtime service account.
# Environment: LOIST_PROJECT (default: gcloud's project), LOIST_REGION (default us-central1),
#   LOIST_BIN (default: the repo's .venv/bin/loist, else loist on PATH).
# Exit code: loist smoke's (0 only when every check passed). Names: deploy/infra/loist_infra/envspec.py.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

env_name="staging"
region="${LOIST_REGION:-us-central1}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
loist="${LOIST_BIN:-}"
if [[ -z "$loist" ]]; then
  if [[ -x "$repo/.venv/bin/loist" ]]; then loist="$repo/.venv/bin/loist"; else loist="loist"; fi
fi

url="${STAGING_URL:-}"
audio_url="${SMOKE_AUDIO_URL:-}"
extra=()
while (($#)); do
  case "$1" in
    --audio-url) audio_url="${2:?--audio-url needs a URL}"; shift ;;
    --audio-url=*) audio_url="${1#--audio-url=}" ;;
    --json) extra+=(--json) ;;
    --env) env_name="${2:?--env needs staging or production}"; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "test-staging-deployment: unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) url="$1" ;;
  esac
  shift
done

case "$env_name" in
  staging | production) ;;
  *) echo "test-staging-deployment: --env must be staging or production, got $env_name" >&2; exit 2 ;;
esac
service="loist-${env_name}"

project_args=()
if [[ -n "${LOIST_PROJECT:-}" ]]; then project_args=(--project "$LOIST_PROJECT"); fi

if [[ -z "$url" ]]; then
  url="$(gcloud run services describe "$service" --region "$region" "${project_args[@]}" --format='value(status.url)')"
  [[ -n "$url" ]] || { echo "test-staging-deployment: service $service has no URL yet (not deployed?)" >&2; exit 1; }
fi

if [[ -z "${SMOKE_BEARER_TOKEN:-}" ]]; then
  SMOKE_BEARER_TOKEN="$(gcloud secrets versions access latest --secret="mcp-bearer-token-${env_name}" "${project_args[@]}")"
fi
export SMOKE_BEARER_TOKEN

is_loopback() {
  local host="${1#*://}"; host="${host%%/*}"; host="${host%:*}"; host="${host#[}"; host="${host%]}"
  [[ "$host" == "localhost" || "$host" == 127.* || "$host" == "::1" ]]
}

object=""
cleanup() {
  if [[ -n "$object" ]]; then
    gcloud storage rm "$object" "${project_args[@]}" --quiet >/dev/null 2>&1 || echo "could not delete $object (the tmp/ lifecycle rule will)" >&2
  fi
}
trap cleanup EXIT

if [[ -z "$audio_url" ]] && ! is_loopback "$url"; then
  project="${LOIST_PROJECT:-$(gcloud config get project 2>/dev/null)}"
  [[ -n "$project" ]] || { echo "test-staging-deployment: set LOIST_PROJECT (no default project is configured)" >&2; exit 2; }
  bucket="$(gcloud secrets versions access latest --secret="gcs-bucket-name-${env_name}" "${project_args[@]}")"
  scratch="$(mktemp -d)"
  wav="$scratch/loist-smoke-$(date +%s)-$$.wav"
  python_bin="$(dirname "$(command -v "$loist")")/python"
  [[ -x "$python_bin" ]] || python_bin="python3"
  "$python_bin" -c 'import sys; from loist.ops.smoke import smoke_wav; open(sys.argv[1], "wb").write(smoke_wav())' "$wav"
  object="gs://${bucket}/tmp/$(basename "$wav")"
  gcloud storage cp "$wav" "$object" "${project_args[@]}" --quiet
  rm -rf "$scratch"
  audio_url="$(gcloud storage sign-url "$object" --duration=15m --region="$region" \
    --impersonate-service-account="loist-run-${env_name}@${project}.iam.gserviceaccount.com" \
    "${project_args[@]}" --format='value(signed_url)')"
fi

if [[ -n "$audio_url" ]]; then export SMOKE_AUDIO_URL="$audio_url"; fi
echo "checking $url" >&2
"$loist" smoke --base-url "$url" "${extra[@]}"
