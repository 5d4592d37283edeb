"""Secrets live in 0600 files under a 0700 folder, never leak through repr or masks."""

from __future__ import annotations

import os
import random
import stat
import string
from pathlib import Path

import pytest

from pipeline.config import secrets
from pipeline.config.settings import Settings
from pipeline.errors import InvalidInput

KEY = "sk-test-4f9a1c2b7e8d0a6c5b3e1f0d9c8b7a6wxyz"
COOKIES = (
    b"# Netscape HTTP Cookie File\n"
    b"# This is a generated file! Do not edit.\n\n"
    b".example.com\tTRUE\t/\tTRUE\t2147483647\tSID\tabc123\n"
    b"#HttpOnly_.example.com\tTRUE\t/\tTRUE\t2147483647\tHSID\tdef456\n"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_secret_file_and_folder_modes(home: Path) -> None:
    """A stored key is a 0600 file in a 0700 folder, even under a permissive umask."""
    old = os.umask(0)
    try:
        path = secrets.set_secret(home, "openai_api_key", KEY)
    finally:
        os.umask(old)
    assert path == home / "secrets" / "openai_api_key"
    assert mode(path) == 0o600
    assert mode(home / "secrets") == 0o700
    assert secrets.get_secret(home, "openai_api_key") == KEY
    assert secrets.secret_source(home, "openai_api_key") == "file"


def test_loosened_modes_are_tightened_on_write(home: Path) -> None:
    """A folder or file someone chmodded open is private again after the next write."""
    path = secrets.set_secret(home, "openai_api_key", KEY)
    os.chmod(path, 0o644)
    os.chmod(home / "secrets", 0o755)
    secrets.set_secret(home, "openai_api_key", KEY + "2")
    assert mode(path) == 0o600 and mode(home / "secrets") == 0o700


def test_environment_wins_over_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_API_KEY in the environment is used before the stored file, and reported as such."""
    secrets.set_secret(home, "openai_api_key", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment-1234")
    assert secrets.get_secret(home, "openai_api_key") == "sk-from-environment-1234"
    assert secrets.secret_source(home, "openai_api_key") == "environment"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert secrets.get_secret(home, "openai_api_key") == KEY


def test_missing_and_deleted_secret(home: Path) -> None:
    """No file and no variable is None; delete removes the file and says whether there was one."""
    assert secrets.get_secret(home, "openai_api_key") is None
    assert secrets.secret_source(home, "openai_api_key") is None
    secrets.set_secret(home, "openai_api_key", KEY)
    assert secrets.delete_secret(home, "openai_api_key") is True
    assert secrets.delete_secret(home, "openai_api_key") is False
    assert secrets.get_secret(home, "openai_api_key") is None


def test_bad_names_and_values_refused(home: Path) -> None:
    """Names cannot traverse folders; empty or multi-line values are refused."""
    for name in ("../settings", "a/b", "", "UPPER"):
        with pytest.raises(InvalidInput):
            secrets.set_secret(home, name, KEY)
    with pytest.raises(InvalidInput):
        secrets.set_secret(home, "openai_api_key", "   ")
    with pytest.raises(InvalidInput):
        secrets.set_secret(home, "openai_api_key", "sk-one\nsk-two")
    assert not (home / "settings").exists()


def test_mask_never_shows_more_than_four_characters() -> None:
    """No 5 consecutive characters of a value survive masking; short values show nothing of themselves."""
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "-_"
    for n in list(range(1, 40)) + [51, 164]:
        for prefix in ("", "sk-", "sk-proj-"):
            value = prefix + "".join(rng.choice(alphabet) for _ in range(n))
            masked = secrets.mask(value)
            assert not any(value[i:i + 5] in masked for i in range(len(value) - 4)), (value, masked)
            shown = masked.replace("…", "").replace("•", "").removeprefix("sk-")
            assert len(shown) <= 4 and value.endswith(shown)
    assert secrets.mask(KEY) == "sk-…wxyz"
    assert secrets.mask("short") == "•" * 8
    assert secrets.mask("") == "" and secrets.mask(None) == ""


def test_overwrite_is_atomic_when_replace_fails(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash before the rename keeps the old secret whole and leaves no temp file behind."""
    secrets.set_secret(home, "openai_api_key", KEY)

    def boom(*a: object) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(secrets.os, "replace", boom)
    with pytest.raises(OSError, match="simulated crash"):
        secrets.set_secret(home, "openai_api_key", "sk-new-value-0000000000")
    monkeypatch.undo()
    assert secrets.get_secret(home, "openai_api_key") == KEY
    assert sorted(p.name for p in (home / "secrets").iterdir()) == ["openai_api_key"]
    secrets.set_secret(home, "openai_api_key", "sk-new-value-0000000000")
    assert secrets.get_secret(home, "openai_api_key") == "sk-new-value-0000000000"


def test_llm_config_carries_stored_key_but_never_shows_it(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stored key reaches the LLM config when the environment has none, and repr hides it."""
    settings = Settings(pools={"net": 1, "cpu": 1, "gpu": 0, "llm": 1}, llm_model="gpt-4o-mini",
                        llm_base_url="http://127.0.0.1:9/v1")
    assert not secrets.llm_config_for(home, Settings(pools={"cpu": 1}, llm_base_url="")).configured()
    secrets.set_secret(home, "openai_api_key", KEY)
    config = secrets.llm_config_for(home, settings)
    assert config.resolved_api_key() == KEY
    assert config.base_url == "http://127.0.0.1:9/v1" and config.model == "gpt-4o-mini"
    assert KEY not in repr(config) and "wxyz" not in repr(config)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment-1234")
    config = secrets.llm_config_for(home, settings)
    assert config.api_key is None and config.resolved_api_key() == "sk-from-environment-1234"


def test_llm_config_with_settings_reads_no_settings_file(home: Path) -> None:
    """Given the live settings (a stage's ``ctx.settings``) no settings.toml is read; a batch's options still win."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.toml").write_text("this is [ not toml\n")
    with pytest.raises(ValueError, match="settings.toml"):
        secrets.llm_config_for(home)
    settings = Settings(pools={"cpu": 1}, llm_model="m-settings", llm_base_url="http://127.0.0.1:9/v1")
    config = secrets.llm_config_for(home, settings=settings)
    assert config.model == "m-settings" and config.base_url == "http://127.0.0.1:9/v1"
    config = secrets.llm_config_for(home, options={"llm_model": "m-batch"}, settings=settings)
    assert config.model == "m-batch" and config.base_url == "http://127.0.0.1:9/v1"


def test_private_options_are_split_out() -> None:
    """A proxy password and secret yt-dlp options leave the stored options; what stays is redacted."""
    public, private = secrets.split_private_options({
        "proxy": "socks5://u:pw-123456@10.0.0.2:1080", "language": "en",
        "ytdlp_options": {"socket_timeout": 5, "username": "alice@example.com",
                          "http_headers": {"Authorization": "Bearer abcdef123456", "Accept": "x"}}})
    assert public["proxy"] == "***" and public["language"] == "en"
    assert public["ytdlp_options"] == {"socket_timeout": 5, "username": "***",
                                       "http_headers": {"Authorization": "***", "Accept": "x"}}
    assert private["proxy"].endswith("@10.0.0.2:1080")
    assert private["ytdlp_options"]["username"] == "alice@example.com"
    assert private["ytdlp_options"]["http_headers"]["Authorization"] == "Bearer abcdef123456"
    assert secrets.split_private_options({"proxy": "http://10.0.0.2:8080"}) == ({"proxy": "http://10.0.0.2:8080"}, {})


def test_cookie_file_saved_listed_and_deleted(home: Path) -> None:
    """A Netscape cookies.txt is stored 0600 per account and listed by name and count, never by content."""
    path = secrets.save_cookie_file(home, "main", COOKIES)
    assert path == home / "secrets" / "cookies" / "main.txt"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert path.read_bytes() == COOKIES
    [entry] = secrets.list_cookie_files(home)
    assert (entry.name, entry.path, entry.n_cookies) == ("main", path, 2)
    assert "abc123" not in repr(entry)
    [row] = secrets.accounts_overview(home, now=entry.mtime + 60)
    assert row["account"] == "main" and row["cookies"] == 2 and row["age_s"] == pytest.approx(60)
    assert secrets.delete_cookie_file(home, "main") is True
    assert secrets.list_cookie_files(home) == []


def test_headerless_cookie_lines_accepted(home: Path) -> None:
    """Tab-separated 7-field lines without the header are a cookie file too."""
    data = b".example.com\tTRUE\t/\tFALSE\t0\ta\tb\n"
    secrets.save_cookie_file(home, "alt-1", data)
    assert secrets.list_cookie_files(home)[0].n_cookies == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello world\nnot cookies\n", "not a Netscape cookie file"),
        (b'[{"name": "SID", "value": "x"}]', "JSON"),
        (b"# Netscape HTTP Cookie File\n", "no cookies"),
        (b"\x89PNG\r\n\x1a\n\0\0", "binary"),
        (b"\xff\xfe\xfa", "UTF-8"),
    ],
)
def test_invalid_cookie_file_refused(home: Path, data: bytes, message: str) -> None:
    """Anything that is not Netscape cookie text is refused with a message saying why, and nothing is stored."""
    with pytest.raises(InvalidInput, match=message):
        secrets.save_cookie_file(home, "main", data)
    assert secrets.list_cookie_files(home) == []


