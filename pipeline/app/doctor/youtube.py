"""Checks of what YouTube downloads need: a recent yt-dlp, yt-dlp-ejs, a JS runtime its challenge solvers
can use, and the PO-token providers yt-dlp would pick up (with bgutil's server reachable)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pipeline.app.doctor.check import WARN, Check, first_line, version_tuple

YTDLP_MAX_AGE_DAYS = 60
DENO_MIN = (2, 3, 0)  # yt-dlp's DenoJsRuntime.MIN_SUPPORTED_VERSION
BGUTIL_FIX = ("pip install bgutil-ytdlp-pot-provider into this venv, then run its server: docker run -d --init "
              "-p 127.0.0.1:4416:4416 brainicism/bgutil-ytdlp-pot-provider")


def check_ytdlp(now: float) -> Check:
    import yt_dlp.version

    version = yt_dlp.version.__version__
    parts = version_tuple(version)
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



def check_ejs() -> Check:
    from pipeline.recipes.transcribe.ytdlp import ejs_version

    version = ejs_version()
    fix = ".venv/bin/pip install -U 'yt-dlp[default]'  (brings yt-dlp-ejs, matched to yt-dlp)"
    if version is None:
        return Check("ejs", False, "yt-dlp-ejs is not installed: YouTube's JS challenges cannot be solved", fix)
    try:
        from yt_dlp.extractor.youtube.jsc._builtin.vendor import VERSION as wanted
    except ImportError:
        return Check("ejs", True, f"yt-dlp-ejs {version}")
    if version_tuple(version)[:2] != version_tuple(wanted)[:2]:
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


def check_youtube(settings: Any, timeout: float) -> list[Check]:
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
    line = first_line([path, "--version"], timeout)
    version = line.split()[1] if line.startswith("deno ") and len(line.split()) > 1 else (line or "unknown")
    detail = f"deno {version} ({path})"
    if version_tuple(version) < DENO_MIN:
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
