"""What the ``loist`` commands print: one JSON document (or JSON line) with ``--json``, text otherwise.

Results go to stdout; errors, progress and summaries go to stderr, so ``--json`` output can be piped
as it is. Field names are the model's (``loist.model``), the same as MCP and HTTP use.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape

from loist.errors import LoistError
from loist.model import SearchResult, Track, TrackPage, TrackStatus

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from loist.config import Settings
    from loist.library.pipeline import IngestOutcome
    from loist.library.transfer import ExportReport
    from loist.ops.smoke import SmokeReport

# soft_wrap: a line longer than the terminal is never broken with a real newline nor cut with "…"
# (a copied cursor, URL or hash must stay whole), on a terminal, a pipe or a file alike.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def say(text: str) -> None:
    """One line of result text on stdout."""
    out.print(text, highlight=False)


def note(text: str) -> None:
    """One line for the person at the terminal on stderr (summaries, hints, failures)."""
    err.print(text, highlight=False)


def error(exc: LoistError, as_json: bool) -> None:
    if as_json:
        print_json({"error": exc.to_dict()})
    else:
        err.print(f"[red]error[/red] {exc.code}: {escape(exc.message)}", highlight=False, markup=True)


def failed_item(name: str, code: str, message: str) -> None:
    note(f"[red]FAILED[/red] {escape(name)}: {code}: {escape(message)}")


def track_summary(track: Track) -> str:
    t = track.tags
    who = t.artist or "unknown artist"
    title = t.title or track.source.original_filename or str(track.id)
    dur = f"{track.audio.duration_s:.1f}s" if track.audio.duration_s is not None else "?"
    return f"{track.id}  {who} - {title}  [{track.audio.format or '?'}, {dur}]"


# --- tracks ------------------------------------------------------------------------------------
def pairs(rows: list[tuple[str, str]]) -> None:
    """``name  value`` lines, names aligned; values are printed whole (never cut to the terminal)."""
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        out.print(f"{name:<{width}}  {value}", highlight=False, markup=False)


def track(track: Track, embed_url: str, as_json: bool) -> None:
    if as_json:
        print_json(track.model_dump(mode="json") | {"embed_url": embed_url})
        return
    data = track.model_dump(mode="json")
    rows: list[tuple[str, str]] = []
    for section in ("tags", "audio", "artwork", "source"):
        for key, value in data.pop(section).items():
            if value not in (None, [], ""):
                rows.append((f"{section}.{key}", str(value)))
    rows += [(key, str(value)) for key, value in data.items() if value is not None]
    rows.append(("embed_url", embed_url))
    pairs(rows)


LIST_COLUMNS = ("ID", "ARTIST", "TITLE", "ALBUM", "YEAR", "DURATION", "FORMAT")
MAX_COLUMN = 40  # a longer value is printed whole; it only stops aligning the columns after it


def track_page(page: TrackPage, as_json: bool, *, where: str = "", status: TrackStatus | None = None) -> None:
    """A page of ``loist list``: one aligned row per track (columns :data:`LIST_COLUMNS`), then the
    cursor of the next page; an empty library says where it looked."""
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    if not page.items:
        what = f"no {status.value} tracks" if status and status != TrackStatus.COMPLETED else "the library is empty"
        note(f"{what} at {where}" + ("" if what != "the library is empty" else " (add music with `loist ingest PATH_OR_URL`)"))
        return
    rows = [LIST_COLUMNS, *(_list_row(item) for item in page.items)]
    widths = [min(MAX_COLUMN, max(cell_len(row[i]) for row in rows)) for i in range(len(LIST_COLUMNS))]
    for row in rows:  # padded by terminal cells, so wide (CJK) characters keep the columns aligned
        cells = (cell + " " * max(0, width - cell_len(cell)) for cell, width in zip(row, widths, strict=True))
        out.print("  ".join(cells).rstrip(), highlight=False, markup=False)
    if page.next_cursor:
        note(f"more: loist list --cursor {page.next_cursor}")


def _list_row(item: Track) -> tuple[str, ...]:
    t, a = item.tags, item.audio
    if item.status == TrackStatus.FAILED:
        return (str(item.id), "FAILED", f"{item.error_code} ({item.attempts}x)", item.source.location or "", "", "", "")
    title = t.title or item.source.original_filename or ""
    return (str(item.id), t.artist or "", title, t.album or "", str(t.year or ""), duration(a.duration_s), a.format or "")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def search_result(result: SearchResult, as_json: bool) -> None:
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    for hit in result.items:
        say(f"{hit.score:6.0f}  {track_summary(hit.track)}")
    total = f"{result.total:,}" + ("+" if result.total_relation == "gte" else "")  # "1,000+": counting stopped
    note(f"{total} match(es)" + (f"; more: --cursor {result.next_cursor}" if result.next_cursor else ""))
    if result.facets:
        for name, counts in result.facets.items():
            note(f"{name}: " + ", ".join(f"{k} ({v})" for k, v in counts.items()))


def deleted(track: Track, as_json: bool) -> None:
    if as_json:
        print_json({"deleted": str(track.id)})
    else:
        say(f"deleted {track.id}")


class IngestView:
    """The output of one ``loist ingest``: a line per input (or a progress bar), then a summary.

    Used as a context manager around the ingest, so the progress bar (text mode on a terminal) is
    removed again however the ingest ends.
    """

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.show_bar = not as_json and err.is_terminal
        self.counts = {"created": 0, "existing": 0, "failed": 0, "skipped": 0, "interrupted": 0}
        self.started = time.perf_counter()
        self.seconds = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> IngestView:
        if self.show_bar:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.1f} files/s  failed {task.fields[failed]}"),
                TimeElapsedColumn(), console=err, transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("ingest", total=None, rate=0.0, failed=0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        self.seconds = round(time.perf_counter() - self.started, 3)

    def planned(self, total: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)

    def add(self, outcome: IngestOutcome) -> None:
        self.counts[_kind(outcome)] += 1
        if self.as_json:
            print_json(outcome.to_dict())
        elif outcome.interrupted:
            pass  # counted: the summary says how many were not ingested
        elif outcome.skipped:
            note(f"skipped {escape(outcome.input)}: {outcome.to_dict()['reason']}")
        elif outcome.error is not None:
            failed_item(outcome.input, outcome.error.code, outcome.error.message)
        elif not outcome.skipped and outcome.track is not None and not self.show_bar:
            say(f"{'added' if outcome.created else 'exists'}  {track_summary(outcome.track)}")
        if self._bar is not None and self._task is not None:
            done = sum(self.counts.values())
            elapsed = max(time.perf_counter() - self.started, 1e-6)
            self._bar.update(self._task, completed=done, rate=done / elapsed, failed=self.counts["failed"])

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    def summary(self, signum: int | None = None) -> None:
        """The closing line (text mode); ``signum``: the signal that stopped the run, if one did."""
        if self.as_json:
            return
        c = self.counts
        total = c["created"] + c["existing"] + c["failed"]
        rate = total / self.seconds if self.seconds else 0.0
        note(
            f"{total} processed: {c['created']} added, {c['existing']} already in the library, "
            f"{c['failed']} failed, {c['skipped']} skipped (not audio) in {self.seconds:.2f}s "
            f"({rate:.0f} files/s)"
        )
        if signum is not None:
            import signal

            note(f"interrupted by {signal.Signals(signum).name}: {c['interrupted']} not ingested (run it again to finish)")


def _kind(outcome: IngestOutcome) -> str:
    if outcome.skipped:
        return "skipped"
    if outcome.interrupted:
        return "interrupted"
    if outcome.error is not None:
        return "failed"
    return "created" if outcome.created else "existing"


# --- administration ----------------------------------------------------------------------------
def seeded(result: dict[str, Any], synthetic: int, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    if "wiped" in result:
        say(f"wiped {result['wiped']} tracks")
    if "audio" in result:
        a = result["audio"]
        formats = ", ".join(f"{k} {v}" for k, v in a["formats"].items())
        say(f"real audio: {a['created']} added, {a['existing']} already there ({formats})")
        for f in a["failed"]:
            failed_item(f["input"], f["code"], f["message"])
    if synthetic:
        say(f"added {result['added']} synthetic tracks")
    say(f"done in {result['seconds']:.1f}s")


def exported(report: ExportReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_dict())
    else:
        kind = "anonymised " if report.anonymized else ""
        say(f"exported {report.tracks} {kind}tracks to {report.path}")


def imported(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    if "wiped" in result:
        say(f"wiped {result['wiped']} tracks")
    say(
        f"read {result['read']}: {result['created']} added, {result['existing']} already there; blobs "
        f"{result['copied']} copied, {result['regenerated']} regenerated ({result['fell_back']} after a failed copy)"
        f" in {result['seconds']:.1f}s"
    )
    for f in result["failed"]:
        failed_item(f["id"], f["code"], f["message"])


def fsck_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(report)
        return
    for item in report["items"]:
        where = item.get("key") or item.get("path")
        track = f" (track {item['track_id']}, {item['blob']})" if "track_id" in item else ""
        say(f"{item['kind']:<15} {where}{track}" + (f"  -> {item['action']}" if item["action"] else ""))
    if report["items_truncated"]:
        note(f"(the first {len(report['items'])} items; the counts below are complete)")
    say(
        f"checked {report['rows_checked']} rows and {report['blobs_checked']} blobs: "
        f"{report['missing_blobs']} missing blobs, {report['missing_derived']} missing derived blobs, "
        f"{report['orphan_blobs']} orphan blobs, "
        f"{report['orphan_sidecars']} orphan sidecars, {report['temp_files']} temp files; "
        f"{report['repaired']} repaired, {report['remaining']} remaining"
        + (f" ({report['skipped_young']} younger than the grace period left alone)" if report["skipped_young"] else "")
    )
    if report["remaining"] and not report["repair"]:
        note("run `loist fsck --repair` to fix them")


def revision(now: str | None, as_json: bool) -> None:
    if as_json:
        print_json({"current": now})
    else:
        say(f"database at revision {now or 'base (empty)'}")


def revisions(now: str | None, head: list[str], as_json: bool) -> None:
    if as_json:
        print_json({"current": now, "head": head[0] if head else None, "up_to_date": bool(head) and now == head[0]})
    else:
        say(f"current: {now or 'base (empty)'}  head: {', '.join(head)}")


def config_report(settings: Settings, problems: list[str], as_json: bool) -> None:
    if as_json:
        print_json({"ok": not problems, "problems": problems, "settings": settings.masked()})
        return
    pairs([(key, "" if value is None else str(value)) for key, value in settings.masked().items()])
    for p in problems:
        note(f"[red]problem[/red] {p}")
    if not problems:
        note(f"configuration OK for the {settings.environment} profile")


def smoke_report(report: SmokeReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_dict())
    else:
        for line in report.lines():
            out.print(line, highlight=False, markup=False)
