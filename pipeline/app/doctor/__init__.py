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

This package's root runs the checks; they live by area — ``system`` (settings, Python, tools,
disk, home), ``youtube`` (yt-dlp, EJS, JS runtime, PO tokens), ``models``, ``gpu``, ``llm``,
``accounts`` — on the row type of ``check``, and ``report`` formats the rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipeline.app.doctor.accounts import (
    COOKIE_EXPIRY_WARN_S,
    YT_DOMAINS,
    YT_LOGIN_INFO,
    YT_SAPISID,
    YT_SID,
    check_cookie_file,
    cookie_facts,
)
from pipeline.app.doctor.accounts import check_accounts as _accounts
from pipeline.app.doctor.check import WARN, Check, Status
from pipeline.app.doctor.gpu import check_device as _device
from pipeline.app.doctor.gpu import check_nvml as _nvml
from pipeline.app.doctor.llm import check_llm as _llm
from pipeline.app.doctor.models import check_models as _models
from pipeline.app.doctor.report import exit_code, format_table, rows_for_page, to_json
from pipeline.app.doctor.system import DISK_WARN_MB, MIN_PYTHON
from pipeline.app.doctor.system import check_disk as _disk
from pipeline.app.doctor.system import check_home as _home
from pipeline.app.doctor.system import check_python as _python
from pipeline.app.doctor.system import check_tool as _tool
from pipeline.app.doctor.system import load_settings_row as _load_settings
from pipeline.app.doctor.youtube import BGUTIL_FIX, DENO_MIN, YTDLP_MAX_AGE_DAYS
from pipeline.app.doctor.youtube import check_ejs as _ejs
from pipeline.app.doctor.youtube import check_youtube as _youtube
from pipeline.app.doctor.youtube import check_ytdlp as _ytdlp

__all__ = [
    "BGUTIL_FIX", "COOKIE_EXPIRY_WARN_S", "DENO_MIN", "DISK_WARN_MB", "MIN_PYTHON", "WARN", "YTDLP_MAX_AGE_DAYS",
    "YT_DOMAINS", "YT_LOGIN_INFO", "YT_SAPISID", "YT_SID", "Check", "Status", "check_cookie_file", "cookie_facts",
    "exit_code", "format_table", "rows_for_page", "run_checks", "to_json",
]


def run_checks(home: Path, settings: Any = None, *, extra_cookies: Iterable[Path] = (), timeout: float = 5.0,
               now: float | None = None) -> list[Check]:
    """Every check, in a fixed order. They run side by side in daemon threads (a probe that hangs past
    ``timeout`` + a margin is reported as such and left behind; it cannot keep the process alive).

    The checks are this module's names (``_nvml`` …), read when the jobs are listed, so a test can
    replace one here."""
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
