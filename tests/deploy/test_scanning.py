"""The security scans of scripts/scan: the repository passes each, and each fails on a planted finding.

Every scan runs the real tool (bandit, hadolint, detect-secrets, semgrep, pip-audit, cyclonedx-py)
on a small temporary copy of the parts of the repository it reads, with one finding planted.
The image gate (deploy/scan/image_gate.py) reads what the pipeline's On-Demand Scanning prints;
it is fed planted scan results. Both pipelines run these same commands (test_cloudbuild.py
checks the steps exist and gate the build).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import ROOT

SCAN = ROOT / "scripts" / "scan"
SEMGREP = ROOT / ".tools" / "semgrep" / "bin" / "semgrep"

pytestmark = pytest.mark.xdist_group("scans")  # the scans are CPU-heavy: one worker runs them in turn


def scan(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(SCAN), *args], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, f"scripts/scan {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def copy_of(tmp_path: Path, *names: str) -> Path:
    """A scratch checkout holding only ``names`` (files or folders) of the repository."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in names:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


def needs_semgrep() -> None:
    if not SEMGREP.exists():
        pytest.fail("semgrep is not installed in .tools/semgrep: run scripts/bootstrap --test")


# --- bandit --------------------------------------------------------------------------------------------


def test_bandit_fails_on_a_planted_shell_injection(tmp_path: Path) -> None:
    root = copy_of(tmp_path, "pyproject.toml")
    (root / "src").mkdir()
    (root / "src" / "planted.py").write_text("import subprocess\n\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n")
    done = scan("bandit", str(root))
    assert done.returncode != 0 and "B602" in done.stdout + done.stderr


# --- hadolint ------------------------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile_and_fails_a_planted_one(tmp_path: Path) -> None:
    scan("hadolint", check=True)
    root = tmp_path / "planted"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    done = scan("hadolint", str(root))
    assert done.returncode != 0 and "DL3007" in done.stdout  # an unpinned base image


# --- secrets -------------------------------------------------------------------------------------------


def test_the_repository_holds_no_secret_outside_the_baseline() -> None:
    scan("secrets", check=True)


def test_a_planted_secret_fails_the_secret_scan(tmp_path: Path) -> None:
    root = copy_of(tmp_path, ".secrets.baseline")
    begin, end = "-----BEGIN RSA " + "PRIVATE KEY-----", "-----END RSA " + "PRIVATE KEY-----"
    # Put together here so that this test file is not itself a finding.
    (root / "settings.py").write_text(
        f'AWS_ACCESS_KEY_ID = "{"AKIA" + "Z7Q3XJ4LMNP2RT5W"}"\nKEY = """{begin}\nMIIEpAIBAAKCAQEA\n{end}"""\n'
    )
    done = scan("secrets", str(root))
    assert done.returncode != 0
    assert "AWS Access Key" in done.stdout and "Private Key" in done.stdout


# --- semgrep -------------------------------------------------------------------------------------------

PLANTED_PY = '''
import hmac, os, pickle, subprocess, yaml, jinja2, httpx
from sqlalchemy import text

def bad(cmd, data, conn, name, settings, log, presented):
    subprocess.run(cmd, shell=True)
    eval(data)
    pickle.loads(data)
    conn.execute("SELECT * FROM tracks WHERE title = '%s'" % name)
    httpx.get("https://example.org", verify=False)
    jinja2.Environment(autoescape=False)
    log.info("token %s", settings.bearer_token.get_secret_value())
    return presented == settings.bearer_token.get_secret_value()
'''


def semgrep_rules() -> set[str]:
    import yaml

    rules = yaml.safe_load((ROOT / "deploy" / "scan" / "semgrep.yml").read_text())["rules"]
    return {rule["id"] for rule in rules}


