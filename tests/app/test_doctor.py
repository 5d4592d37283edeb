"""`tubemill doctor`: real binaries and packages, a temp home, bad and good cookie files, an LLM endpoint that is
down (reported, not a crash) and one that is up, the JSON shape, exit codes, speed, and the System page's table."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pipeline.app import doctor
from pipeline.config import secrets
from pipeline.config.settings import Settings, save_settings
from pipeline.recipes.transcribe import ytdlp
from tests.conftest import ROOT, fast_settings
from tests.llm_server import FakeLLMServer

KEY = "sk-doctor-5e1f2a3b4c5d6e7f8091a2b3c4d5e6f7QZQZ"
FAR = 1_900_000_000  # 2030-03-17
SIGNED_IN = (
    "# Netscape HTTP Cookie File\n"
    f".youtube.com\tTRUE\t/\tTRUE\t{FAR}\tLOGIN_INFO\tvalueLOGIN0001\n"
    f".youtube.com\tTRUE\t/\tTRUE\t{FAR + 86400}\tSAPISID\tvalueSAPISID02\n"
    f".youtube.com\tTRUE\t/\tFALSE\t{FAR + 2 * 86400}\tSID\tvalueSID000003\n"
    f"#HttpOnly_.youtube.com\tTRUE\t/\tTRUE\t{FAR + 3 * 86400}\t__Secure-3PSID\tvalue3PSID0004\n"
    f".youtube.com\tTRUE\t/\tTRUE\t0\tYSC\tvalueYSC000005\n"
    f".google.com\tTRUE\t/\tTRUE\t{FAR}\tNID\tvalueNID000006\n"
)
VALUES = ("valueLOGIN0001", "valueSAPISID02", "valueSID000003", "value3PSID0004", "valueYSC000005", "valueNID000006")
REQUIRED = ("settings", "python", "yt-dlp", "ejs", "js-runtime", "po-token", "ffmpeg", "ffprobe", "espeak-ng",
            "whisper-models", "device", "nvml", "llm", "disk", "home")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def doctor_cli(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str],
                                                                                     dict, float]:
    base = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), "doctor", "--json", *args],
                         cwd=ROOT, env={**base, **(env or {})}, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    assert "Traceback" not in res.stderr, res.stderr
    return res, json.loads(res.stdout.strip().splitlines()[-1]), took


def rows(home: Path, settings: Settings | None = None, **kw: object) -> dict[str, doctor.Check]:
    return {c.name: c for c in doctor.run_checks(home, settings, **kw)}  # type: ignore[arg-type]


@pytest.fixture
def no_llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_json_shape_exit_code_and_speed(home: Path) -> None:
    """A fresh home: every check is in the last-line JSON with ok/detail/fix; the JS runtime and EJS are found;
    the exit code matches the rows; offline it takes a few seconds."""
    res, doc, took = doctor_cli(home)
    assert set(REQUIRED) <= set(doc)
    for name, row in doc.items():
        assert set(row) == {"ok", "detail", "fix"}, name
        assert row["ok"] in (True, False, "warn") and isinstance(row["detail"], str) and row["detail"]
    assert doc["js-runtime"]["ok"] is True and "deno " in doc["js-runtime"]["detail"]
    assert "challenge solvers: deno" in doc["js-runtime"]["detail"]
    assert doc["ejs"]["ok"] is True and "yt-dlp-ejs" in doc["ejs"]["detail"]
    import yt_dlp.version

    assert yt_dlp.version.__version__ in doc["yt-dlp"]["detail"]
    assert doc["llm"] == {"ok": True, "detail": "offline summarizer (no LLM configured)", "fix": ""}
    assert doc["whisper-models"]["ok"] is True and "tiny.en (bundled)" in doc["whisper-models"]["detail"]
    oks = [r["ok"] for r in doc.values()]
    assert res.returncode == (2 if False in oks else 1 if "warn" in oks else 0)
    table = res.stdout.strip().splitlines()[:-1]
    assert table[-1].endswith("error(s)") and any(line.startswith("ok    js-runtime") for line in table)
    assert took < 10, f"doctor took {took:.1f}s"
    assert not home.exists()  # checking does not create the home


def test_in_process_run_is_fast(home: Path, no_llm_env: None) -> None:
    """With the packages imported, all checks finish within ~5 s (they run side by side)."""
    doctor.run_checks(home)
    t0 = time.monotonic()
    doctor.run_checks(home, timeout=5)
    assert time.monotonic() - t0 < 5


def test_exit_codes() -> None:
    """0 all ok, 1 warnings only, 2 any error."""
    ok, warn, bad = doctor.Check("a", True, "x"), doctor.Check("b", "warn", "y", "f"), doctor.Check("c", False, "z")
    assert doctor.exit_code([ok]) == 0 and doctor.exit_code([ok, warn]) == 1 and doctor.exit_code([warn, bad]) == 2
    assert doctor.to_json([warn]) == {"b": {"ok": "warn", "detail": "y", "fix": "f"}}


def test_bad_cookie_file_is_an_error_with_a_fix(home: Path, tmp_path: Path) -> None:
    """A JSON cookie export passed with --cookies: an error row naming the format, exit code 2, no value shown."""
    bad = tmp_path / "mine.json"
    bad.write_text('[{"domain": ".youtube.com", "name": "SID", "value": "valueJSON00007"}]')
    res, doc, _ = doctor_cli(home, "--cookies", str(bad))
    row = doc["account:mine"]
    assert row["ok"] is False and "JSON cookie export" in row["detail"] and "export cookies.txt again" in row["fix"]
    assert res.returncode == 2
    assert "valueJSON00007" not in res.stdout + res.stderr


def test_cookie_accounts_report_counts_and_dates_only(home: Path, no_llm_env: None) -> None:
    """Signed-in, signed-out, expired and loosely-permissioned cookie files; never a cookie value."""
    secrets.save_cookie_file(home, "main", SIGNED_IN.encode())
    secrets.save_cookie_file(home, "signedout", b"# Netscape HTTP Cookie File\n"
                                                b".youtube.com\tTRUE\t/\tTRUE\t1900000000\tYSC\tvalueYSC000005\n")
    expired = SIGNED_IN.replace(str(FAR), "1600000000")
    secrets.save_cookie_file(home, "old", expired.encode())
    loose = secrets.save_cookie_file(home, "loose", SIGNED_IN.encode())
    os.chmod(loose, 0o644)
    got = rows(home)
    main = got["account:main"]
    assert main.ok is True, main
    assert "6 cookie(s), 5 for youtube.com" in main.detail
    assert "login cookies: LOGIN_INFO, SAPISID, SID, __Secure-3PSID" in main.detail
    assert "earliest login expiry 2030-03-17" in main.detail and "old" in main.detail
    assert got["account:signedout"].ok == "warn" and "not signed in" in got["account:signedout"].detail
    assert got["account:old"].ok is False and "expired" in got["account:old"].detail
    assert got["account:loose"].ok == "warn" and got["account:loose"].fix == f"chmod 600 {loose}"
    text = json.dumps(doctor.to_json(got.values())) + "\n".join(doctor.format_table(list(got.values())))
    for v in VALUES:
        assert v not in text


def test_browser_and_proxy_accounts_show_no_password(home: Path, no_llm_env: None) -> None:
    """[accounts.NAME] tables: a browser account and a proxy, shown by host only."""
    s = replace(fast_settings(), accounts={"ff": {"cookies_from_browser": "firefox:default-release",
                                                  "proxy": "socks5://bob:pw-Q9Q9@10.0.0.2:1080"}})
    got = rows(home, s)
    row = got["account:ff"]
    assert row.ok is True and "firefox:default-release" in row.detail and "socks5://10.0.0.2:1080" in row.detail
    assert "pw-Q9Q9" not in json.dumps(doctor.to_json(got.values()))


def test_llm_endpoint_down_is_reported_not_a_crash(home: Path) -> None:
    """A configured endpoint on a closed port: a warning with a fix, in seconds; the key is never printed."""
    save_settings(home, replace(fast_settings(), llm_base_url=f"http://127.0.0.1:{closed_port()}/v1",
                                llm_model="local-model"))
    res, doc, took = doctor_cli(home, env={"OPENAI_API_KEY": KEY})
    row = doc["llm"]
    assert row["ok"] == "warn" and "not reachable" in row["detail"] and "retry-summaries" in row["fix"]
    assert KEY not in res.stdout + res.stderr and KEY[-8:] not in res.stdout + res.stderr
    assert res.returncode in (1, 2) and took < 15


def test_llm_endpoint_up_model_listed_or_not(home: Path, llm_server: FakeLLMServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A reachable server: the model is listed (ok) or not (a warning saying so)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    up = rows(home, replace(fast_settings(), llm_base_url=llm_server.base_url, llm_model="local-model"))["llm"]
    assert up.ok is True and "model local-model" in up.detail and "listed" in up.detail and KEY not in up.detail
    missing = rows(home, replace(fast_settings(), llm_base_url=llm_server.base_url, llm_model="nope-7b"))["llm"]
    assert missing.ok == "warn" and "not listed" in missing.detail


def test_home_readable_by_others_warns(home: Path, no_llm_env: None) -> None:
    """A home with mode 0755 is a warning with the chmod to run; 0700 is fine."""
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    row = rows(home)["home"]
    assert row.ok == "warn" and row.fix == f"chmod 700 {home}"
    os.chmod(home, 0o700)
    assert rows(home)["home"].ok is True


def test_po_token_plugin_is_listed(home: Path, tmp_path: Path) -> None:
    """A PO-token provider plugin on yt-dlp's plugin path (here a minimal one) shows up, with its availability."""
    plugin = tmp_path / "plugins" / "yt_dlp_plugins" / "extractor"
    plugin.mkdir(parents=True)
    (plugin / "getpot_tubemilltest.py").write_text(
        "from yt_dlp.extractor.youtube.pot.provider import PoTokenProvider, register_provider\n\n\n"
        "@register_provider\n"
        "class TubemillTestPTP(PoTokenProvider):\n"
        "    PROVIDER_NAME = 'tubemill-test'\n"
        "    PROVIDER_VERSION = '0.0.1'\n"
        "    _SUPPORTED_CONTEXTS = None\n\n"
        "    def is_available(self):\n"
        "        return False\n\n"
        "    def _real_request_pot(self, request):\n"
        "        raise NotImplementedError\n")
    _, doc, _ = doctor_cli(home, env={"PYTHONPATH": str(tmp_path / "plugins")})
    row = doc["po-token"]
    assert row["ok"] == "warn" and "tubemill-test-0.0.1 (unavailable)" in row["detail"]
    _, plain, _ = doctor_cli(home)
    assert plain["po-token"]["ok"] is True and "no PO-token provider" in plain["po-token"]["detail"]


