"""The transcribe recipe's part of ``tubemill run``: its argument groups, and what they become.

The CLI adds these groups to its ``run`` command and hands the parsed arguments back here:
:func:`filters` for the listing, :func:`youtube_options` and :func:`batch_options_from_args`
for the options stored with the batch (built by :func:`.options.batch_options`, the one way
the CLI and the app build them). The CLI names none of these flags itself.
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from pipeline.recipes.transcribe.options import CAPTIONS, DEVICES, LLM_MODES, SUMMARIZERS, TASKS, batch_options
from pipeline.recipes.transcribe.sources import Filters


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The groups "YouTube and yt-dlp", "filters" and "transcribe recipe" of ``tubemill run``."""
    y = parser.add_argument_group("YouTube and yt-dlp")
    y.add_argument("--cookies-from-browser", action="append", default=[], metavar="BROWSER[:PROFILE]",
                   help="a download account whose cookies yt-dlp reads from this browser profile (repeatable; "
                        "BROWSER[+KEYRING][:PROFILE][::CONTAINER] as in yt-dlp)")
    y.add_argument("--proxy", metavar="URL",
                   help="proxy for this batch's requests (socks5://HOST:PORT, http://…); an account's own "
                        "`proxy` in settings.toml wins")
    y.add_argument("--ytdlp-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a yt-dlp option for every call of this batch (repeatable; VALUE as JSON when it parses, "
                        "e.g. extractor_args='{\"youtube\": {\"player_client\": [\"default\"]}}')")
    y.add_argument("--wait-for-live", action="store_true",
                   help="schedule upcoming live streams and premieres for when they start, instead of skipping them")
    f = parser.add_argument_group("filters (playlists, channels, feeds)")
    f.add_argument("--min-duration", type=float, metavar="SECONDS")
    f.add_argument("--max-duration", type=float, metavar="SECONDS")
    f.add_argument("--date-after", type=_date, metavar="YYYY-MM-DD")
    f.add_argument("--date-before", type=_date, metavar="YYYY-MM-DD")
    f.add_argument("--newest", type=int, metavar="N", help="only the newest N of each playlist/channel/feed")
    f.add_argument("--match-title", metavar="REGEX")
    t = parser.add_argument_group("transcribe recipe")
    t.add_argument("--captions", choices=CAPTIONS, default="prefer",
                   help="use existing subtitles when present (default), never, or only (no Whisper)")
    t.add_argument("--language", help="caption/transcription language: auto (default: detect; captions: en) or a code")
    t.add_argument("--task", choices=TASKS, help="transcribe (default) or translate: Whisper's own translation to "
                   "English (multilingual models only; the bundled tiny.en cannot)")
    t.add_argument("--translate-to", metavar="LANG", help="also translate each transcript with the LLM (same "
                   "timing): transcript.LANG.txt/.srt/.vtt; without an LLM, a note and the original")
    t.add_argument("--formats", metavar="LIST", help="extra exports, comma-separated: obsidian (Markdown with YAML "
                   "front matter), docx, words (word-level SRT/VTT), ass (karaoke subtitles)")
    t.add_argument("--no-word-timestamps", action="store_true",
                   help="no per-word times in transcript.json (they cost 2–8 %% more Whisper time)")
    t.add_argument("--no-repair", action="store_true",
                   help="flag suspected hallucinations only; do not re-decode them")
    t.add_argument("--model", help="Whisper model: tiny … large-v3, distil-*, or a local path (default: settings)")
    t.add_argument("--device", choices=DEVICES)
    t.add_argument("--summarizer", choices=SUMMARIZERS, default="auto",
                   help="auto: the LLM when OPENAI_API_KEY or OPENAI_BASE_URL is set, else offline")
    t.add_argument("--llm-mode", choices=LLM_MODES, default="realtime",
                   help="summaries now (realtime), through the Batch API (half price, within 24 h), or auto: "
                        "the Batch API above llm_batch_min_items items when no --deadline is set")
    t.add_argument("--deadline", help="a deadline for the batch (ISO date/time): auto mode stays realtime")
    t.add_argument("--keep-audio", action="store_true",
                   help="keep every downloaded audio (audio.EXT) in its item folder, whatever its size (without it, "
                   "media is kept for playback up to [downloads] keep_media_mb per batch)")
    t.add_argument("--force", action="store_true", help="redo videos already finished in earlier batches")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def filters(args: argparse.Namespace) -> Filters:
    """The listing filters of ``--min-duration`` … ``--match-title`` (InvalidInput for a bad regex or N)."""
    return Filters(min_duration=args.min_duration, max_duration=args.max_duration, date_after=args.date_after,
                   date_before=args.date_before, newest=args.newest, match_title=args.match_title)


def youtube_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--proxy``, ``--ytdlp-option`` and ``--wait-for-live`` as batch options (stored with the batch so a
    resumed batch keeps them; secret-bearing values are redacted wherever options are shown).

    Raises :class:`~pipeline.errors.InvalidInput` (one line, no password) for a bad proxy or option.
    """
    from pipeline.recipes.transcribe.ytdlp import check_proxy, parse_ytdlp_option

    out: dict[str, Any] = {}
    if args.proxy:
        out["proxy"] = check_proxy(args.proxy)
    ytdlp: dict[str, Any] = {}
    for text in args.ytdlp_option:
        key, value = parse_ytdlp_option(text)
        ytdlp[key] = value
    if ytdlp:
        out["ytdlp_options"] = ytdlp
    if args.wait_for_live:
        out["wait_for_live"] = True
    return out


def batch_options_from_args(args: argparse.Namespace, settings: Any, n_items: int, *, retry_limit: int | None = None,
                            on_error: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored options of a ``tubemill run`` batch: this recipe's flags (the Whisper model and device
    default to the settings'), the engine's ``retry_limit``/``on_error`` and ``extra`` (``--set`` and other
    recipes' flags) laid over them."""
    extra = {**_recipe_extra(args), **(extra or {})}
    return batch_options(captions=args.captions, model=args.model or settings.whisper_model,
                         device=args.device or settings.whisper_device, summarizer=args.summarizer,
                         language=args.language, retry_limit=retry_limit, on_error=on_error,
                         force=args.force, keep_audio=args.keep_audio, llm_mode=args.llm_mode, n_items=n_items,
                         llm_batch_min_items=settings.llm_batch_min_items, deadline=args.deadline, extra=extra)



def _recipe_extra(args: argparse.Namespace) -> dict[str, Any]:
    """The issue-15 flags as batch options (only those given: a batch without them parses as before)."""
    out: dict[str, Any] = {}
    for key in ("task", "translate_to", "formats"):
        value = getattr(args, key, None)
        if value:
            out[key] = value
    if getattr(args, "no_word_timestamps", False):
        out["word_timestamps"] = False
    if getattr(args, "no_repair", False):
        out["repair"] = False
    return out