def test_bad_account_names_refused(home: Path) -> None:
    """Account names become file names: no traversal, no empties."""
    for name in ("../x", "", ".hidden", "a/b", "x" * 65):
        with pytest.raises(InvalidInput):
            secrets.save_cookie_file(home, name, COOKIES)


# -- cookie lines checked the way yt-dlp reads them, and the private copies yt-dlp gets (issue 12) ---------------

MIXED = (
    b"# Netscape HTTP Cookie File\r\n"
    b"# a comment\r\n"
    b".example.com\tTRUE\t/\tFALSE\t0\tgood\tVALUE-GOOD-111111\r\n"
    b".example.com\tTRUE\t/\tFALSE\tnext-week\tbad\tVALUE-EXPIRY-222222\n"
    b"example.com\tTRUE\t/\tFALSE\t0\tflag\tVALUE-FLAG-333333\n"
    b"only\tthree\tVALUE-SHORT-444444\n"
    b"\tFALSE\t/\tFALSE\t0\tnodomain\tVALUE-NODOMAIN-555555\n"
    b".example.com\tMAYBE\t/\tFALSE\t0\tmaybe\tVALUE-MAYBE-666666\n"
    b"#HttpOnly_.example.com\tTRUE\t/\tTRUE\t1.5\tHSID\tVALUE-HTTPONLY-777777\n"
)


