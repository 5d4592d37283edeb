"""Batch outputs every recipe shares: manifest, error report, stats, combined PDF and ZIP.

Written when a batch finishes (and on demand) into the batch folder. Every text file is
replaced atomically so a reader never sees half a manifest; the ZIP is streamed to a
temp name and renamed. Nothing here reads the store: the caller hands in the batch
header and item records, so a CLI, a page or a test can export the same way.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import logging
import math
import os
import re
import time
import zipfile
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.common.formats import fmt_timestamp
from pipeline.engine.stage import safe_name
from state.storage import TEMP_PREFIX, atomic_files, atomic_write_bytes

log = logging.getLogger("pipeline")

FILE_KINDS = ("txt", "srt", "vtt", "json", "summary")
MANIFEST_FIELDS = (
    "n", "source", "id", "title", "status", "stage", "attempts", "duration",
    "error_type", "error_message", "error_stage", "retryable", "flags",
    *(f"file_{k}" for k in FILE_KINDS), "workdir",
)  # fmt: skip
_SECRET_KEY = re.compile(r"api[_-]?key|token|secret|passw(?:or)?d|cookie(?!_browsers)|credential|"
                         r"(?:^|[_-])auth(?:[_-]|$)|authorization|proxy|^user(?:name)?$|netrc", re.I)


# ---------------------------------------------------------------- small helpers


def batch_slug(batch: dict[str, Any]) -> str:
    """File-name stem for the batch's PDF and ZIP."""
    return safe_name(batch.get("name") or batch.get("id") or "", 60, "batch")


def _rel(path: str | os.PathLike[str] | None, folder: Path) -> str | None:
    """``path`` relative to ``folder`` (POSIX separators), or None when the file does not exist."""
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    return Path(os.path.relpath(p.resolve(), folder.resolve())).as_posix()


