"""Settings: a TOML file under the home, defaults derived from this machine.

Secrets never live here (API keys, cookies and tokens are files of mode 0600 or
environment variables); this file may be shown, copied and committed.

Every ``*Settings`` value object lives here, including the ones only the engine reads
(retry, governor, pacing): the engine imports config, never the other way round, so
loading settings never pulls in the scheduler.
"""

from __future__ import annotations

import os
import random
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import psutil

from pipeline.common.hardware import read_gpus
from pipeline.config.ytdlp_options import check_account_settings, check_ytdlp_options
from pipeline.errors import InvalidInput

SETTINGS_NAME = "settings.toml"


def default_home() -> Path:
    return Path(os.environ.get("TUBEMILL_HOME") or Path.home() / ".tubemill").expanduser()


def default_pools() -> dict[str, int]:
    """Pool sizes from cores, RAM and GPUs.

    cpu: one worker per core but at most one per 2 GB of RAM (a Whisper model per
    worker); net: downloads wait on the network, not the CPU; llm: requests wait on a
    remote server; gpu: one per device, 0 means gpu stages run in the cpu pool.
    """
    cores = os.cpu_count() or 1
    ram_gb = psutil.virtual_memory().total / 2**30
    return {
        "net": 4,
        "cpu": max(1, min(cores, int(ram_gb // 2))),
        "gpu": len(read_gpus()[0]),
        "llm": 4,
    }


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff as a value: the delay before retry ``n`` (1-based) is ``base·2^(n-1)``, capped, ± jitter.

    ``limit`` counts retries after the first attempt; ``rate_limit_wait_s`` is the cooldown
    when a 429 gives no Retry-After.
    """

    limit: int = 3
    base_s: float = 5.0
    cap_s: float = 600.0
    jitter: float = 0.2
    rate_limit_wait_s: float = 60.0

    def __post_init__(self) -> None:
        if self.limit < 0 or self.base_s < 0 or self.cap_s < 0 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid retry policy {self}")

    def delay(self, n: int, rng: random.Random | None = None) -> float:
        raw = min(self.cap_s, self.base_s * 2 ** max(0, n - 1))
        if self.jitter:
            raw *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return min(self.cap_s, max(0.0, raw))


@dataclass(frozen=True)
class GovernorSettings:
    """Heavy stages (cpu, gpu) wait while any reading is under its floor."""

    min_free_ram_mb: int = 1024
    min_free_disk_mb: int = 2048
    min_free_gpu_mb: int = 1024
    cache_s: float = 1.0


# Sites known to rate-limit or flag downloaders: paced at the account ranges below. Every other http(s) host
# gets the light generic range; loopback, the private network and local files are never paced.
STRICT_SITES = ("youtube.com", "youtu.be", "googlevideo.com", "vimeo.com", "tiktok.com", "instagram.com",
                "twitter.com", "x.com", "facebook.com", "twitch.tv", "soundcloud.com", "bilibili.com")
SITE_KEYS = ("delay_min_s", "delay_max_s", "cookie_delay_min_s", "cookie_delay_max_s", "anon_delay_min_s",
             "anon_delay_max_s")
LOCAL_SITE = "local"  # loopback, private network, link-local, file: and local paths
ANY_SITE = "*"  # a source that names no host (a bare id, a search): paced as a strict site


@dataclass(frozen=True)
class PacingSettings:
    """Download pacing per (account, site) (``[pacing]`` in settings.toml).

    ``cookie_delay_*``/``anon_delay_*`` are the ranges of ``strict_sites``; ``generic_delay_*`` that of any
    other web host; ``sites`` overrides one site (``[pacing.sites."example.com"] delay_min_s = 2``, or the
    ``cookie_``/``anon_`` forms; ``[pacing.sites.local]`` paces the local network after all). Backoff,
    decay and cooldown apply per site, so a 429 from one host never slows another.
    """

    cookie_delay_min_s: float = 180.0
    cookie_delay_max_s: float = 300.0
    anon_delay_min_s: float = 10.0
    anon_delay_max_s: float = 20.0
    generic_delay_min_s: float = 0.0
    generic_delay_max_s: float = 1.0
    strict_sites: tuple[str, ...] = STRICT_SITES
    sites: dict[str, dict[str, float]] = field(default_factory=dict)
    backoff_factor: float = 1.5
    max_multiplier: float = 8.0
    success_decay: float = 0.95
    failure_run: int = 3
    cooldown_s: float = 1800.0
    min_buffer: int = 20
    target_buffer: int = 50
    max_buffer: int = 100
    queue_aware: bool = True
    fast_start_items: int = 0
    fast_start_factor: float = 0.25
    est_download_mb: float = 64.0  # disk kept free per download in flight, until real sizes are measured

    def __post_init__(self) -> None:
        if not (0 <= self.cookie_delay_min_s <= self.cookie_delay_max_s
                and 0 <= self.anon_delay_min_s <= self.anon_delay_max_s
                and 0 <= self.generic_delay_min_s <= self.generic_delay_max_s):
            raise ValueError("pacing delays need 0 <= min <= max")
        if self.backoff_factor < 1 or self.max_multiplier < 1 or not 0 < self.success_decay <= 1:
            raise ValueError("pacing: backoff_factor and max_multiplier must be >= 1, success_decay in (0, 1]")
        if not 0 <= self.min_buffer <= self.target_buffer <= self.max_buffer:
            raise ValueError("pacing: need 0 <= min_buffer <= target_buffer <= max_buffer")
        object.__setattr__(self, "strict_sites", tuple(str(x).lower() for x in self.strict_sites))
        object.__setattr__(self, "sites", self.parse_sites(self.sites))
        for site in self.sites:
            for cookies in (True, False):
                lo, hi = self.delay_range(cookies, site)
                if not 0 <= lo <= hi:
                    raise ValueError(f"pacing.sites.{site}: delays need 0 <= min <= max")

    @staticmethod
    def parse_sites(raw: Any, base: dict[str, dict[str, float]] | None = None) -> dict[str, dict[str, float]]:
        """``[pacing.sites.NAME]`` tables as ``{site: {key: seconds}}``, laid over ``base``; names are lower case."""
        if not isinstance(raw, dict):
            raise ValueError("[pacing.sites] must hold one table per site")
        out = {k: dict(v) for k, v in (base or {}).items()}
        for name, conf in raw.items():
            if not isinstance(conf, dict):
                raise ValueError(f"pacing.sites.{name} must be a table (delay_min_s, delay_max_s, ...)")
            bad = sorted(set(conf) - set(SITE_KEYS))
            if bad:
                raise ValueError(f"pacing.sites.{name}: unknown setting {bad[0]!r} (known: {', '.join(SITE_KEYS)})")
            key = str(name).strip().lower().removeprefix("www.")
            out[key] = {**out.get(key, {}), **{k: float(v) for k, v in conf.items()}}
        return out

    def strict(self, site: str | None) -> bool:
        """A site paced as a person would download (the account ranges), not lightly."""
        return site in (None, ANY_SITE) or site in self.strict_sites

    def paced(self, site: str | None) -> bool:
        """False for the local network and files (no spacing, no cooldown) unless ``sites`` names them."""
        return site != LOCAL_SITE or LOCAL_SITE in self.sites

    def delay_range(self, cookies: bool, site: str | None = None) -> tuple[float, float]:
        """The spacing range of one account on ``site`` (a key from ``engine.sites.site_of``; None: strict)."""
        if site == LOCAL_SITE:
            lo, hi = 0.0, 0.0
        elif self.strict(site):
            lo, hi = ((self.cookie_delay_min_s, self.cookie_delay_max_s) if cookies
                      else (self.anon_delay_min_s, self.anon_delay_max_s))
        else:
            lo, hi = self.generic_delay_min_s, self.generic_delay_max_s
        own = self.sites.get(site or "") or {}
        kind = "cookie" if cookies else "anon"
        lo = own.get(f"{kind}_delay_min_s", own.get("delay_min_s", lo))
        own_hi = own.get(f"{kind}_delay_max_s", own.get("delay_max_s"))
        return lo, max(lo, hi) if own_hi is None else own_hi  # a raised minimum alone lifts the maximum too


@dataclass(frozen=True)
class DownloadLimits:
    """What one download may take (``[downloads]`` in settings.toml; a batch's ``--set KEY=VALUE`` wins).

    An endless stream, a 2 GB file that is not media, or a server trickling a byte every
    ten seconds must not fill the disk or hold a worker: the cap is also never more than
    the free disk above the governor's floor; below ``stall_rate_kbps`` for
    ``stall_seconds`` an attempt fails as retryable; 0 turns a limit off.
    """

    max_download_mb: float = 4096.0
    stall_rate_kbps: float = 1.0
    stall_seconds: float = 60.0
    extract_timeout_s: float = 300.0
    max_page_mb: float = 64.0
    allow_private_redirects: bool = False  # a remote source may not redirect to loopback or the private network
    keep_refreshed_cookies: bool = False  # keep cookies a site refreshes, in Tubemill's own copy (never the user's)
    # Downloaded media kept in the item folders for playback, per batch (MB; 0 keeps none): the first items
    # of a batch up to this total keep theirs as media.<ext>; keep_audio keeps every item's, uncapped.
    keep_media_mb: float = 2048.0

    def __post_init__(self) -> None:
        if min(self.max_download_mb, self.stall_rate_kbps, self.stall_seconds, self.extract_timeout_s,
               self.max_page_mb, self.keep_media_mb) < 0:
            raise ValueError("download limits must be >= 0 (0 turns one off)")

    def as_options(self) -> dict[str, Any]:
        """As batch options, the form the download stage reads (a batch's own values are laid over these)."""
        return asdict(self)


NOTIFY_EVENTS = ("batch.done", "batch.failed", "batch.held", "subscription.new_items")


@dataclass(frozen=True)
class NotifySettings:
    """Notifications (``[notify]`` in settings.toml): a signed webhook, Apprise, and the app's toasts.

    Only the webhook's address lives here; its signing key (``webhook_secret``) and the Apprise URLs
    (which carry tokens) are secrets. ``held_after_s``: a batch that has had work left but nothing
    running for this long (governor, rate limits, parked items) is reported once as ``batch.held``.
    A delivery is tried ``max_attempts`` times, ``backoff_s·2^(n-1)`` apart up to ``backoff_cap_s``,
    each attempt cut off after ``timeout_s``: a receiver that hangs costs a delivery thread, never the engine.
    """

    webhook_url: str = ""
    events: tuple[str, ...] = NOTIFY_EVENTS
    held_after_s: float = 1800.0
    timeout_s: float = 10.0
    max_attempts: int = 5
    backoff_s: float = 1.0
    backoff_cap_s: float = 60.0
    toasts: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(str(x) for x in self.events))
        bad = sorted(set(self.events) - set(NOTIFY_EVENTS))
        if bad:
            raise ValueError(f"notify.events: unknown event {bad[0]!r} (known: {', '.join(NOTIFY_EVENTS)})")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError("notify.webhook_url must start with http:// or https://")
        if self.max_attempts < 1 or min(self.held_after_s, self.timeout_s, self.backoff_s, self.backoff_cap_s) < 0:
            raise ValueError("notify: max_attempts >= 1 and times >= 0")


@dataclass(frozen=True)
class Settings:
    pools: dict[str, int] = field(default_factory=default_pools)
    output_dir: str = ""
    flush_delay_s: float = 0.25
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    governor: GovernorSettings = field(default_factory=GovernorSettings)
    on_error: str = "continue"
    whisper_model: str = "tiny.en"  # the bundled model; larger ones download once when online
    whisper_device: str = "auto"
    llm_model: str = "gpt-4o-mini"
    llm_base_url: str = ""  # empty: OPENAI_BASE_URL or the OpenAI default; the key is never stored here
    llm_batch_min_items: int = 100  # --llm-mode auto: the Batch API above this many summaries
    llm_batch_poll_s: float = 10.0  # first poll interval; backs off x1.5 to 60 s while nothing changes
    pacing: PacingSettings = field(default_factory=PacingSettings)
    downloads: DownloadLimits = field(default_factory=DownloadLimits)
    executor: str = ""  # "" runs everything here; "dask://HOST:PORT" or "local-cluster:N" sends cpu/gpu stages to Dask
    # [accounts.NAME]: per-account `proxy` and/or `cookies_from_browser` (a table with either is an account).
    accounts: dict[str, dict[str, str]] = field(default_factory=dict)
    # [ytdlp]: yt-dlp options applied to every call (e.g. extractor_args), under the batch's --ytdlp-option.
    ytdlp: dict[str, Any] = field(default_factory=dict)
    notify: NotifySettings = field(default_factory=NotifySettings)

    def output_root(self, home: Path) -> Path:
        return Path(self.output_dir).expanduser() if self.output_dir else Path(home) / "output"

    def worker_pools(self) -> dict[str, int]:
        """The pool sizes the engine runs with: net, cpu and llm at least one worker; gpu 0 means gpu stages
        run in the cpu pool (the preview and the dry run price a batch on these same sizes)."""
        sizes = {p: max(0, int(self.pools.get(p, 0))) for p in ("net", "cpu", "gpu", "llm")}
        for p in ("net", "cpu", "llm"):
            sizes[p] = max(1, sizes[p])
        return sizes

    def with_max_workers(self, n: int) -> Settings:
        """``--max-workers N``: no pool runs more than N stages at once."""
        return replace(self, pools={k: min(v, n) if v else v for k, v in self.pools.items()})


def _merge(cls: type, base: Any, raw: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    updates: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ValueError(f"{where}: unknown setting {key!r}")
        current = getattr(base, key)
        if key == "sites" and cls is PacingSettings:
            updates[key] = PacingSettings.parse_sites(value, current)
        elif isinstance(current, RetryPolicy | GovernorSettings | PacingSettings | DownloadLimits | NotifySettings):
            updates[key] = _merge(type(current), current, value, f"{where}.{key}")
        elif key == "accounts" and cls is Settings:
            if not isinstance(value, dict):
                raise ValueError(f"{where}: [accounts] must hold one table per account")
            updates[key] = {**current, **{str(n): check_account_settings(str(n), conf) for n, conf in value.items()}}
        elif key == "ytdlp" and cls is Settings:
            if not isinstance(value, dict):
                raise ValueError(f"{where}: [ytdlp] must be a table of yt-dlp options")
            try:
                updates[key] = {**current, **check_ytdlp_options(value)}
            except InvalidInput as exc:
                raise ValueError(f"{where}: [ytdlp] {exc}") from None
        elif isinstance(current, dict):
            updates[key] = {**current, **{k: int(v) for k, v in value.items()}}
        else:
            updates[key] = type(current)(value) if current is not None else value
    return replace(base, **updates)


def load_settings(home: Path) -> Settings:
    """Defaults overlaid with ``<home>/settings.toml``; a bad file is an error naming it."""
    path = Path(home) / SETTINGS_NAME
    base = Settings()
    if not path.exists():
        return base
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return _merge(Settings, base, raw, str(path))
    except (tomllib.TOMLDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot read settings {path}: {exc}") from exc


def _toml_key(k: Any) -> str:
    k = str(k)
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else _toml_value(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # nested values of [ytdlp], e.g. extractor_args = { youtube = { ... } }
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    text = str(v).replace("\\", "\\\\").replace('"', '\\"')
    for ch, esc in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = text.replace(ch, esc)
    return '"' + text + '"'


def save_settings(home: Path, settings: Settings) -> Path:
    """Write the settings as TOML (flat values first, then one table per group; ``[accounts.NAME]`` per account)."""
    from state.storage import atomic_write_bytes

    data = asdict(settings)
    lines, tables = [], []
    for key, value in data.items():
        if key == "accounts":
            for name, conf in value.items():
                tables.append(f"\n[accounts.{_toml_key(name)}]")
                tables += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in conf.items()]
        elif isinstance(value, dict):
            tables.append(f"\n[{key}]")
            tables += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    from state.lock import ensure_home

    path = ensure_home(home) / SETTINGS_NAME
    atomic_write_bytes(path, ("\n".join(lines + tables) + "\n").encode())
    return path