def test_cookie_lines_checked_by_number_never_by_value() -> None:
    """Each bad line is reported with its number and what is wrong; no value appears; good lines are kept."""
    check = secrets.check_cookies(MIXED)
    assert [ln.split("\t")[5] for ln in check.lines] == ["good", "HSID"]
    assert check.problems == [
        "line 4: the expiry (field 5) is not a number of seconds",
        "line 5: field 2 (include subdomains) is TRUE but the domain does not start with a dot (yt-dlp refuses "
        "the whole file)",
        "line 6: 3 tab-separated fields; a cookie line has 7",
        "line 7: the domain (field 1) is empty",
        "line 8: field 2 (include subdomains) is not TRUE or FALSE",
    ]
    assert secrets.validate_cookie_file(MIXED) == 2
    assert not any("VALUE-" in p for p in check.problems)


def test_unusable_cookie_file_names_its_lines(home: Path) -> None:
    """A file whose every cookie line is bad is refused, with the lines, without values."""
    data = b"# Netscape HTTP Cookie File\n.x.com\tTRUE\t/\tFALSE\tsoon\ta\tSECRET-A-1234\nx\ty\tSECRET-B-5678\n"
    with pytest.raises(InvalidInput) as info:
        secrets.save_cookie_file(home, "main", data)
    text = str(info.value)
    assert "no usable cookies" in text and "line 2: the expiry" in text and "line 3: 3 tab-separated" in text
    assert "SECRET" not in text


