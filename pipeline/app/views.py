"""What the pages show, computed without Streamlit: previews, estimates, item pages, results.

Pages call one function here and render its result, so every number on screen is
testable without a browser, and nothing here scans 7,000 items to draw a counter.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.app.estimate import batch_estimate
from pipeline.app.item_view import error_text, item_progress, progress_label
from pipeline.common.units import short_title
from pipeline.config.settings import Settings
from pipeline.engine.estimator import UNKNOWN_MEDIA_S, measured_rates, stage_seconds
from pipeline.engine.recipe import get_recipe
from pipeline.recipes.transcribe import library
from pipeline.recipes.transcribe.options import batch_options as batch_options  # the new batch page's options
from pipeline.recipes.transcribe.sources import Entry, Expansion, Filters, InvalidLine, expand, parse_lines
from state.models import BatchSummary

# Stage times assumed before this machine has measured any (seconds; transcribe as a real-time factor).
DEFAULT_UNKNOWN_DURATION_S = UNKNOWN_MEDIA_S
SPEECH_TOKENS_PER_S = 3.3  # ~150 words a minute, ~1.3 tokens a word
PROMPT_TOKENS = 350
OUTPUT_TOKENS = 450


@dataclass
class Preview:
    recipe: str
    entries: list[Entry] = field(default_factory=list)
    invalid: list[InvalidLine] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    duplicates: int = 0
    filtered: int = 0
    already_done: set[str] = field(default_factory=set)
    media_seconds: float = 0.0
    unknown_durations: int = 0
    est_seconds: float | None = None
    llm: dict[str, Any] = field(default_factory=dict)
    raw_sources: list[str] = field(default_factory=list)  # recipes that do not expand (probe)

    @property
    def count(self) -> int:
        return len(self.entries) if self.entries else len(self.raw_sources)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for e in self.entries:
            out.append({
                "title": short_title(e.title or e.url or e.source),
                "duration_s": e.duration,
                "status": "already done" if e.id in self.already_done else "new",
                "captions": ", ".join(e.subtitles) if e.subtitles else "",
                "from": e.parent or "",
                "source": e.url or e.local_path or e.source,
            })  # fmt: skip
        return out

    def items(self) -> list[Any]:
        """What ``Engine.submit`` takes."""
        return [e.to_item() for e in self.entries] if self.entries else list(self.raw_sources)


def per_item_seconds(recipe: str, media_s: float | None, summaries: Iterable[BatchSummary]) -> float:
    """One item's work over every stage of the recipe (what the Generate page shows per video), priced as the
    one estimator prices it: this home's measured rates (per media second where they grow with it), else the
    recipe's costs."""
    r = get_recipe(recipe)
    means, rtf = measured_rates(s.stage_stats for s in summaries)
    return sum(stage_seconds(st, media_s, r.costs, means, rtf) for st in r.stages)


