"""The generate recipe's options: one frozen dataclass, parsed once, with the defaults stages used to repeat.

A batch stores its options as a plain mapping (CLI flags and ``--set KEY=VALUE``, the app's
form), shared with the engine and other recipes, so parsing reads only the keys named here
and ignores the rest: an old batch, or one carrying transcribe options, still parses. Values
arrive as whatever the caller had (``"1"`` from ``--set``, ``True`` from a checkbox, ``"45"``
from a CSV cell), so every key has one parser, and yes/no keys go through the project's one
boolean parser, :func:`pipeline.engine.stage.flag`. An empty value means "not set".

A CSV row (or the ``meta`` of an item handed to ``Engine.submit``) may override the keys in
:data:`ITEM_KEYS` for its own video; :func:`parse_row` checks a row's cells with the same
parsers, so a bad cell is reported for its row, and :meth:`GenerateOptions.for_item` applies
an item's overrides at stage time. An override that is empty or zero falls back to the
batch's value, as the stages' old ``meta or options or default`` chains did.

No generate option defaults from ``settings.toml``: the LLM model and server do, but inside
:func:`pipeline.config.secrets.llm_config_for`, which the script stage hands the live settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from pipeline import errors
from pipeline.common.ffmpeg import ENCODERS
from pipeline.config.secrets import LLMChoice
from pipeline.config.settings import Settings
from pipeline.engine.stage import StageContext, flag, typed_options
from pipeline.recipes.generate.youtube import DAILY_UNITS, DEFAULT_CHUNKSIZE, UPLOAD_COST

ASPECTS = ("9:16", "16:9")
PRIVACY = ("public", "unlisted", "private")
PACES = ("fast", "normal", "slow")
TTS_MODES = ("auto", "edge", "espeak")
FRAME_TEXTS = ("narration", "visual")
MEDIA_PROVIDERS = ("none", "openverse", "pexels", "pixabay")  # stock pictures and footage per scene (issue 16)
MEDIA_KINDS = ("photo", "video", "any")
CAPTION_STYLES = ("classic", "boxed", "bold", "karaoke")  # presets; every caption_* key below overrides its part
CAPTION_POSITIONS = ("bottom", "middle", "top")
THUMBNAILS = ("title", "frame", "none")
MIN_LENGTH_S, MAX_LENGTH_S = 10.0, 1800.0
DEFAULT_VOICE = "en-US-AriaNeural"
DEFAULT_RATE = "+0%"
DEFAULT_WPM = 175

# Keys a CSV row or an item's own meta may set for that one video (the batch's value otherwise).
ITEM_KEYS = ("style", "length_s", "aspect", "pace", "theme", "background_dir", "voice", "rate", "privacy",
             "publish_at", "category_id", "music_dir", "media_provider", "thumbnail", "playlist_id")


@dataclass(frozen=True)
class GenerateOptions(LLMChoice):
    """Every option a generate stage reads, with the default it has always had."""

    # script
    style: str = ""  # tone of the script ("playful"); empty: "clear and friendly"
    length_s: float = 60.0  # target length of each video, 10 to 1800 s
    script_engine: str = "auto"  # "offline": always the template; anything else: the LLM when one is configured
    llm_model: str | None = None  # None: settings.toml's llm_model
    llm_base_url: str | None = None  # None: settings.toml's llm_base_url, else OPENAI_BASE_URL
    # plan
    aspect: str = "9:16"  # 9:16 (1080x1920) or 16:9 (1920x1080)
    size: tuple[int, int] | None = None  # "WxH" for quick drafts and tests; None: the aspect's full size
    pace: str = "normal"  # one scene per 3 (fast), 4 (normal) or 5 (slow) seconds of speech
    theme: str = "dark"  # the frames' colour theme (an unknown name draws dark)
    background_dir: str | None = None  # a folder of pictures behind the text, one per scene in turn
    # visuals: stock media per scene (provider -> background_dir -> generated frame)
    media_provider: str = "none"  # none, openverse (no key), pexels or pixabay (keys kept as secrets)
    media_kind: str = "photo"  # photo, video (footage) or any
    media_workers: int = 4  # parallel provider requests and downloads per video
    media_cache_ttl_h: float = 24.0  # cached search answers and files older than this are fetched again
    media_cache_mb: int = 1024  # the cache's size cap (<home>/cache/media), oldest files go first
    openverse_base_url: str | None = None  # None: the public API; tests point these at loopback fakes
    pexels_base_url: str | None = None
    pixabay_base_url: str | None = None
    motion: bool = False  # a slow zoom/pan on stills
    # music bed
    music_dir: str | None = None  # a folder of tracks (or one file), looped or trimmed, ducked under the voice
    music_db: float = -18.0  # the bed's level before ducking, relative to full scale
    duck: bool = True  # sidechain-compress the music under the narration
    voice: str = DEFAULT_VOICE  # edge-tts voice; espeak-ng's voice is derived from its locale
    rate: str = DEFAULT_RATE  # speaking rate as edge-tts writes it ("-10%")
    # metadata and upload
    privacy: str | None = None  # the batch's privacy overrides the metadata's at upload; None: "private"
    publish_at: str | None = None  # ISO 8601 with a time zone: scheduled, private until then
    category_id: str = "27"  # YouTube category (27: Education)
    default_language: str = "en"  # snippet.defaultLanguage and defaultAudioLanguage
    thumbnail: str = "title"  # title (a title card), frame (a frame of the video), none
    thumbnail_at: float | None = None  # seconds into the video for thumbnail=frame; None: a third of the way
    playlist_id: str | None = None  # add each uploaded video to this playlist
    made_for_kids: bool = False  # status.selfDeclaredMadeForKids, always sent explicitly
    synthetic_media: bool = True  # status.containsSyntheticMedia: the voice and pictures are generated
    upload: bool = False  # upload to YouTube at all
    youtube_daily_units: int = DAILY_UNITS
    youtube_upload_cost: int = UPLOAD_COST
    upload_chunksize: int = DEFAULT_CHUNKSIZE  # bytes, rounded up to 256 KiB by the uploader
    upload_retries: int = 8
    upload_backoff_s: float = 1.0  # doubling, capped at 64 s
    # narrate
    tts: str = "auto"  # auto: edge-tts, espeak-ng when it fails; edge; espeak
    espeak_voice: str | None = None  # None: from the edge voice's locale (en-US-AriaNeural -> en-us)
    espeak_wpm: int = DEFAULT_WPM  # espeak-ng's words per minute at rate +0%
    edge_timeout_s: float = 60.0
    edge_proxy: str | None = None  # an HTTP proxy for edge-tts (aiohttp ignores the proxy variables)
    # frames and render
    burn_subtitles: bool = False  # draw the subtitles into the picture
    embed_subtitles: bool = False  # a soft subtitle track inside the MP4 (mov_text), beside the .srt
    caption_style: str = "classic"  # classic, boxed, bold, karaoke (word-by-word highlight)
    caption_font: str | None = None  # a font family name or a .ttf/.otf path; None: the style's
    caption_size: int | None = None  # pixels at the frame's height; None: the style's
    caption_position: str = "bottom"  # bottom, middle, top
    caption_color: str = "#FFFFFF"  # text, as #RRGGBB
    caption_highlight: str = "#FFD400"  # the spoken word in word-by-word captions
    caption_outline: str = "#000000"  # outline (and box) colour
    caption_box: bool | None = None  # a box behind the text; None: the style's
    caption_lines: int = 2  # at most this many lines on screen
    caption_words: bool | None = None  # word-by-word highlight; None: on for the karaoke style
    frame_text: str | None = None  # text on the stills; None: "visual" with burn_subtitles (the narration is
    # on screen already), else "narration"
    encoder: str = "auto"  # auto (fastest that works here) or an encoder name (h264_nvenc, libx264…)
    render_workers: int | None = None  # parallel scene encodes; None: one per core
    audio_bitrate: str = "160k"  # when the narration is not AAC already

    def __post_init__(self) -> None:
        if self.frame_text is None:
            object.__setattr__(self, "frame_text", "visual" if self.burn_subtitles else "narration")

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None = None) -> GenerateOptions:
        """The options of a batch; raises InvalidInput naming the first key whose value cannot be used."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = (options or {}).get(f.name)
            if _unset(raw):
                continue
            try:
                values[f.name] = _PARSERS[f.name](raw)
            except (TypeError, ValueError) as exc:
                raise errors.InvalidInput(f"option {f.name}={raw!r}: {exc}") from None
        return cls(**values)

    def for_item(self, item: Mapping[str, Any]) -> GenerateOptions:
        """These options with the item's own overrides (its CSV row) applied."""
        meta = item.get("meta") or {}
        changes: dict[str, Any] = {}
        for key in ITEM_KEYS:
            raw = meta.get(key)
            if not raw or _unset(raw):  # empty or zero: the batch's value
                continue
            try:
                changes[key] = _PARSERS[key](raw)
            except (TypeError, ValueError) as exc:
                raise errors.InvalidInput(f"item option {key}={raw!r}: {exc}") from None
        return replace(self, **changes) if changes else self