def test_semgrep_passes_the_source_and_every_rule_catches_its_planted_finding(tmp_path: Path) -> None:
    needs_semgrep()
    scan("semgrep", check=True)
    root = copy_of(tmp_path, "deploy/scan/semgrep.yml")
    (root / "src").mkdir()
    (root / "src" / "planted.py").write_text(PLANTED_PY)
    done = scan("semgrep", str(root))
    assert done.returncode != 0, done.stdout + done.stderr
    compact = re.sub(r"\s+", "", done.stdout)  # semgrep wraps long rule ids across lines
    assert {rule for rule in semgrep_rules() if f"scan.{rule}" not in compact} == set(), done.stdout


# --- pip-audit, the lock and the SBOM ------------------------------------------------------------------


def lock_pins() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of every entry in requirements.lock."""
    text = (ROOT / "requirements.lock").read_text()
    pins: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", block)
        if match:
            pins[canonicalize_name(match[1])] = (match[2], block.count("--hash=sha256:"))
    return pins


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    pins = lock_pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [Requirement(r) for r in project["project"]["dependencies"]]
    wanted += [Requirement(r) for r in project["build-system"]["requires"]]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is not in requirements.lock: regenerate it (docs/security.md)"
        assert req.specifier.contains(pins[name][0], prereleases=True), f"lock has {name}=={pins[name][0]}, pyproject wants {req}"
    assert all(count >= 1 for _, count in pins.values()), "every locked package needs its hashes"
    assert "--extra-index-url" not in (ROOT / "requirements.lock").read_text()  # no machine-local index


def test_pip_audit_is_strict_an_unauditable_dependency_fails_it(tmp_path: Path) -> None:
    """Offline, pip-audit cannot reach a vulnerability database: --strict makes that a failure
    (without it the step would pass having audited nothing)."""
    root = tmp_path / "planted"
    root.mkdir()
    (root / "requirements.lock").write_text(
        "loist-no-such-package==0.0.1 --hash=sha256:" + "0" * 64 + "\n"
    )
    done = scan("audit", str(root))
    assert done.returncode != 0, done.stdout + done.stderr


def test_the_sbom_lists_what_the_image_installs(tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    scan("sbom", str(ROOT), str(out), check=True)
    sbom = json.loads(out.read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    components = {canonicalize_name(c["name"]): c["version"] for c in sbom["components"]}
    assert {name: version for name, (version, _) in lock_pins().items()} == components


# --- the image gate ------------------------------------------------------------------------------------


def occurrence(cve: str, severity: str, fixable: bool) -> dict[str, object]:
    return {
        "noteName": f"projects/goog-vulnz/notes/{cve}",
        "vulnerability": {"effectiveSeverity": severity, "fixAvailable": fixable,
                          "packageIssue": [{"affectedPackage": "openssl"}]},
    }


@pytest.mark.parametrize(
    ("found", "allowed", "fails"),
    [
        ([], [], False),
        ([occurrence("CVE-1", "CRITICAL", True)], [], True),
        ([occurrence("CVE-2", "HIGH", True), occurrence("CVE-3", "LOW", True)], [], True),
        ([occurrence("CVE-4", "CRITICAL", False), occurrence("CVE-5", "MEDIUM", True)], [], False),
        ([occurrence("CVE-6", "HIGH", True)], ["CVE-6"], False),  # an accepted risk, named
    ],
)
def test_the_image_gate_fails_on_fixable_high_or_critical(found: list[object], allowed: list[str], fails: bool) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "scan" / "image_gate.py"), *allowed],
                          input=json.dumps(found), capture_output=True, text=True, timeout=60)
    assert done.returncode == (1 if fails else 0), done.stdout


def test_the_pipelines_install_the_semgrep_that_runs_here() -> None:
    version = re.search(r"^SEMGREP_VERSION=(\S+)$", (ROOT / "scripts" / "bootstrap").read_text(), re.M)
    assert version
    for name in ("cloudbuild.yaml", "cloudbuild-staging.yaml"):
        assert f"'semgrep=={version[1]}'" in (ROOT / name).read_text(), name
