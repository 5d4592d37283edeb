"""Resource readings and admission of heavy work.

Heavy stages (``cpu``, ``gpu``) start only while free RAM, free disk under the output
folder and (for ``gpu``) free GPU memory stay above their floors. Light stages
(``net``, ``llm``) are never held: they free memory rather than use it. Readings are
cached for a second so a scheduler making thousands of decisions asks psutil once.
GPU readings come from :mod:`pipeline.common.hardware` (the default pool sizes need them too).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pipeline.common.hardware import GpuReading, read_gpus
from pipeline.config.settings import GovernorSettings

HEAVY = frozenset({"cpu", "gpu"})


@dataclass(frozen=True)
class Readings:
    ram_total_mb: float
    ram_available_mb: float
    disk_free_mb: float
    cpu_percent: float
    gpus: list[GpuReading] = field(default_factory=list)
    gpu_error: str | None = None
    at: float = 0.0


def read_system(path: Path) -> Readings:
    """One real reading of this machine; ``path`` is where outputs go (its disk is the one that fills)."""
    vm = psutil.virtual_memory()
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    gpus, gpu_error = read_gpus()
    return Readings(
        ram_total_mb=vm.total / 2**20,
        ram_available_mb=vm.available / 2**20,
        disk_free_mb=shutil.disk_usage(probe).free / 2**20,
        cpu_percent=psutil.cpu_percent(interval=None),
        gpus=gpus,
        gpu_error=gpu_error,
        at=time.time(),
    )


class Governor:
    """Decides whether a heavy stage may start now, and says why not."""

    def __init__(
        self,
        output_root: Path,
        settings: GovernorSettings | None = None,
        probe: Callable[[], Readings] | None = None,
    ) -> None:
        self.output_root = Path(output_root)
        self.settings = settings or GovernorSettings()
        self._probe = probe or (lambda: read_system(self.output_root))
        self._lock = threading.Lock()
        self._cached: Readings | None = None
        self._cached_at = 0.0

    def readings(self, fresh: bool = False) -> Readings:
        with self._lock:
            now = time.monotonic()
            if fresh or self._cached is None or now - self._cached_at >= self.settings.cache_s:
                self._cached = self._probe()
                self._cached_at = now
            return self._cached

    def hold_reason(self, resource: str) -> str | None:
        """``None`` when a stage of this resource class may start, else a sentence saying why not."""
        if resource not in HEAVY:
            return None
        r = self.readings()
        s = self.settings
        if r.ram_available_mb < s.min_free_ram_mb:
            return f"free RAM {r.ram_available_mb:.0f} MB is below {s.min_free_ram_mb} MB"
        if r.disk_free_mb < s.min_free_disk_mb:
            return f"free disk {r.disk_free_mb:.0f} MB under {self.output_root} is below {s.min_free_disk_mb} MB"
        if resource == "gpu" and r.gpus:
            best = max(g.mem_free_mb for g in r.gpus)
            if best < s.min_free_gpu_mb:
                return f"free GPU memory {best:.0f} MB is below {s.min_free_gpu_mb} MB"
        return None
