r"""Input parsing, classification and expansion into one entry per video.

A line is a URL (video, playlist, channel, RSS feed, HTML page, direct media file) or
a local media file or folder. Blank lines and ``#`` comments are skipped; a line that
cannot be a source is reported with its line number and skipped, and the rest of the
batch runs. Expansion uses yt-dlp's ``extract_flat`` so a 7,000-video channel lists
in one request per page instead of one per video.

Bad input never aborts a run: nothing a line says (a broken URL, an unreadable folder,
bytes that are not UTF-8, a hostile feed) may raise out of :func:`expand`. Lines are
split on ``\n`` only (``\r\n`` is one break), because ``str.splitlines()`` also breaks
on ``\v \f \x1c-\x1e \x85 \u2028 \u2029`` and a lone ``\r``, and every line number
after such a character would be wrong.

This module is the front door: :func:`expand` and its summary here, the parts by job beside it and
named here too for every caller — the input's text and lines (:mod:`.source_text`), what kind of source
a line is (:mod:`.source_kinds`), entries and filters (:mod:`.source_entries`), local files and folders
(:mod:`.source_local`), URL listings (:mod:`.source_listing`), repaired feeds (:mod:`.source_feeds`) and
the bounded duration and title probe of direct media (:mod:`.source_probe`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pipeline import errors
from pipeline.common.lines import InvalidLine, printable
from pipeline.errors import InvalidInput
from pipeline.recipes.transcribe.source_entries import (
    MAX_TITLE_CHARS,
    SMUGGLE,
    Entry,
    Expansion,
    Filters,
    apply_filters,
    clean_title,
    merge_duplicate,
    strip_smuggle,
)
from pipeline.recipes.transcribe.source_feeds import FEED_MAX_BYTES, feed_info, repair_feed
from pipeline.recipes.transcribe.source_kinds import MEDIA_EXTS, SYSTEM_DIRS, classify
from pipeline.recipes.transcribe.source_listing import (
    LISTING_DEADLINE_S,
    list_url,
    list_with_deadline,
    media_entry,
    unlisted_entry,
)
from pipeline.recipes.transcribe.source_local import MAX_FOLDER_ENTRIES, local_entries, local_id
from pipeline.recipes.transcribe.source_probe import PROBE_BUDGET_S, probe_entries
from pipeline.recipes.transcribe.source_text import (
    MAX_INPUT_BYTES,
    MAX_LINE_CHARS,
    decode_input,
    drop_undecodable,
    numbered_lines,
    parse_lines,
    read_input,
)

__all__ = [
    "FEED_MAX_BYTES", "LISTING_DEADLINE_S", "MAX_FOLDER_ENTRIES", "MAX_INPUT_BYTES", "MAX_LINE_CHARS",
    "MAX_TITLE_CHARS", "MEDIA_EXTS", "PROBE_BUDGET_S", "SMUGGLE", "SYSTEM_DIRS", "Entry", "Expansion", "Filters",
    "InvalidLine",
    "apply_filters", "classify", "clean_title", "decode_input", "drop_undecodable", "expand", "feed_info",
    "list_url", "local_entries", "local_id", "media_entry", "merge_duplicate", "numbered_lines", "parse_lines",
    "printable", "probe_entries", "read_input", "repair_feed", "strip_smuggle", "summarize_expansion",
]


def expand(
    text: str,
    filters: Filters | None = None,
    *,
    ydl_opts: dict[str, Any] | None = None,
    on_source: Callable[[int, int, str], None] | None = None,
    probe: bool = False,
) -> Expansion:
    """Parse, classify, list and filter every source; deduplicate by canonical id.

    A source that cannot be listed (404 feed, unreachable page) is kept as one entry
    so the batch records why it failed instead of silently dropping it. A line that
    cannot be a source is reported once per occurrence, each with its own line number
    (a repeated good line is listed once); a folder's unreadable files and a feed's
    unusable entries are reported on the folder's or feed's line, and the rest of it runs.

    A repeated line counts as duplicates the videos its first occurrence gave, as a video listed by two
    lines does. With ``probe``, direct media whose listing gave no duration (or only a file name for a
    title) are probed, bounded in time (:func:`.source_probe.probe_entries`): for the preview and
    ``--dry-run``, whose totals need durations before anything is downloaded. Off by default, since the
    probe is a request to every such URL and a listing for a batch about to run does not need it.
    """
    filters = filters or Filters()
    lines, invalid = numbered_lines(text)
    result = Expansion(invalid=list(invalid))
    total = len({line for _, line in lines})
    verdicts: dict[str, str | InvalidInput] = {}
    listed: dict[str, int] = {}  # line -> how many videos it gave (after the filters), for its repeats
    seen: dict[str, Entry] = {}
    for no, line in lines:
        if line not in verdicts:
            try:
                verdicts[line] = classify(line)
            except InvalidInput as exc:
                verdicts[line] = exc
        kind = verdicts[line]
        if isinstance(kind, InvalidInput):
            result.invalid.append(InvalidLine(no, line, str(kind)))
            continue
        if line in listed:
            result.duplicates += listed[line]  # a repeated line: each video it gave is removed once more
            continue
        listed[line] = 0
        if on_source:
            on_source(len(listed), total, line)
        found = _entries_of(no, line, kind, filters, ydl_opts, result)
        if found is not None:
            listed[line] = _keep(found, kind, filters, result, seen)
    result.invalid.sort(key=lambda bad: bad.line_no)
    if probe:
        probe_entries(result.entries, ydl_opts)
    return result


def _entries_of(no: int, line: str, kind: str, filters: Filters, ydl_opts: dict[str, Any] | None,
                result: Expansion) -> list[Entry] | None:
    """What one source line lists, its skipped parts reported on its line in ``result``; ``None`` when the
    line itself is refused (a local file that cannot be read). A URL that cannot be listed is one entry."""
    notes: list[tuple[str, str]] = []  # (path or entry URL, reason): skipped parts of this line
    if kind == "local":
        try:
            found = local_entries(line, notes)
        except InvalidInput as exc:
            result.invalid.append(InvalidLine(no, line, str(exc)))
            return None
    elif kind == "media":
        found = [media_entry(line)]
    else:
        try:
            found = list_with_deadline(line, kind, filters, ydl_opts, notes)
        except errors.TubemillError as exc:
            result.failed.append((line, str(exc)))
            found = [unlisted_entry(line)]
    result.invalid += [InvalidLine(no, what, why) for what, why in notes]
    return found


def _keep(found: list[Entry], kind: str, filters: Filters, result: Expansion, seen: dict[str, Entry]) -> int:
    """Filter one line's entries into ``result``, counting what the filters and earlier lines took; returns
    how many passed the filters (what each repeat of this line counts as duplicates). A video listed again
    lends the first listing what it knows better (:func:`merge_duplicate`)."""
    kept = apply_filters(found, filters) if kind != "local" or filters != Filters() else found
    result.filtered += len(found) - len(kept)
    for e in kept:
        if e.id in seen:
            result.duplicates += 1
            merge_duplicate(seen[e.id], e)
            continue
        seen[e.id] = e
        result.entries.append(e)
    return len(kept)


def summarize_expansion(x: Expansion) -> Iterable[str]:
    """Human lines for the CLI and the preview."""
    if x.entries:
        yield f"{len(x.entries)} video(s) to process"
    if x.duplicates:
        yield f"{x.duplicates} duplicate(s) skipped"
    if x.filtered:
        yield f"{x.filtered} filtered out"
    for bad in x.invalid:
        yield f"skipped invalid input, {bad}"
    for src, why in x.failed:
        yield f"could not list {src}: {why} (kept as one item; it will be retried or fail with this reason)"