def parse_options(options: Mapping[str, Any], settings: Settings | None = None) -> GenerateOptions:
    return GenerateOptions.parse(options)



def options_of(ctx: StageContext) -> GenerateOptions:
    """The batch's options for a stage (see :func:`pipeline.engine.stage.typed_options`)."""
    return typed_options(ctx, GenerateOptions, parse_options)


def parse_row(cells: Mapping[str, Any]) -> dict[str, Any]:
    """A CSV row's option cells (keys as in :data:`ITEM_KEYS`), checked and normalized for the item's meta.

    Raises ValueError with a reason a user can act on; empty cells are left out.
    """
    out: dict[str, Any] = {}
    for key, raw in cells.items():
        if key not in ITEM_KEYS:
            raise ValueError(f"{key} cannot be set per row")
        if not _unset(raw):
            out[key] = _PARSERS[key](raw)
    return out


# ---------------------------------------------------------------- one parser per key


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str:
    return str(value).strip()


def _length(value: Any) -> float:
    length = float(value)
    if not MIN_LENGTH_S <= length <= MAX_LENGTH_S:
        raise ValueError(f"length must be between {MIN_LENGTH_S:.0f} and {MAX_LENGTH_S:.0f} seconds")
    return length


def _choice(name: str, choices: tuple[str, ...], lower: bool = False) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value).lower() if lower else _text(value)
        if text not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}")
        return text
    return parse


