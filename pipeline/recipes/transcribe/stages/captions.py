"""captions: reuse what exists before doing any heavy work.

1. A video this home already finished (in any batch) is reused: its outputs are
   copied or hard-linked here, and the later stages find their files and return.
2. Subtitles in the wanted language (manual first, then automatic) are fetched
   alone — no audio — and become ``transcript.json``; download and transcribe then
   have nothing to do. On YouTube that skips the two slowest stages entirely.

``--captions never`` goes straight to Whisper; ``--captions only`` fails items
without captions instead of transcribing them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pipeline import errors
from pipeline.common.transcript_text import clean_text
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.transcribe import library
from pipeline.recipes.transcribe.kept_media import playable_url
from pipeline.recipes.transcribe.options import options_of
from pipeline.recipes.transcribe.source_kinds import classify
from pipeline.recipes.transcribe.ytdlp import call_limits, call_options, check_live
from pipeline.recipes.transcribe.ytdlp_run import YtdlpCall
from state.storage import atomic_write_bytes

TRANSCRIPT = "transcript.json"
SUB_EXTS = ("vtt", "srt")


class NoCaptions(errors.PermanentError):
    """``--captions only`` and the video has none in the wanted language."""


def pick_track(info: dict[str, Any], lang: str) -> tuple[str, dict[str, Any], bool] | None:
    """(language key, format, automatic?) of the best subtitle track: manual before automatic, vtt before srt."""
    for automatic, table in ((False, info.get("subtitles") or {}), (True, info.get("automatic_captions") or {})):
        keys = [k for k in table if k == lang] + sorted(k for k in table if k.split("-")[0] == lang and k != lang)
        for key in keys:
            fmts = [f for f in table[key] if f.get("ext") in SUB_EXTS and (f.get("url") or f.get("data"))]
            fmts.sort(key=lambda f: SUB_EXTS.index(f["ext"]))
            if fmts:
                return key, fmts[0], automatic
    return None


def source_facts(info: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """The channel and upload date the look-up found, where the item has none: the exports' front matter
    shows them (a single video's URL comes with neither; a channel or playlist listing gives only the date)."""
    meta = item.get("meta") or {}
    out: dict[str, Any] = {}
    channel = clean_text(info.get("channel") or info.get("uploader"))[:200]
    if channel and not meta.get("channel"):
        out["channel"] = channel
    date = str(info.get("upload_date") or "")
    if re.fullmatch(r"\d{8}", date) and not meta.get("upload_date"):
        out["upload_date"] = date
    return out


@dataclass(frozen=True)
class _Track:
    """One caption track as fetched: the video's facts, the track's language key and format, and its text."""

    info: dict[str, Any]
    key: str
    ext: str
    automatic: bool
    text: str


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    from pipeline.recipes.transcribe.stages.export import ensure_transcript_files

    out = ctx.path(TRANSCRIPT)
    if out.exists():
        transcript = json.loads(out.read_text(encoding="utf-8"))
        return StageResult(artifacts={"json": str(out), **ensure_transcript_files(item, ctx, transcript)})
    meta = item.get("meta") or {}
    opts = options_of(ctx)  # also checks --captions: prefer, never or only
    if not opts.force:
        hit = library.lookup(ctx.home, item.get("id"))
        if hit is not None:
            library.reuse(hit, ctx.workdir)
            return StageResult(artifacts={"json": str(out)},
                               meta={"reused_from": hit.workdir, "transcript_source": "reused"})
    policy = opts.captions
    if policy == "never":
        return StageResult()
    url = item["source"]
    if meta.get("local_path") or classify(url) == "media":
        # A bare media file carries no caption track: no request needed to know that.
        if policy == "only":
            raise NoCaptions("no captions: this is a media file without subtitle tracks")
        return StageResult()
    fetched = _fetch_track(item, ctx, url, opts.language or "en", policy)
    if isinstance(fetched, StageResult):
        return fetched
    return _save_track(item, ctx, fetched, policy)


def _fetch_track(item: dict[str, Any], ctx: StageContext, url: str, lang: str, policy: str) -> _Track | StageResult:
    """The best ``lang`` track of ``url`` with its text, or the result to end the stage with when there is
    none (the facts the look-up found, for the later stages) or the look-up needs an account."""
    index = (item.get("meta") or {}).get("playlist_index")
    # In a child process like the download (ytdlp_run): a page that trickles or never ends, or a
    # 2 GB "page", cannot hold this worker or its memory, and cancel reaches it.
    with call_options(ctx) as base:
        ydl_opts = {**base, "skip_download": True}
        if index:
            ydl_opts.update(noplaylist=False, playlist_items=str(index))
        with YtdlpCall(ctx, ydl_opts, call_limits(ctx)) as call:
            try:
                info = call.extract(url, download=False, lang=lang)
            except errors.TubemillError as err:
                if getattr(err, "needs_account", False):
                    # Members-only, private, age-restricted: this look-up went out without an account; the
                    # download stage asks again with one (cookies, a browser profile), and decides.
                    return StageResult()
                raise
            check_live(info)  # an upcoming stream has no captions and no audio yet: skipped or waited for
            track = pick_track(info, lang)
            if track is None:
                if policy == "only":
                    raise NoCaptions(f"no {lang!r} captions for this video")
                facts = {k: info.get(k) for k in ("title", "duration") if info.get(k)}
                return StageResult(meta={**{k: v for k, v in facts.items() if not item.get(k)},
                                         **source_facts(info, item)})
            key, fmt, automatic = track
            raw = fmt.get("data") or call.fetch(fmt["url"])
    return _Track(info=info, key=key, ext=fmt["ext"], automatic=automatic, text=raw)


def _save_track(item: dict[str, Any], ctx: StageContext, track: _Track, policy: str) -> StageResult:
    """``transcript.json`` and the transcript files from a fetched track; an empty track is no transcript."""
    from pipeline.common import formats
    from pipeline.recipes.transcribe.stages.export import ensure_transcript_files

    out = ctx.path(TRANSCRIPT)
    info, key, automatic = track.info, track.key, track.automatic
    # YouTube's automatic captions time each word inline: kept as the segments' words (word-level exports).
    segments = formats.parse_vtt(track.text, words=True) if track.ext == "vtt" else formats.parse_srt(track.text)
    if not segments:
        if policy == "only":
            raise NoCaptions(f"the {key!r} caption track is empty")
        return StageResult()
    duration = float(info.get("duration") or segments[-1]["end"])
    transcript = {"language": key, "duration": duration, "source": "captions", "automatic": automatic,
                  "model": None, "segments": segments}
    atomic_write_bytes(out, json.dumps(transcript, ensure_ascii=False).encode())
    result_meta: dict[str, Any] = {"transcript_source": "automatic captions" if automatic else "captions",
                                   "language": key}
    if any(seg.get("words") for seg in segments):
        result_meta["word_times"] = "captions"
    if info.get("title") and not item.get("title"):
        result_meta["title"] = info["title"]
    if info.get("duration") and not item.get("duration"):
        result_meta["duration"] = float(info["duration"])
    result_meta.update(source_facts(info, item))
    if media_url := playable_url(info, item.get("source") or ""):
        result_meta["media_url"] = media_url  # no download, so nothing kept: playback streams the page's file
    files = ensure_transcript_files(item, ctx, transcript, result_meta)  # the core result, on disk now
    ctx.progress(1.0)
    return StageResult(artifacts={"json": str(out), **files}, meta=result_meta)


register(Stage("captions", run, resource="net", doc="reuse earlier outputs, else fetch subtitles only"))