def estimate_llm(entries: list[Entry], llm_configured: bool, model: str, prices: tuple[float, float] | None
                 ) -> dict[str, Any]:
    """Token and cost estimate for the summaries, before anything is sent."""
    if not llm_configured:
        return {"engine": "offline", "model": None, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    tokens_in = sum(int((e.duration or DEFAULT_UNKNOWN_DURATION_S) * SPEECH_TOKENS_PER_S) + PROMPT_TOKENS
                    for e in entries)
    tokens_out = OUTPUT_TOKENS * len(entries)
    cost = None if prices is None else tokens_in * prices[0] / 1e6 + tokens_out * prices[1] / 1e6
    return {"engine": "llm", "model": model, "input_tokens": tokens_in, "output_tokens": tokens_out,
            "cost_usd": cost, "batch_cost_usd": None if cost is None else cost / 2}


def build_preview(home: Path, text: str, recipe: str, filters: Filters, *, pools: dict[str, int],
                  summaries: list[BatchSummary], llm_configured: bool = False, llm_model: str = "",
                  llm_prices: tuple[float, float] | None = None, force: bool = False,
                  ytdlp_options: dict[str, Any] | None = None, settings: Settings) -> Preview:
    """Expand the sources (network for URLs) and estimate time and cost; starts nothing.

    ``ytdlp_options`` is the ``[ytdlp]`` table of the settings: the preview lists the way the batch will.
    """
    from pipeline.recipes.transcribe.ytdlp import listing_options

    r = get_recipe(recipe)
    if not r.expands_sources:
        sources, invalid = parse_lines(text)
        return Preview(recipe=recipe, invalid=invalid, raw_sources=sources)
    x: Expansion = expand(text, filters, ydl_opts=listing_options(ytdlp_options), probe=True)
    done = set() if force else set(library.status_of(home, [e.id for e in x.entries])["ids"])
    todo = [e for e in x.entries if e.id not in done]
    known = [e.duration for e in x.entries if e.duration]
    p = Preview(recipe=recipe, entries=x.entries, invalid=x.invalid, failed=x.failed, duplicates=x.duplicates,
                filtered=x.filtered, already_done=done, media_seconds=float(sum(known)),
                unknown_durations=len(x.entries) - len(known))
    # The one number: run --dry-run's, with pacing and this home's measured rates, on this engine's pools.
    p.est_seconds = batch_estimate(home, recipe, [e.to_item() for e in todo], settings, pools=pools,
                                   summaries=summaries).seconds
    p.llm = estimate_llm(todo, llm_configured, llm_model, llm_prices)
    wave = [e for e in todo if e.url][: int(pools.get("net") or 1)]
    if wave:
        # Start is the likely next click: the first wave of yt-dlp calls then finds warm children instead
        # of all starting cold at once on the same cores (a captioned item: ≈3–4 s → ≈1 s to its transcript).
        from pipeline.recipes.transcribe.source_kinds import classify
        from pipeline.recipes.transcribe.ytdlp_procs import spares

        spares.prepare(len(wave), pages=sum(1 for e in wave if classify(e.url or "") != "media"))
    return p


# ---------------------------------------------------------------------- batches page
ITEM_COLUMNS = ("n", "title", "status", "progress", "where", "attempts", "error", "wait", "flags")


def item_rows(items: list[dict[str, Any]], stages: list[str] | int = 0,
              waits: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """Table rows: one progress figure with its label, the whole error (hover or the item panel reads it),
    and why a pending item waits when the engine says."""
    names = list(stages) if not isinstance(stages, int) else [f"stage {i + 1}" for i in range(stages)]
    waits = waits or {}
    rows = []
    for it in items:
        rows.append({
            "n": it["n"],
            "title": short_title(it.get("title") or it["source"]),  # whole in the item panel and the manifest
            "status": it["status"],
            "progress": item_progress(it, len(names)),
            "where": progress_label(it, names),
            "attempts": int(it.get("attempts") or 0),
            "error": error_text(it),
            "wait": waits.get(int(it["n"]), ""),
            "flags": ", ".join(it.get("flags") or []),
            "next_try": (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(it["next_attempt_at"]))
                         if it["status"] == "waiting" and it.get("next_attempt_at") else ""),
        })  # fmt: skip
    return rows


# ---------------------------------------------------------------------- results page
BATCH_FILES = {"zip": "*.zip", "pdf": "*.pdf", "manifest": "manifest.json", "csv": "manifest.csv",
               "errors": "errors.md", "stats": "stats.json"}


def batch_files(summary: BatchSummary) -> dict[str, Path]:
    folder = Path(summary.output_dir)
    out = {}
    for key, pattern in BATCH_FILES.items():
        found = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if found:
            out[key] = found[0]
    return out


ITEM_FILES = (("txt", "transcript.txt", "text/plain"), ("srt", "transcript.srt", "application/x-subrip"),
              ("vtt", "transcript.vtt", "text/vtt"), ("json", "transcript.json", "application/json"),
              ("summary", "summary.md", "text/markdown"), ("video", "video.mp4", "video/mp4"),
              ("subtitles", "subtitles.srt", "application/x-subrip"), ("metadata", "metadata.json", "application/json"),
              # --formats (pipeline.recipes.transcribe.stages.export.EXPORTS)
              ("notes", "notes.md", "text/markdown"),
              ("docx", "transcript.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
              ("words_srt", "transcript.words.srt", "application/x-subrip"),
              ("words_vtt", "transcript.words.vtt", "text/vtt"), ("ass", "transcript.ass", "text/x-ssa"))


_TRANSLATION_MIME = {"translation_txt": "text/plain", "translation_srt": "application/x-subrip",
                     "translation_vtt": "text/vtt", "translation_json": "application/json"}


def item_files(item: dict[str, Any]) -> list[tuple[str, Path, str]]:
    """The item's files to offer for download: the fixed names, then a --translate-to translation's
    (``transcript.<lang>.*``, named by its artifacts)."""
    wd = Path(item.get("workdir") or "")
    out = [(k, wd / name, mime) for k, name, mime in ITEM_FILES if (wd / name).is_file()]
    arts = item.get("artifacts") or {}
    for key, mime in _TRANSLATION_MIME.items():
        path = Path(str(arts[key])) if arts.get(key) else None
        if path is not None and path.is_file() and path.parent == wd:
            out.append((key, path, mime))
    return out


RESULTS_HINT = "results_open_item"  # session key: the item Results opens at, once (set by Batches and Search)


def point_results_at(state: MutableMapping[str, Any], batch_id: str, n: int) -> None:
    """Make Results open at this batch and item the next time it runs (before a link to it)."""
    state["selected_batch"] = batch_id
    state[RESULTS_HINT] = (batch_id, n)


def results_hint(state: MutableMapping[str, Any], batch_id: str) -> int | None:
    """The item Results was pointed at in this batch, taken once (None when none, or another batch's)."""
    hint = state.pop(RESULTS_HINT, None)
    return hint[1] if hint and hint[0] == batch_id else None


def md_text(text: Any) -> str:
    """Source metadata (a title, a feed field) for a Streamlit Markdown call: rendered as exactly that text."""
    from pipeline.common.formats import _md_inline

    return _md_inline(text)


def summary_flagged(items: list[dict[str, Any]]) -> int:
    """Done items whose summary fell back to the offline summarizer (what retry-summaries would re-ask)."""
    return sum(1 for it in items if "summary-fallback" in (it.get("flags") or []))


def summary_note(item: dict[str, Any]) -> str | None:
    """One line on how the item's summary came to be, when that is not "the LLM's, as asked"."""
    meta = item.get("meta") or {}
    outcome = meta.get("summary_outcome")
    if outcome == "fallback":
        return (f"Summary: the offline summarizer stood in for the LLM — {md_text(meta.get('summary_reason'))}. "
                "Retry summaries to ask again.")
    if outcome == "repaired":
        return "Summary repaired to fit the rules: " + md_text("; ".join(meta.get("summary_adjustments") or []))
    return None


def load_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------- new batch
def save_upload(home: Path, name: str, data: bytes) -> Path:
    """An uploaded media file, kept under the home (the batch reads it from there)."""
    from pipeline.engine.stage import safe_name
    from state.storage import atomic_write_bytes

    stem, dot, ext = name.rpartition(".")
    safe = safe_name(stem or name, 80) + (("." + safe_name(ext, 8)) if dot else "")
    folder = Path(home) / "uploads" / time.strftime("%Y%m%d")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    atomic_write_bytes(path, data, durable=False)
    return path


def llm_config(engine: Any) -> Any:
    """The LLM configuration the summarize stage will use (key from the environment or the secrets file)."""
    from pipeline.config.secrets import llm_config_for

    return llm_config_for(engine.home, engine.settings)
