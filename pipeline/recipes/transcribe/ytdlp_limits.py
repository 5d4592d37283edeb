"""The limits of one yt-dlp call (byte cap, stall rule, extraction deadline, page size, private redirects),
read from the batch's options and the free disk. :mod:`.ytdlp_child` enforces the byte-exact parts and
:mod:`.ytdlp_run` the rest around the child process; both take them from here as one :class:`CallLimits`.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import errors
from pipeline.recipes.transcribe.options import TranscribeOptions, options_of

if TYPE_CHECKING:
    from pipeline.engine.stage import StageContext

# The defaults are the download limits' (settings.toml's [downloads]): a 4 GB cap (one video's best audio is far
# smaller; an endless stream is not), 5 min for a page and its JS challenges, 64 MB for a page (a watch page is
# ~1.5 MB, a big feed tens of MB).
_DEFAULT = TranscribeOptions()


def size_text(n: float) -> str:
    """A byte count as a message shows it: ``1.5 GB``, ``20.0 MB``, ``12 KB``."""
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


@dataclass(frozen=True)
class CallLimits:
    """What one yt-dlp call may take. The child enforces the byte-exact parts (cap, page size, media
    check, redirects); the parent enforces what a blocked read hides (stalls, deadlines, cancel).

    ``cap_is_disk``: the cap is the free disk above the governor's floor, not ``max_download_mb``, so
    passing it means "disk nearly full" (retry later), not "too large" (fail).
    """

    cap_bytes: int
    cap_reason: str
    cap_is_disk: bool = False
    stall_bytes_per_s: float = _DEFAULT.stall_rate_kbps * 1024
    stall_s: float = _DEFAULT.stall_seconds
    extract_timeout_s: float = _DEFAULT.extract_timeout_s
    max_page_bytes: int = int(_DEFAULT.max_page_mb * 2**20)
    allow_private: bool = False

    @property
    def block_size(self) -> int:
        """yt-dlp's first read size. A read blocks until it is full, and the parent sees bytes block by block,
        so the first block must arrive well within the stall window at the minimum rate. yt-dlp then resizes
        blocks to about one second of transfer each (a fixed small block costs 10× the CPU on a fast link):
        a rate that drops more than ``stall_s``-fold at once can count as a stall before blocks shrink
        again — the retry resumes from the ``.part``."""
        return int(min(64 * 1024, max(1024, self.stall_bytes_per_s * self.stall_s / 8)))

    def ydl_options(self) -> dict[str, Any]:
        return {"buffersize": self.block_size}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cap_error(self, seen: int | None = None) -> errors.TubemillError:
        """The error for passing the cap: disk nearly full (retried later) or too large (fails)."""
        got = f" ({size_text(seen)} so far)" if seen else ""
        if self.cap_is_disk and self.cap_bytes <= 0 and not seen:
            return errors.DiskFull(f"disk nearly full: no room for a download in {self.cap_reason}; free some "
                                   "space (the item is retried later)")
        if self.cap_is_disk:
            return errors.DiskFull(f"disk nearly full: the download passed {self.cap_reason}{got}")
        return errors.TooLarge(f"too large: the download passed {self.cap_reason}{got}; an endless stream or a "
                               "huge file (raise max_download_mb for this batch to allow it)")


def disk_floor_mb(ctx: StageContext) -> float:
    """The governor's free-disk floor: the batch option ``min_free_disk_mb``, else the engine's live floor
    (a context built by hand: its settings', else the default; settings.toml is never read here)."""
    opts = options_of(ctx)
    if opts.min_free_disk_mb is not None:
        return opts.min_free_disk_mb
    floor = getattr(ctx, "min_free_disk_mb", None)
    if isinstance(floor, int | float):
        return float(floor)
    from pipeline.config.settings import GovernorSettings

    governor = ctx.settings.governor if ctx.settings is not None else GovernorSettings()
    return float(governor.min_free_disk_mb)


def call_limits(ctx: StageContext, folder: Path | None = None) -> CallLimits:
    """The limits of one yt-dlp call from the batch's options (``max_download_mb``, ``stall_rate_kbps``,
    ``stall_seconds``, ``extract_timeout_s``, ``max_page_mb``, ``allow_private_redirects``; 0 turns a
    limit off). With ``folder`` (where the download goes) the cap is also never more than the free disk
    there minus the governor's floor: a download must not fill the disk the transcripts go to."""
    o = options_of(ctx)
    cap = int(o.max_download_mb * 2**20) if o.max_download_mb else 2**62
    reason = f"the {size_text(cap)} per-download cap (max_download_mb)"
    is_disk = False
    if folder is not None:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = None
        if free is not None:
            floor = int(disk_floor_mb(ctx) * 2**20)
            room = free - floor
            if room < cap:
                cap, is_disk = max(0, room), True
                reason = f"the free disk ({size_text(free)} free, {size_text(floor)} kept free by the governor's floor)"
    return CallLimits(
        cap_bytes=cap, cap_reason=reason, cap_is_disk=is_disk, stall_bytes_per_s=o.stall_rate_kbps * 1024,
        stall_s=o.stall_seconds, extract_timeout_s=o.extract_timeout_s or float("inf"),
        max_page_bytes=int((o.max_page_mb or 2**42 / 2**20) * 2**20), allow_private=o.allow_private_redirects,
    )