def _publish_at(value: Any) -> str:
    when = datetime.fromisoformat(_text(value).replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("publish_at needs a time zone (e.g. 2026-12-01T09:00:00+00:00)")
    return when.isoformat()


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    try:
        w, h = (int(x) for x in _text(value).lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 540x960, not {value!r}") from None
    return w, h


def _encoder(value: Any) -> str:
    name = _text(value)
    if name != "auto" and name not in ENCODERS:
        raise ValueError(f"encoder must be auto or one of {', '.join(ENCODERS)}")
    return name


def _workers(value: Any) -> int | None:
    n = int(value)
    if n < 0:
        raise ValueError("render_workers must be 0 (one per core) or more")
    return n or None


def _colour(value: Any) -> str:
    text = _text(value).upper()
    if not re.fullmatch(r"#?[0-9A-F]{6}", text):
        raise ValueError(f"colour must look like #FFD400, not {value!r}")
    return text if text.startswith("#") else "#" + text


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "style": _text, "length_s": _length, "script_engine": _text, "llm_model": _text, "llm_base_url": _text,
    "aspect": _choice("aspect", ASPECTS), "size": _size, "pace": _choice("pace", PACES), "theme": _text,
    "background_dir": _text, "voice": _text, "rate": _text,
    "privacy": _choice("privacy", PRIVACY, lower=True), "publish_at": _publish_at, "category_id": _text,
    "upload": flag, "youtube_daily_units": int, "youtube_upload_cost": int, "upload_chunksize": int,
    "upload_retries": int, "upload_backoff_s": float,
    "tts": _choice("tts", TTS_MODES, lower=True), "espeak_voice": _text, "espeak_wpm": int, "edge_timeout_s": float,
    "edge_proxy": _text,
    "media_provider": _choice("media_provider", MEDIA_PROVIDERS, lower=True),
    "media_kind": _choice("media_kind", MEDIA_KINDS, lower=True), "media_workers": int,
    "media_cache_ttl_h": float, "media_cache_mb": int, "openverse_base_url": _text, "pexels_base_url": _text,
    "pixabay_base_url": _text, "motion": flag, "music_dir": _text, "music_db": float, "duck": flag,
    "default_language": _text, "thumbnail": _choice("thumbnail", THUMBNAILS, lower=True), "thumbnail_at": float,
    "playlist_id": _text, "made_for_kids": flag, "synthetic_media": flag,
    "embed_subtitles": flag, "caption_style": _choice("caption_style", CAPTION_STYLES, lower=True),
    "caption_font": _text, "caption_size": int, "caption_position": _choice("caption_position", CAPTION_POSITIONS),
    "caption_color": _colour, "caption_highlight": _colour, "caption_outline": _colour, "caption_box": flag,
    "caption_lines": int, "caption_words": flag,
    "burn_subtitles": flag, "frame_text": _choice("frame_text", FRAME_TEXTS), "encoder": _encoder,
    "render_workers": _workers, "audio_bitrate": _text,
}