def test_cookie_copy_is_private_clean_and_released(home: Path, tmp_path: Path) -> None:
    """A copy per call: 0600 under <home>/secrets/cookie-copies, header + usable lines only, the user's file
    untouched, and gone after release. A headerless file gets the header yt-dlp needs."""
    user = tmp_path / "mine.txt"
    user.write_bytes(MIXED)
    copy = secrets.cookie_copy(home, "mine", user)
    assert copy.parent == home / "secrets" / "cookie-copies" and mode(copy) == 0o600 and mode(copy.parent) == 0o700
    assert copy.read_text().splitlines() == ["# Netscape HTTP Cookie File",
                                             ".example.com\tTRUE\t/\tFALSE\t0\tgood\tVALUE-GOOD-111111",
                                             "#HttpOnly_.example.com\tTRUE\t/\tTRUE\t1.5\tHSID\tVALUE-HTTPONLY-777777"]
    again = secrets.cookie_copy(home, "mine", user)
    assert again != copy  # concurrent calls never share a copy
    secrets.release_cookie_copy(home, "mine", copy, user)
    secrets.release_cookie_copy(home, "mine", again, user)
    assert not list(copy.parent.iterdir()) and user.read_bytes() == MIXED
    bare = tmp_path / "bare.txt"
    bare.write_bytes(b".example.com\tTRUE\t/\tFALSE\t0\ta\tb\n")
    c = secrets.cookie_copy(home, "bare", bare)
    assert c.read_text().startswith("# Netscape HTTP Cookie File\n")


def test_missing_cookie_file_and_stale_copies(home: Path, tmp_path: Path) -> None:
    """A missing file is a clear error; copies left by a dead process are swept on the next copy."""
    with pytest.raises(InvalidInput, match="cannot be read"):
        secrets.cookie_copy(home, "gone", tmp_path / "nope.txt")
    folder = secrets.copies_dir(home)
    dead = folder / "x.999999999.abcdef012345.txt"  # no such pid
    dead.write_text("# Netscape HTTP Cookie File\n")
    user = tmp_path / "u.txt"
    user.write_bytes(COOKIES)
    copy = secrets.cookie_copy(home, "u", user)
    assert not dead.exists() and copy.exists()


def test_kept_refreshed_cookies_are_first_party_only(home: Path, tmp_path: Path) -> None:
    """keep_refreshed: after a call, the copy's cookies for the user's domains (and their subdomains) are kept;
    a third-party domain is dropped; the next copy starts from what was kept, until the user's file changes."""
    user = tmp_path / "u.txt"
    user.write_bytes(COOKIES)
    copy = secrets.cookie_copy(home, "u", user, keep_refreshed=True)
    copy.write_text("# Netscape HTTP Cookie File\n"  # what yt-dlp saves: refreshed values and a stranger's
                    ".example.com\tTRUE\t/\tTRUE\t2147483647\tSID\tREFRESHED\n"
                    "accounts.example.com\tFALSE\t/\tTRUE\t0\tLSID\tSUB\n"
                    "127.0.0.1\tFALSE\t/\tFALSE\t0\tinjected\tEVIL-SET-COOKIE-777\n")
    secrets.release_cookie_copy(home, "u", copy, user, keep_refreshed=True)
    kept = (home / "secrets" / "cookie-copies" / "u.kept.txt").read_text()
    assert "REFRESHED" in kept and "SUB" in kept and "EVIL" not in kept
    nxt = secrets.cookie_copy(home, "u", user, keep_refreshed=True)
    assert "REFRESHED" in nxt.read_text()
    assert "REFRESHED" not in secrets.cookie_copy(home, "u", user).read_text()  # the option off: the user's file
    user.write_bytes(COOKIES.replace(b"abc123", b"fresh-export"))
    assert "fresh-export" in secrets.cookie_copy(home, "u", user, keep_refreshed=True).read_text()
    assert secrets.discard_kept_cookies(home, "u") is True