def test_old_ytdlp_warns() -> None:
    """yt-dlp versions are dates: past 60 days old is a warning with the upgrade command."""
    import yt_dlp.version

    y, m, d = (int(x) for x in yt_dlp.version.__version__.split(".")[:3])
    released = date(y, m, d)
    fresh = doctor._ytdlp(time.mktime((released + timedelta(days=10)).timetuple()))
    stale = doctor._ytdlp(time.mktime((released + timedelta(days=61)).timetuple()))
    assert fresh.ok is True and stale.ok == "warn" and "pip install -U 'yt-dlp[default]'" in stale.fix


def test_missing_js_runtime_is_an_error(home: Path, no_llm_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No deno: the js-runtime row fails and says how to install it."""
    monkeypatch.setattr(ytdlp, "js_runtime", lambda: None)
    row = rows(home)["js-runtime"]
    assert row.ok is False and "pip install deno" in row.fix and "Requested format is not available" in row.detail


def test_bad_settings_and_a_crashing_check_are_rows(home: Path, no_llm_env: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken settings.toml and a check that raises are reported as failed rows; the rest still runs."""
    home.mkdir()
    (home / "settings.toml").write_text("[ytdlp]\ncookiefile = '/tmp/x'\n")
    monkeypatch.setattr(doctor, "_nvml", lambda: 1 / 0)
    got = rows(home)
    assert got["settings"].ok is False and "cookiefile" in got["settings"].detail
    assert got["nvml"].ok is False and "ZeroDivisionError" in got["nvml"].detail
    assert got["ffmpeg"].ok is True and doctor.exit_code(got.values()) == 2


# ---------------------------------------------------------------------- the System page
def test_system_page_shows_the_doctor_table(page_home: Path) -> None:
    """The System page runs the same checks on demand and shows them as a table with a summary line."""
    at = AppTest.from_file(str(ROOT / "pages" / "screens" / "system.py"), default_timeout=60).run()
    assert not at.exception
    assert not any("check" in df.value.columns for df in at.dataframe)  # not run until asked
    at.button(key="doctor_run").click().run()
    assert not at.exception
    table = next(df.value for df in at.dataframe if "check" in df.value.columns)
    assert {"js-runtime", "ejs", "yt-dlp", "llm", "home"} <= set(table["check"])
    assert set(table.columns) == {"check", "status", "detail", "fix"}
    row = table[table["check"] == "js-runtime"].iloc[0]
    assert row["status"] == "ok" and "deno" in row["detail"]
    summaries = [e.value for kind in ("success", "warning", "error") for e in getattr(at, kind)]
    assert any(s.startswith("Setup check:") for s in summaries)
