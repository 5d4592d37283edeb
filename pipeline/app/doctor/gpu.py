"""Checks of where transcription runs: CTranslate2's CUDA devices and libraries (cuDNN, cuBLAS), and the
GPU readings (NVML) the governor and the System page use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.app.doctor.check import WARN, Check


def _cuda_libs() -> dict[str, str | None]:
    """Which of the CUDA libraries CTranslate2 loads can be found (a name or path, or None)."""
    import ctypes

    out: dict[str, str | None] = {}
    for lib, names in (("cuDNN", ("libcudnn_ops.so.9", "libcudnn.so.9", "libcudnn_ops_infer.so.8", "libcudnn.so.8")),
                       ("cuBLAS", ("libcublas.so.12", "libcublas.so.11"))):
        out[lib] = None
        for n in names:
            try:
                ctypes.CDLL(n)
                out[lib] = n
                break
            except OSError:
                continue
        if out[lib] is None:  # pip wheels (nvidia-cudnn-cu12, nvidia-cublas-cu12) keep theirs in site-packages
            pkg = {"cuDNN": "nvidia.cudnn", "cuBLAS": "nvidia.cublas"}[lib]
            try:
                mod = __import__(pkg, fromlist=["__path__"])
                libs = sorted(Path(list(mod.__path__)[0], "lib").glob("lib*.so*"))
                out[lib] = str(libs[0]) if libs else None
            except (ImportError, IndexError):
                pass
    return out



def check_device(settings: Any) -> Check:
    wanted = str(getattr(settings, "whisper_device", "auto") or "auto")
    try:
        import ctranslate2
    except ImportError as exc:
        return Check("device", False, f"ctranslate2 is missing ({exc})", ".venv/bin/pip install faster-whisper")
    try:
        n = ctranslate2.get_cuda_device_count()
    except (RuntimeError, OSError):
        n = 0
    if n == 0:
        detail = f"CPU (ctranslate2 {ctranslate2.__version__}: no CUDA device)"
        if wanted == "cuda":
            return Check("device", False, f"{detail}, but whisper_device is 'cuda'",
                         "set Whisper device to auto or cpu on the Settings page, or install the NVIDIA driver")
        return Check("device", True, detail)
    libs = _cuda_libs()
    types = sorted(ctranslate2.get_supported_compute_types("cuda"))
    shown = ", ".join(f"{k} {'found' if v else 'NOT found'}" for k, v in libs.items())
    detail = f"CUDA: {n} device(s) (ctranslate2 {ctranslate2.__version__}; {shown}; compute types {', '.join(types)})"
    missing = [k for k, v in libs.items() if not v]
    if missing:
        return Check("device", False if wanted == "cuda" else WARN, detail,
                     f".venv/bin/pip install nvidia-cudnn-cu12 nvidia-cublas-cu12 (missing: {', '.join(missing)}); "
                     "without them transcription falls back to the CPU")
    return Check("device", True, detail)



def check_nvml() -> Check:
    from pipeline.common.hardware import read_gpus

    gpus, why = read_gpus()
    if not gpus:
        return Check("nvml", True, f"no GPU readings ({why}): GPU stages run on the CPU")
    driver = ""
    try:
        import pynvml

        pynvml.nvmlInit()
        v = pynvml.nvmlSystemGetDriverVersion()
        driver = f", driver {v.decode() if isinstance(v, bytes) else v}"
    except Exception:  # the readings above worked; the driver version is a nicety
        pass
    names = ", ".join(f"{g.name} ({g.mem_free_mb / 1024:.0f} of {g.mem_total_mb / 1024:.0f} GiB free)" for g in gpus)
    return Check("nvml", True, f"{len(gpus)} GPU(s): {names}{driver}")
