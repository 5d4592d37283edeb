"""Shared fixtures: a fresh home per test, engines that always shut down."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.engine.core import Engine  # noqa: E402

pytest_plugins = ["tests.media_server", "tests.llm_server"]
from pipeline.config.settings import GovernorSettings, RetryPolicy, Settings  # noqa: E402
from pipeline.engine.ratelimit import PacingSettings  # noqa: E402

# Download pacing off (no delay, no cooldown) unless a test is about pacing: the defaults space an
# anonymous account's downloads 10-20 s apart, which real-time tests must not wait for.
NO_PACING = PacingSettings(cookie_delay_min_s=0, cookie_delay_max_s=0, anon_delay_min_s=0, anon_delay_max_s=0,
                           cooldown_s=0)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("TUBEMILL_HOME", str(h))
    return h


def write_test_settings(home: Path) -> None:
    """A settings.toml with pacing off, for engines that load their settings (CLI, app) in tests."""
    path = Path(home) / "settings.toml"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text("[pacing]\n" + "".join(f"{k} = {getattr(NO_PACING, k)!r}\n" for k in
                        ("cookie_delay_min_s", "cookie_delay_max_s", "anon_delay_min_s", "anon_delay_max_s",
                         "cooldown_s")))


def fast_settings(**kw: object) -> Settings:
    """Small pools, a short group-commit delay, no jitter: deterministic and quick."""
    base = {
        "pools": {"net": 2, "cpu": 2, "gpu": 0, "llm": 2},
        "flush_delay_s": 0.02,
        "retry": RetryPolicy(limit=3, base_s=10.0, cap_s=600.0, jitter=0.0, rate_limit_wait_s=30.0),
        "governor": GovernorSettings(min_free_ram_mb=0, min_free_disk_mb=0, min_free_gpu_mb=0),
        "pacing": NO_PACING,
    }
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def make_engine(home: Path) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(start: bool = True, **kw: object) -> Engine:
        kw.setdefault("settings", fast_settings())
        e = Engine(kw.pop("home", home), **kw)  # type: ignore[arg-type]
        engines.append(e)
        if start:
            e.start()
        return e

    yield make
    for e in engines:
        e.shutdown(interrupt=True, timeout=5)


@pytest.fixture
def page_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A home for AppTest pages: no LLM from the developer's environment, pacing off, and the process-wide
    engine and monitor (``st.cache_resource``) made fresh for this test and shut down after it."""
    import streamlit as st

    from pipeline.config.settings import save_settings

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    save_settings(home, fast_settings())
    st.cache_resource.clear()
    # AppTest leaves the page script as sys.argv[0] and __main__: a process spawned later (a Dask worker)
    # would then run that page as its main module, and its get_engine() would own the next test's home.
    argv, main = list(sys.argv), sys.modules.get("__main__")
    yield home
    from pages.screens._engine import get_engine, get_monitor

    get_monitor().stop()
    get_engine().shutdown(interrupt=True, timeout=5)
    st.cache_resource.clear()
    sys.argv[:] = argv
    if main is not None:
        sys.modules["__main__"] = main


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, poll: float = 0.02) -> None:
    """Poll ``cond`` until it holds; fail the test after ``timeout`` seconds (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(poll)


def sigint_default() -> None:
    """``preexec_fn`` for a child a test will Ctrl-C. A suite started in the background by a script (``cmd &``
    without job control) runs with SIGINT ignored, its children inherit that, and Python then leaves SIGINT
    ignored: the child would never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_env(home: Path) -> dict[str, str]:
    write_test_settings(Path(home))
    env = {**os.environ, "TUBEMILL_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("COLUMNS", None)
    return env