def _redact(obj: Any) -> Any:
    """Options may carry a key or cookie path by mistake; exports never repeat them."""
    if isinstance(obj, dict):
        return {k: ("***" if _SECRET_KEY.search(str(k)) and v not in (None, "", False) else _redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    return obj


def _num(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _dumps(doc: Any) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, indent=1, default=str) + "\n").encode()


# ---------------------------------------------------------------- manifest


def _item_files(item: dict[str, Any], folder: Path) -> dict[str, str | None]:
    arts = item.get("artifacts") or {}
    workdir = Path(item["workdir"]) if item.get("workdir") else folder
    files: dict[str, str | None] = {}
    for name in (*FILE_KINDS, *sorted(set(arts) - set(FILE_KINDS))):
        p = arts.get(name)
        if p and not Path(p).is_absolute():
            p = workdir / p
        rel = _rel(p, folder)
        if rel is not None or name in FILE_KINDS:
            files[name] = rel
    return files


def manifest_row(it: dict[str, Any], folder: Path) -> dict[str, Any]:
    """One item record -> its manifest entry, file paths relative to ``folder`` (null where missing)."""
    wd = it.get("workdir")
    log_rel = _rel(Path(wd) / "log.txt", folder) if wd else None
    meta = {k: v for k, v in (it.get("meta") or {}).items()
            if isinstance(v, int | float | bool) or (isinstance(v, str) and len(v) <= 300)}
    return {
        "n": it.get("n"),
        "source": it.get("source"),
        "id": it.get("id"),
        "title": it.get("title"),
        "status": it.get("status"),
        "stage": it.get("stage"),
        "attempts": it.get("attempts", 0),
        "error": it.get("error") or None,
        "files": _item_files(it, folder),
        "log": log_rel,
        "duration": it.get("duration"),
        "timings": it.get("timings") or {},
        "flags": list(it.get("flags") or []),
        "meta": _redact(meta),
        "llm": llm_ledger(it),
        "summary": summary_outcome(it),
        "workdir": Path(os.path.relpath(wd, folder)).as_posix() if wd else None,
    }


def summary_outcome(item: dict[str, Any]) -> dict[str, Any] | None:
    """How the item's summary came to be: llm, repaired (what was adjusted), offline, or fallback (why)."""
    meta = item.get("meta") or {}
    if not meta.get("summary_outcome"):
        return None
    return {"outcome": meta["summary_outcome"], "reason": meta.get("summary_reason"),
            "adjustments": list(meta.get("summary_adjustments") or [])}


def llm_ledger(item: dict[str, Any]) -> dict[str, Any] | None:
    """Tokens and cost of an item's summary (realtime, or the Batch API at half price); None when offline."""
    meta = item.get("meta") or {}
    usage = meta.get("llm_usage") or {}
    if not usage and not meta.get("llm_cost_usd"):
        return None
    return {"mode": meta.get("llm_mode"), "model": meta.get("llm_model"),
            "input_tokens": int(usage.get("input_tokens") or 0), "output_tokens": int(usage.get("output_tokens") or 0),
            "cost_usd": float(meta.get("llm_cost_usd") or 0.0)}


def _csv_cell(v: Any) -> Any:
    """Titles come from the internet: neutralize spreadsheet formulas (``=cmd|…``) with a leading quote."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def _csv_row(r: dict[str, Any]) -> dict[str, Any]:
    err = r.get("error") or {}
    flat = {k: r.get(k) for k in MANIFEST_FIELDS if k in r}
    flat.update(
        error_type=err.get("type"), error_message=err.get("message"), error_stage=err.get("stage"),
        retryable=err.get("retryable"), flags="; ".join(r.get("flags") or []),
        **{f"file_{k}": (r.get("files") or {}).get(k) for k in FILE_KINDS},
        **{f"t_{s}": round(v, 3) for s, v in (r.get("timings") or {}).items() if _num(v) is not None},
    )
    return {k: _csv_cell(v) for k, v in flat.items()}


def _csv_fields(timing_keys: Iterable[str], stages: Sequence[str]) -> list[str]:
    seen = list(dict.fromkeys([*stages, *timing_keys]))
    return [*MANIFEST_FIELDS, *(f"t_{s}" for s in seen)]


def write_manifest(batch: dict[str, Any], items: list[dict[str, Any]], folder: Path,
                   extra_path: Path | None = None) -> Path:
    """Write ``manifest.json``/``.csv`` into the batch folder (and a copy of the JSON at ``extra_path``).

    File paths in the manifest are relative to the batch folder. The copy at
    ``extra_path`` keeps them so (it is the same document, byte for byte, plus
    ``files_root`` naming the batch folder), so a script reading the copy joins
    ``files_root`` and a path.

    One pass over the items writes every file, one entry at a time: built whole, a
    7,000-item manifest (rows, then a string, then bytes) was what made a long batch's
    memory jump at its end (69 MB through the run, 105 MB while its outputs were written),
    and each entry checks its files on disk, so it is made once, not once per file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    roots = ["."]
    targets = [path, folder / "manifest.csv"]
    if extra_path is not None:
        extra_path = Path(extra_path).expanduser()
        extra_path.parent.mkdir(parents=True, exist_ok=True)
        roots.append(str(folder.resolve()))
        targets.append(extra_path)

    def nested(obj: Any, pad: str) -> str:
        return json.dumps(obj, ensure_ascii=False, indent=1, default=str).replace("\n", "\n" + pad)

    head = "{\n \"batch\": " + nested(_redact(dict(batch)), " ") + ",\n \"files_root\": "
    with atomic_files(*targets) as (json_file, csv_file, *extra):
        docs = [json_file, *extra]
        for f, root in zip(docs, roots, strict=True):
            f.write((head + json.dumps(root, ensure_ascii=False) + ",\n \"items\": [").encode())
        text = io.TextIOWrapper(csv_file, encoding="utf-8-sig", newline="", write_through=True)
        w = csv.DictWriter(text, fieldnames=_csv_fields((k for it in items for k in it.get("timings") or {}),
                                                        batch.get("recipe") or ()), extrasaction="ignore")
        w.writeheader()
        for i, it in enumerate(items):
            row = manifest_row(it, folder)
            entry = (("," if i else "") + "\n  " + nested(row, "  ")).encode()
            for f in docs:
                f.write(entry)
            w.writerow(_csv_row(row))
        text.flush()
        text.detach()  # the file is closed by atomic_files, after its fsync
        for f in docs:
            f.write(("\n ]\n}\n" if items else "]\n}\n").encode())
    return path


# ---------------------------------------------------------------- errors.md

SUMMARY_HINT = ("The transcripts are complete; only the summary fell back to the offline extractive one. Fix the "
                "cause (start the server, check the key or the model), then run `tubemill retry-summaries {batch}` "
                "(or the Results page's button): only these summaries are asked again.")

HINTS: dict[str, str] = {
    "NotFound": "The URL returns 404; check it or remove it from the list.",
    "Unavailable": "The video is private, removed or region-locked; nothing to retry unless that changes.",
    "RateLimited": "The site is throttling us: add cookies for another account, slow down (longer pacing), "
                   "or try later with `tubemill retry-failed {batch}`.",
    "BotCheck": "YouTube asked to confirm you're not a bot: add a signed-in account (`--cookies FILE` or "
                "`--cookies-from-browser BROWSER`), install a PO-token provider (`tubemill doctor` shows it), slow "
                "down, or try later with `tubemill retry-failed {batch}`.",
    "PrivateVideo": "A private video: only an account it was shared with can fetch it; add that account's cookies, "
                    "then `tubemill retry-failed {batch}`.",
    "MembersOnly": "Members-only: add the cookies of an account that is a member of the channel (`--cookies` or "
                   "`--cookies-from-browser`), then `tubemill retry-failed {batch}`.",
    "AgeRestricted": "Age-restricted: add the cookies of a signed-in, age-verified account (`--cookies` or "
                     "`--cookies-from-browser`), then `tubemill retry-failed {batch}`.",
    "GeoBlocked": "Not available from this country: run the batch through a proxy in an allowed country "
                  "(`--proxy URL`, or `proxy` in [accounts.NAME] of settings.toml), then retry.",
    "NotYetLive": "A live stream or premiere that has not started (skipped, not failed): add it to a batch again "
                  "once it has ended, or run with `--wait-for-live` to have it scheduled for its start time.",
    "MissingJsRuntime": "yt-dlp found no JavaScript runtime (or no EJS scripts) for YouTube: run `make` or "
                        "`.venv/bin/pip install deno 'yt-dlp[default]'`, check with `tubemill doctor`, then "
                        "`tubemill retry-failed {batch}`.",
    "NetworkError": "Check the connection, then run `tubemill retry-failed {batch}`.",
    "Unsupported": "No extractor handles this URL; check it points at a video, playlist or media file.",
    "NoAudio": "The media has no audio track to transcribe; check the source.",
    "InvalidInput": "The input line or an option is not usable; fix the line and add it again.",
    "AuthFailed": "The account's cookies were refused: refresh the cookie file (export it again from a "
                  "signed-in browser), then retry.",
    "Cancelled": "The item was cancelled; run `tubemill retry-failed {batch}` to do it again.",
    "SummaryFallback": SUMMARY_HINT,
    "TooLarge": "The download passed the per-download cap: raise it with `--set max_download_mb=N` (or "
                "`[downloads]` in settings.toml), then `tubemill retry-failed {batch}`.",
    "NotMedia": "The server sent something that is not audio or video (a web page, an archive): check the URL "
                "points at the media itself or at a page yt-dlp knows.",
    "OutboundRefused": "A redirect pointed into this machine or the private network, which a remote source may "
                       "not do; if you trust it, `--set allow_private_redirects=true`.",
    "Stalled": "The server sent almost nothing for too long; it is retried. For slow links lower "
               "`stall_rate_kbps` or raise `stall_seconds` (`--set` or `[downloads]`).",
    "DiskFull": "The output disk is (nearly) full: free space or move the output folder; items wait and go on "
                "by themselves, or run `tubemill retry-failed {batch}`.",
    "TooManyRedirects": "The server redirects in a loop; check the URL in a browser.",
}
DEFAULT_HINT = "See log.txt in the item folder for the full error and traceback."


def hint_for(error_type: str | None, batch_name: str = "BATCH") -> str:
    """A next step a user can act on, by error type (unknown types point at the item's log)."""
    name = batch_name if re.fullmatch(r"[\w.\-]+", batch_name or "") else json.dumps(batch_name or "BATCH")
    return HINTS.get(error_type or "", DEFAULT_HINT).replace("{batch}", name)


def _md_code(text: Any) -> str:
    s = " ".join(str(text or "").split()).replace("`", "'")
    return f"`{s}`" if s else "—"


def summaries_markdown(items: list[dict[str, Any]], batch_name: str) -> list[str]:
    """The "Summaries" section: items whose LLM summary fell back (why) or was repaired (what changed)."""
    fell = [it for it in items if (it.get("meta") or {}).get("summary_outcome") == "fallback"]
    fixed = [it for it in items if (it.get("meta") or {}).get("summary_outcome") == "repaired"]
    if not fell and not fixed:
        return []
    out = ["## Summaries", ""]
    if fell:
        out += [f"{len(fell)} summary(ies) fell back to the offline summarizer.", "",
                f"**What to do:** {hint_for('SummaryFallback', batch_name)}", ""]
        for it in fell:
            title = " ".join(str(it.get("title") or "").split()) or _md_code(it.get("source"))
            reason = " ".join(str((it.get("meta") or {}).get("summary_reason") or "unknown").split())
            out.append(f"- {it.get('n')}. {title}: {_md_code(reason)}")
        out.append("")
    if fixed:
        out += [f"{len(fixed)} LLM summary(ies) were repaired to fit the rules (kept, not re-asked):", ""]
        for it in fixed:
            title = " ".join(str(it.get("title") or "").split()) or _md_code(it.get("source"))
            what = "; ".join((it.get("meta") or {}).get("summary_adjustments") or []) or "adjusted"
            out.append(f"- {it.get('n')}. {title}: {_md_code(what)}")
        out.append("")
    return out


def errors_markdown(batch: dict[str, Any], items: list[dict[str, Any]], folder: Path) -> str:
    """Markdown listing each failed item (source, stage, error, attempts, a hint, its log), then the items
    whose summary fell back or was repaired."""
    name = str(batch.get("name") or batch.get("id") or "batch")
    failed = [it for it in items if it.get("status") == "failed"]
    out = [f"# Errors: {' '.join(name.split())}", ""]
    if not failed:
        out += ["No items failed.", ""]
        return "\n".join(out + summaries_markdown(items, name))
    out += [f"{len(failed)} of {len(items)} item(s) failed.", ""]
    for it in failed:
        err = it.get("error") or {}
        etype = err.get("type") or "UnknownError"
        title = " ".join(str(it.get("title") or "").split())
        out.append(f"## {it.get('n')}. {title or _md_code(it.get('source'))}")
        out.append("")
        out.append(f"- **Source:** {_md_code(it.get('source'))}")
        out.append(f"- **Stage:** {err.get('stage') or it.get('stage') or '—'}")
        msg = " ".join(str(err.get("message") or "").split())
        out.append(f"- **Error:** {etype}: {msg}" if msg else f"- **Error:** {etype}")
        retry = " (retryable)" if err.get("retryable") else ""
        out.append(f"- **Attempts:** {it.get('attempts', err.get('attempt', 0))}{retry}")
        out.append(f"- **What to do:** {hint_for(etype, name)}")
        log_rel = _rel(Path(it["workdir"]) / "log.txt", folder) if it.get("workdir") else None
        if log_rel:
            out.append(f"- **Log:** `{log_rel}`")
        out.append("")
    return "\n".join(out + summaries_markdown(items, name))


# ---------------------------------------------------------------- stats.json


def batch_stats(batch: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-stage busy time, mean and throughput from item timings; wall time, status counts, audio total.

    Throughput is items per hour of *busy* time (one worker's speed); comparing the sum of
    busy times with the wall time shows how much the pools overlapped.
    """
    order = list(batch.get("recipe") or [])
    busy: dict[str, float] = {}
    count: dict[str, int] = {}
    for it in items:
        for stage, secs in (it.get("timings") or {}).items():
            v = _num(secs)
            if v is None:
                continue
            busy[stage] = busy.get(stage, 0.0) + v
            count[stage] = count.get(stage, 0) + 1
    stages = {}
    for stage in dict.fromkeys([*(s for s in order if s in busy), *busy]):
        b, n = busy[stage], count[stage]
        stages[stage] = {
            "count": n,
            "busy_s": round(b, 3),
            "mean_s": round(b / n, 3) if n else None,
            "items_per_hour": round(n * 3600 / b, 2) if b > 0 else None,
        }
    by_status: dict[str, int] = {}
    for it in items:
        st = str(it.get("status") or "unknown")
        by_status[st] = by_status.get(st, 0) + 1
    created, finished = _num(batch.get("created_at")), _num(batch.get("finished_at"))
    wall = round(finished - created, 3) if created is not None and finished is not None else None
    durations = [d for d in (_num(it.get("duration")) for it in items) if d is not None]
    audio = round(sum(durations), 3) if durations else None
    return {
        "batch": {k: batch.get(k) for k in ("id", "name", "recipe")},
        "items": len(items),
        "by_status": by_status,
        "wall_s": wall,
        "busy_s": round(sum(busy.values()), 3),
        "audio_s": audio,
        "audio_items": len(durations),
        "audio_per_wall": round(audio / wall, 3) if audio and wall else None,
        "stages": stages,
        "llm": _llm_totals(items),
    }


def _llm_totals(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The batch's cost ledger: tokens and cost per summary mode."""
    totals: dict[str, dict[str, Any]] = {}
    for it in items:
        led = llm_ledger(it)
        if led is None:
            continue
        t = totals.setdefault(led["mode"] or "realtime", {"items": 0, "input_tokens": 0, "output_tokens": 0,
                                                           "cost_usd": 0.0})
        t["items"] += 1
        t["input_tokens"] += led["input_tokens"]
        t["output_tokens"] += led["output_tokens"]
        t["cost_usd"] = round(t["cost_usd"] + led["cost_usd"], 6)
    return {"by_mode": totals, "cost_usd": round(sum(t["cost_usd"] for t in totals.values()), 6)}


# ---------------------------------------------------------------- PDF

FONT = "DejaVu"
_REPLACEMENT = "\u25a1"  # WHITE SQUARE: shown where no font has the glyph, instead of failing
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _font_dir() -> Path | None:
    """matplotlib's bundled DejaVu fonts, found without importing matplotlib (16 MB resident for a path)."""
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    return d if (d / "DejaVuSans.ttf").is_file() and (d / "DejaVuSans-Bold.ttf").is_file() else None


@lru_cache(maxsize=8)
def _coverage(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        return frozenset(font.getBestCmap() or {})


class _Glyphs:
    """Keeps text inside what the embedded fonts can draw.

    fpdf2 would log a warning and draw nothing for a glyph no font has (CJK in
    DejaVu, most emoji); we substitute a visible box instead so the reader sees that
    something was there. Fallback fonts (``TUBEMILL_PDF_FALLBACK_FONTS``: TTF/OTF paths
    separated by ``os.pathsep``) widen the coverage, e.g. a Noto CJK font.
    """

    def __init__(self, covered: frozenset[int], unicode_ok: bool) -> None:
        self.covered = covered
        self.unicode_ok = unicode_ok
        self._cache: dict[str, str] = {}

    def __call__(self, text: Any) -> str:
        s = _CTRL.sub(" ", str(text or "")).replace("\r", "").replace("\t", "    ")
        if s.isascii():
            return s
        if not self.unicode_ok:
            return s.encode("latin-1", "replace").decode("latin-1")
        out = []
        for ch in s:
            if ch == "\n" or ord(ch) in self.covered:
                out.append(ch)
            else:
                out.append(self._cache.setdefault(ch, "" if ch in "\u200b\u200c\u200d\ufeff" else _REPLACEMENT))
        return "".join(out)


def _fallback_font_paths() -> list[Path]:
    raw = os.environ.get("TUBEMILL_PDF_FALLBACK_FONTS", "")
    return [Path(p) for p in raw.split(os.pathsep) if p and Path(p).is_file()]


def _load_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("export: cannot read %s", path)
        return None
    return doc if isinstance(doc, dict) else None


def _artifact(item: dict[str, Any], name: str) -> Path | None:
    p = (item.get("artifacts") or {}).get(name)
    if not p:
        return None
    p = Path(p)
    if not p.is_absolute() and item.get("workdir"):
        p = Path(item["workdir"]) / p
    return p if p.is_file() else None


def _item_summary(item: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(summary dict from ``summary.json`` beside the Markdown or in the workdir, else the Markdown text)."""
    md = _artifact(item, "summary")
    for cand in ([md.with_name("summary.json")] if md else []) + (
        [Path(item["workdir"]) / "summary.json"] if item.get("workdir") else []
    ):
        doc = _load_json(cand)
        if doc is not None:
            return doc, None
    if md is not None:
        try:
            return None, md.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None, None
    return None, None


class _PdfWriter:
    """One combined PDF: title page, table of contents, one outline section per done item."""

    LINE_H = 5.0
    TOC_LINE_H = 6.0
    TOC_HEAD_H = 12.0
    MARGIN = 15.0

    def __init__(self, fallback_fonts: Sequence[Path]) -> None:
        from fpdf import FPDF

        pdf = FPDF(format="A4")
        pdf.set_auto_page_break(True, margin=self.MARGIN)
        pdf.set_margins(self.MARGIN, self.MARGIN, self.MARGIN)
        pdf.set_compression(True)
        fonts = _font_dir()
        self._glyphs: dict[str, _Glyphs] = {}
        if fonts is not None:
            extra: set[int] = set()
            names = []
            for i, path in enumerate(fallback_fonts):
                name = f"fallback{i}"
                pdf.add_font(name, "", str(path))
                extra |= _coverage(str(path))
                names.append(name)
            if names:
                pdf.set_fallback_fonts(names, exact_match=False)
            for style, file in (("", "DejaVuSans.ttf"), ("B", "DejaVuSans-Bold.ttf")):
                pdf.add_font(FONT, style, str(fonts / file))
                self._glyphs[style] = _Glyphs(_coverage(str(fonts / file)) | extra, True)
            self.family = FONT
        else:  # no matplotlib: core font, Latin-1 only
            self.family = "Helvetica"
            self._glyphs = dict.fromkeys(("", "B"), _Glyphs(frozenset(), False))
        self.pdf = pdf
        self._fresh_page = False
        self._widths: dict[str, dict[str, float]] = {}

    def _p(self, text: str, size: float = 10, style: str = "", h: float | None = None) -> None:
        """A paragraph, wrapped by us and drawn line by line with ``cell``.

        fpdf2's ``multi_cell`` re-measures the whole line for every character it adds
        (0.3 s for a 10-minute transcript, minutes for a 500-video batch); measuring each
        distinct character once and breaking on words ourselves is about 10x faster. Words
        wider than the page (URLs, unspaced CJK) are broken between characters, so nothing
        can trigger fpdf2's "Not enough horizontal space" error.
        """
        from fpdf.enums import XPos, YPos

        pdf = self.pdf
        pdf.set_font(self.family, style, size)
        h = h or self.LINE_H
        pdf.set_x(pdf.l_margin)
        avail = pdf.epw - 2 * pdf.c_margin - 0.5
        for line in self._wrap(self.text(text, style), avail, f"{style}{size}"):
            if line:
                pdf.cell(pdf.epw, h, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            else:
                pdf.ln(h)

    def text(self, text: Any, style: str = "") -> str:
        """``text`` with every glyph the font of ``style`` (bold has a slightly different set) cannot draw boxed."""
        return self._glyphs[style](text)

    def _wrap(self, text: str, avail: float, key: str) -> Iterable[str]:
        widths = self._widths.setdefault(key, {})
        measure = self.pdf.get_string_width

        def width(s: str) -> float:
            total = 0.0
            for ch in s:
                w = widths.get(ch)
                if w is None:
                    w = widths[ch] = measure(ch)
                total += w
            return total

        space = width(" ")
        for para in text.split("\n"):
            line, lw = "", 0.0
            for word in para.split(" "):
                ww = width(word)
                if line and lw + space + ww <= avail:
                    line, lw = f"{line} {word}", lw + space + ww
                    continue
                if line:
                    yield line
                if ww <= avail:
                    line, lw = word, ww
                    continue
                line, lw = "", 0.0
                for ch in word:
                    cw = widths[ch]
                    if line and lw + cw > avail:
                        yield line
                        line, lw = "", 0.0
                    line, lw = line + ch, lw + cw
            yield line

    def title_page(self, batch: dict[str, Any], done: int) -> None:
        pdf = self.pdf
        pdf.add_page()
        pdf.set_y(60)
        self._p(str(batch.get("name") or batch.get("id") or "Batch"), 24, "B", 11)
        pdf.ln(4)
        created = _num(batch.get("created_at"))
        counts = batch.get("counts") or {}
        lines = [
            f"Recipe: {' → '.join(batch.get('recipe') or []) or '—'}",
            f"Created: {time.strftime('%Y-%m-%d %H:%M', time.localtime(created))}" if created else "",
            f"Items: {batch.get('total', '')} — " + ", ".join(f"{k} {v}" for k, v in counts.items() if v),
            f"In this document: {done} transcript(s)",
            f"Generated by Tubemill on {time.strftime('%Y-%m-%d %H:%M')}",
        ]
        for line in lines:
            if line:
                self._p(line, 11, h=6)

    def _toc_capacity(self) -> tuple[int, int]:
        """Entries on the first ToC page (under the heading) and on each later one."""
        pdf = self.pdf
        bottom = pdf.h - pdf.b_margin
        first = int((bottom - pdf.t_margin - self.TOC_HEAD_H) // self.TOC_LINE_H)
        rest = int((bottom - pdf.t_margin) // self.TOC_LINE_H)
        return max(1, first), max(1, rest)

    def toc(self, n_entries: int) -> None:
        """Reserve exactly the pages the ToC needs: one line per entry, so the count is known now.

        fpdf2's ``allow_extra_pages`` would insert pages at the end and shift every page
        number the ToC has already printed, so we paginate by hand instead.
        """
        first, rest = self._toc_capacity()
        pages = 1 if n_entries <= first else 1 + math.ceil((n_entries - first) / rest)
        self.pdf.add_page()
        self.pdf.insert_toc_placeholder(self._render_toc, pages=pages)
        self._fresh_page = True  # the placeholder already broke to a new, empty page

    def _render_toc(self, pdf: Any, outline: list[Any]) -> None:
        from fpdf.enums import XPos, YPos

        first, rest = self._toc_capacity()
        pdf.set_auto_page_break(False)
        pdf.set_font(self.family, "B", 16)
        pdf.cell(0, self.TOC_HEAD_H - 2, "Contents", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)
        pdf.set_font(self.family, "", 10)
        width = pdf.epw
        room_on_page = first
        for sec in outline:
            if sec.level != 0:
                continue
            if room_on_page == 0:
                pdf.add_page()
                pdf.set_font(self.family, "", 10)
                room_on_page = rest
            room_on_page -= 1
            page = str(sec.page_number)
            room = width - pdf.get_string_width(page) - 4
            name = self.text(sec.name)
            if pdf.get_string_width(name) > room:
                while name and pdf.get_string_width(name + "…") > room:
                    name = name[: max(0, int(len(name) * 0.9) - 1)]
                name += "…"
            link = pdf.add_link(page=sec.page_number)
            pdf.cell(width - pdf.get_string_width(page) - 2, self.TOC_LINE_H, name, link=link)
            pdf.cell(0, self.TOC_LINE_H, page, align="R", link=link, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_auto_page_break(True, margin=self.MARGIN)

    def item(self, item: dict[str, Any]) -> None:
        pdf = self.pdf
        title = " ".join(str(item.get("title") or item.get("source") or f"Item {item.get('n')}").split())
        if not self._fresh_page:
            pdf.add_page()
        self._fresh_page = False
        # Viewers draw bookmarks with system fonts, so the outline keeps the real title (CJK too).
        pdf.start_section("".join(ch for ch in title[:200] if ch.isprintable()) or "Untitled")
        self._p(title, 16, "B", 8)
        facts = [str(item.get("source") or "")]
        dur = _num(item.get("duration"))
        if dur:
            facts.append(f"duration {fmt_timestamp(dur)}")
        transcript = _load_json(_artifact(item, "json"))
        if transcript and transcript.get("language"):
            facts.append(f"language {transcript['language']}")
        if transcript and (transcript.get("source") or transcript.get("model")):
            facts.append(" ".join(str(x) for x in (transcript.get("source"), transcript.get("model")) if x))
        pdf.set_text_color(90)
        self._p(" · ".join(f for f in facts if f), 8)
        pdf.set_text_color(0)
        pdf.ln(2)

        summary, summary_md = _item_summary(item)
        if summary:
            self._summary(summary)
        elif summary_md:
            self._heading("Summary")
            # Plain text of the Markdown: its "# title" repeats the section title; "## x" reads as "x".
            body = "\n".join(re.sub(r"^#{2,6}\s+", "", line) for line in summary_md.splitlines()
                             if not line.startswith("# "))
            self._p(body.strip(), 10)

        self._heading("Transcript")
        segments = (transcript or {}).get("segments") or []
        lines = [f"[{fmt_timestamp(s.get('start'))}] {' '.join(str(s.get('text') or '').split())}"
                 for s in segments if isinstance(s, dict) and str(s.get("text") or "").strip()]
        if lines:
            self._p("\n".join(lines), 9, h=4.6)
        else:
            txt = _artifact(item, "txt")
            body = txt.read_text(encoding="utf-8", errors="replace").strip() if txt else ""
            self._p(body or "No transcript file was found for this item.", 9, h=4.6)

    def _heading(self, text: str) -> None:
        self.pdf.ln(2)
        self._p(text, 12, "B", 7)

    def _summary(self, summary: dict[str, Any]) -> None:
        tldr = " ".join(str(summary.get("tldr") or "").split())
        if tldr:
            self._heading("TL;DR")
            self._p(tldr, 10)
        points = [" ".join(str(p).split()) for p in summary.get("key_points") or [] if str(p).strip()]
        if points:
            self._heading("Key points")
            self._p("\n".join(f"• {p}" for p in points), 10)
        chapters = [c for c in summary.get("chapters") or [] if isinstance(c, dict)]
        if chapters:
            self._heading("Chapters")
            self._p("\n".join(f"[{fmt_timestamp(c.get('start'))}] {' '.join(str(c.get('title') or '').split())}"
                              for c in chapters), 10)
        tags = [str(t) for t in summary.get("tags") or [] if str(t).strip()]
        if tags:
            self._heading("Tags")
            self._p(", ".join(tags), 10)

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def write_pdf(batch: dict[str, Any], items: list[dict[str, Any]], path: Path,
              fallback_fonts: Sequence[Path] | None = None) -> Path:
    """The combined PDF: a title page, a linked table of contents, then one bookmarked section per done item.

    Uses DejaVu Sans from matplotlib (plus any ``TUBEMILL_PDF_FALLBACK_FONTS``); glyphs
    no font has are drawn as a box rather than failing the export. fpdf2 builds the
    document in memory, so this is the one export whose memory grows with the batch:
    500 ten-minute transcripts made a 3 MB, 1,500-page PDF in about 5 s.
    """
    done = [it for it in items if it.get("status") == "done"]
    w = _PdfWriter(_fallback_font_paths() if fallback_fonts is None else fallback_fonts)
    w.title_page(batch, len(done))
    if done:
        w.toc(len(done))
    for it in done:
        w.item(it)
    atomic_write_bytes(Path(path), w.output())
    return Path(path)


# ---------------------------------------------------------------- ZIP

SECRET_NAME_PATTERNS = (
    "cookies*.txt", "*cookies*", "*.pem", "*.key", "*.p12", "*.pfx", "token*.json", "client_secret*.json",
    ".env", ".env.*", "*.netrc", "_netrc",
)  # fmt: skip
SCRATCH_NAME_PATTERNS = (f"{TEMP_PREFIX}*", "*.tmp", "*.part", "*.part-frag*", "*.ytdl", "*.zip")
SCRATCH_DIRS = (".tmp", "__pycache__")
_SECRET_CONTENT = re.compile(
    rb"# (?:Netscape )?HTTP Cookie File"
    rb"|\bsk-[A-Za-z0-9_\-]{20,}"
    rb"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    rb"|(?m:^\s*(?:export\s+)?[A-Z0-9_]*(?:API_?KEY|TOKEN|SECRET|PASSWORD)[A-Z0-9_]*\s*[=:]\s*\S{16,})",
)
_STORED_EXT = {".mp4", ".m4a", ".mkv", ".webm", ".mp3", ".opus", ".ogg", ".aac", ".jpg", ".jpeg", ".png",
               ".webp", ".gz", ".bz2", ".xz", ".7z", ".pdf"}


def is_secret_file(path: Path, *, by_name: bool = True) -> bool:
    """True for files that must never leave the machine, judged by name and by their first 4 KB."""
    name = path.name.lower()
    if by_name and any(fnmatch.fnmatch(name, pat) for pat in SECRET_NAME_PATTERNS):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return True  # unreadable: we cannot vouch for it
    return _SECRET_CONTENT.search(head) is not None


def zip_members(folder: Path, ours: Iterable[Path] = ()) -> Iterable[tuple[Path, str]]:
    """(file, arcname) pairs the ZIP may hold, sorted for reproducible archives.

    The rule: every regular file under the batch folder, except
    - secrets by name: ``cookies*.txt``, ``*cookies*``, ``*.pem``, ``*.key``, ``*.p12``, ``*.pfx``,
      ``token*.json``, ``client_secret*.json``, ``.env``, ``.env.*``, ``*.netrc``;
    - secrets by content, in the first 4 KB: a ``# Netscape HTTP Cookie File`` header, an
      ``sk-…`` key of 20+ characters, a PEM private key, or an ``…API_KEY=/TOKEN=/SECRET=/PASSWORD=``
      line with a long value;
    - scratch: ``.tmp``/``__pycache__`` folders, our atomic-write temp files (``.tmp-*``), ``*.tmp``,
      partial downloads (``*.part``, ``*.ytdl``), and every ``*.zip`` (this archive, its temp file
      and earlier exports);
    - symbolic links (they could point anywhere, e.g. at ``~/.ssh``).

    Files in ``ours`` (what this export just wrote) skip the name patterns only, so a batch
    called "cookies" still gets its PDF into the ZIP; their content is still checked.
    """
    folder = Path(folder)
    own = {Path(p).resolve() for p in ours}
    for root, dirs, files in os.walk(folder, followlinks=False):
        rootp = Path(root)
        dirs[:] = sorted(d for d in dirs if d.lower() not in SCRATCH_DIRS and not (rootp / d).is_symlink())
        for name in sorted(files):
            p = rootp / name
            low = name.lower()
            if p.is_symlink() or not p.is_file():
                continue
            if any(fnmatch.fnmatch(low, pat) for pat in SCRATCH_NAME_PATTERNS):
                continue
            if is_secret_file(p, by_name=p.resolve() not in own):
                log.warning("export: left %s out of the ZIP (looks secret)", p.relative_to(folder))
                continue
            yield p, p.relative_to(folder).as_posix()


def write_zip(folder: Path, path: Path, ours: Iterable[Path] = ()) -> Path:
    """Stream the batch folder into ``path`` (see :func:`zip_members` for what is left out).

    Files go to disk one by one through ``ZipFile.write`` (never an in-memory archive),
    into a temp name that is renamed at the end, so a crash leaves no half ZIP behind.
    Already-compressed media is stored, not deflated again.
    """
    folder, path = Path(folder), Path(path)
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for file, arc in zip_members(folder, ours):
                stored = file.suffix.lower() in _STORED_EXT
                zf.write(file, arc, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------- everything


def export_batch(batch: dict[str, Any], items: list[dict[str, Any]], folder: Path, *,
                 extra_manifest: Path | None = None, pdf: bool = True, zip_: bool = True) -> dict[str, Path]:
    """Write every batch-level output into ``folder`` and return their paths by name.

    Order matters: the manifest, report and stats first (cheap, most useful), then the
    PDF, then the ZIP last so it contains all of them. Keys: ``manifest``,
    ``manifest_csv``, ``errors``, ``stats``, and ``extra_manifest``/``pdf``/``zip`` when made.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {"manifest": write_manifest(batch, items, folder, extra_manifest),
                            "manifest_csv": folder / "manifest.csv"}
    if extra_manifest is not None:
        out["extra_manifest"] = Path(extra_manifest).expanduser()
    out["errors"] = folder / "errors.md"
    atomic_write_bytes(out["errors"], errors_markdown(batch, items, folder).encode())
    out["stats"] = folder / "stats.json"
    atomic_write_bytes(out["stats"], _dumps(batch_stats(batch, items)))
    slug = batch_slug(batch)
    if pdf:
        t0 = time.perf_counter()
        out["pdf"] = write_pdf(batch, items, folder / f"{slug}.pdf")
        log.info("export: %s written in %.1f s", out["pdf"].name, time.perf_counter() - t0)
    if zip_:
        ours = [p for k, p in out.items() if k != "extra_manifest"]
        out["zip"] = write_zip(folder, folder / f"{slug}.zip", ours=ours)
    return out
