"""GPU readings through NVML, for the governor, the default pool sizes, the monitor and the doctor.

They sit below config and the engine because the defaults (one gpu worker per device)
and the admission of heavy stages both need them, and neither may import the other's
layer. A machine without NVML is normal: the reading is then an empty list and a
sentence saying why, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    mem_total_mb: float
    mem_free_mb: float
    util_percent: float


def read_gpus() -> tuple[list[GpuReading], str | None]:
    """NVML readings, or an empty list and the reason there are none."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"no NVIDIA driver ({exc})"
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                util = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except pynvml.NVMLError:
                util = 0.0
            name = pynvml.nvmlDeviceGetName(h)
            out.append(
                GpuReading(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    mem_total_mb=mem.total / 2**20,
                    mem_free_mb=mem.free / 2**20,
                    util_percent=util,
                )
            )
        return out, None if out else "NVML found no GPU"
    except pynvml.NVMLError as exc:
        return [], f"NVML error ({exc})"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
