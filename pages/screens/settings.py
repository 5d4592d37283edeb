"""Settings: workers, governor floors, retries, models, output folder, LLM server; secrets kept apart."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import streamlit as st

from pages.screens._engine import engine_or_stop
from pipeline import notify
from pipeline.app import batch_view
from pipeline.config import secrets
from pipeline.config.settings import SETTINGS_NAME, Settings, save_settings
from pipeline.engine.core import MAX_POOL
from pipeline.errors import InvalidInput, TubemillError

log = logging.getLogger("tubemill.app")

WHISPER_MODELS = batch_view.WHISPER_MODELS  # New batch offers the same list
WHISPER_DEVICES = ["auto", "cpu", "cuda"]
POOLS = {"net": "net (downloads)", "cpu": "cpu (transcription)", "gpu": "gpu (0: none)", "llm": "llm (summaries)"}
FLASH = "settings_flash"


def check_output_dir(text: str) -> str:
    """``""`` (the default, ``<home>/output``) or an absolute folder that exists or can be made, and is writable."""
    text = text.strip()
    if not text:
        return ""
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise InvalidInput(f"output folder {text!r}: give an absolute path (or leave it empty for the default)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise InvalidInput(f"output folder {path} cannot be created or written: {exc.strerror or exc}") from exc
    return str(path)


def check_executor(text: str) -> str:
    from pipeline.engine.distributed import parse_executor

    text = text.strip()
    parse_executor(text)  # ConfigError (a TubemillError) says which forms are accepted
    return "" if text in ("", "local", "threads") else text


def check_model(choice: str, local_path: str) -> str:
    """The chosen model name, or a local model folder (which must exist) when one is given."""
    local_path = local_path.strip()
    if not local_path:
        return choice
    path = Path(local_path).expanduser()
    if not path.is_dir():
        raise InvalidInput(f"Whisper model folder {path} does not exist")
    return str(path)


def flash(kind: str, text: str) -> None:
    """A message for the next render (callbacks run before the page draws)."""
    st.session_state.setdefault(FLASH, []).append((kind, text))


def show_flash() -> None:
    for kind, text in st.session_state.pop(FLASH, []):
        getattr(st, kind)(text)


def settings_form(engine_settings: Settings) -> Settings | None:
    """The settings form; the new settings on a valid submit, else None."""
    s = engine_settings
    with st.form("settings"):
        st.subheader("Workers per pool")
        cols = st.columns(len(POOLS))
        pools = {}
        for col, (pool, label) in zip(cols, POOLS.items(), strict=True):
            pools[pool] = col.number_input(label, min_value=0 if pool == "gpu" else 1, max_value=MAX_POOL,
                                           value=min(MAX_POOL, max(0 if pool == "gpu" else 1,
                                                                   int(s.pools.get(pool, 0)))),
                                           step=1, key=f"pool_{pool}")
        st.subheader("Governor: heavy stages wait while free resources are below")
        cols = st.columns(3)
        ram = cols[0].number_input("min free RAM (MB)", min_value=0, value=int(s.governor.min_free_ram_mb), step=256,
                                   key="min_free_ram_mb")
        disk = cols[1].number_input("min free disk (MB)", min_value=0, value=int(s.governor.min_free_disk_mb),
                                    step=256, key="min_free_disk_mb")
        gpu = cols[2].number_input("min free GPU memory (MB)", min_value=0, value=int(s.governor.min_free_gpu_mb),
                                   step=256, key="min_free_gpu_mb")
        st.subheader("Retries")
        cols = st.columns(2)
        limit = cols[0].number_input("retries after the first attempt", min_value=0, max_value=100,
                                     value=int(s.retry.limit), step=1, key="retry_limit")
        base = cols[1].number_input("first retry after (seconds, doubling)", min_value=0.0,
                                    value=float(s.retry.base_s), step=1.0, key="retry_base_s")
        st.subheader("Transcription")
        cols = st.columns(3)
        known = s.whisper_model in WHISPER_MODELS
        model = cols[0].selectbox("Whisper model", WHISPER_MODELS,
                                  index=WHISPER_MODELS.index(s.whisper_model) if known else 0,
                                  format_func=batch_view.model_label,
                                  key="whisper_model")
        local = cols[1].text_input("…or a local model folder (overrides the choice)",
                                   value="" if known else s.whisper_model, key="whisper_path")
        device = cols[2].selectbox("device", WHISPER_DEVICES,
                                   index=WHISPER_DEVICES.index(s.whisper_device)
                                   if s.whisper_device in WHISPER_DEVICES else 0, key="whisper_device")
        st.subheader("Download pacing (per account)")
        pc = s.pacing
        cols = st.columns(4)
        c_lo = cols[0].number_input("with cookies: min delay (s)", min_value=0.0, value=float(pc.cookie_delay_min_s),
                                    step=10.0, key="cookie_delay_min_s")
        c_hi = cols[1].number_input("with cookies: max delay (s)", min_value=0.0, value=float(pc.cookie_delay_max_s),
                                    step=10.0, key="cookie_delay_max_s")
        a_lo = cols[2].number_input("anonymous: min delay (s)", min_value=0.0, value=float(pc.anon_delay_min_s),
                                    step=1.0, key="anon_delay_min_s")
        a_hi = cols[3].number_input("anonymous: max delay (s)", min_value=0.0, value=float(pc.anon_delay_max_s),
                                    step=1.0, key="anon_delay_max_s")
        cols = st.columns(4)
        queue_aware = cols[0].checkbox("queue-aware pace", value=pc.queue_aware, key="queue_aware",
                                       help="fast end of the range while few downloads wait for transcription, "
                                            "hold at the maximum buffer")
        b_min = cols[1].number_input("min buffer", min_value=0, value=int(pc.min_buffer), key="min_buffer")
        b_mid = cols[2].number_input("target buffer", min_value=0, value=int(pc.target_buffer), key="target_buffer")
        b_max = cols[3].number_input("max buffer", min_value=0, value=int(pc.max_buffer), key="max_buffer")
        cols = st.columns(3)
        fast = cols[0].number_input("fast first phase: downloads per account", min_value=0,
                                    value=int(pc.fast_start_items), key="fast_start_items",
                                    help="0 = off. The first N downloads of each account use a quarter of the delay.")
        cooldown = cols[1].number_input("cooldown after repeated failures (s)", min_value=0.0,
                                        value=float(pc.cooldown_s), step=60.0, key="cooldown_s")
        executor = cols[2].text_input("executor for cpu/gpu stages", value=s.executor, key="executor",
                                      placeholder="local", help="dask://HOST:PORT or local-cluster:N; takes effect "
                                                                "when the app restarts")
        st.subheader("Output")
        output = st.text_input("output folder", value=s.output_dir, placeholder=str(engine.home / "output"),
                               help="empty: <home>/output", key="output_dir")
        st.subheader("LLM server")
        cols = st.columns(2)
        base_url = cols[0].text_input("base URL (empty: OPENAI_BASE_URL or OpenAI)", value=s.llm_base_url,
                                      key="llm_base_url")
        llm_model = cols[1].text_input("model", value=s.llm_model, key="llm_model")
        if not st.form_submit_button("Save settings", key="save_settings"):
            return None
    try:
        return replace(
            s,
            pools={**s.pools, **{p: int(n) for p, n in pools.items()}},
            governor=replace(s.governor, min_free_ram_mb=int(ram), min_free_disk_mb=int(disk),
                             min_free_gpu_mb=int(gpu)),
            retry=replace(s.retry, limit=int(limit), base_s=float(base)),
            whisper_model=check_model(model, local),
            whisper_device=device,
            output_dir=check_output_dir(output),
            llm_base_url=base_url.strip(),
            llm_model=llm_model.strip() or s.llm_model,
            pacing=replace(s.pacing, cookie_delay_min_s=float(c_lo), cookie_delay_max_s=float(c_hi),
                           anon_delay_min_s=float(a_lo), anon_delay_max_s=float(a_hi), queue_aware=bool(queue_aware),
                           min_buffer=int(b_min), target_buffer=int(b_mid), max_buffer=int(b_max),
                           fast_start_items=int(fast), cooldown_s=float(cooldown)),
            executor=check_executor(executor),
        )
    except (InvalidInput, ValueError, TubemillError) as exc:
        st.error(f"Not saved: {exc}")
        return None


# -- secrets (callbacks: they run before the page draws, so what it shows is current) ---------------------------


def _save_key(name: str, label: str) -> None:
    field = f"new_{name}"
    value = st.session_state.get(field, "")
    st.session_state[field] = ""  # the key leaves session state now
    try:
        secrets.set_secret(engine.home, name, value)
    except (InvalidInput, OSError) as exc:
        flash("error", f"{label} not saved: {exc}")
        return
    flash("success", f"{label} saved to {engine.home / secrets.SECRETS_DIR} (mode 0600).")


def _remove_key(name: str, label: str) -> None:
    try:
        removed = secrets.delete_secret(engine.home, name)
    except OSError as exc:
        flash("error", f"Could not remove the {label}: {exc}")
        return
    flash("success" if removed else "info", f"Stored {label} removed." if removed else f"No stored {label} to remove.")


def _save_cookies() -> None:
    name = st.session_state.get("cookie_account", "")
    upload = st.session_state.get("cookie_file")
    if upload is None:
        flash("error", "Choose a cookies.txt file to upload.")
        return
    try:
        path = secrets.save_cookie_file(engine.home, name, upload.getvalue())
    except (InvalidInput, OSError) as exc:
        flash("error", f"Cookies not saved: {exc}")
        return
    flash("success", f"Cookies for account {path.stem!r} saved (mode 0600).")


def _delete_cookies(name: str) -> None:
    try:
        secrets.delete_cookie_file(engine.home, name)
    except (InvalidInput, OSError) as exc:
        flash("error", f"Could not delete the cookies of {name!r}: {exc}")
        return
    flash("success", f"Cookies for account {name!r} deleted.")


def key_status(name: str, label: str) -> None:
    """Where the key comes from (masked), and a Remove button for a stored one."""
    home = engine.home
    source = secrets.secret_source(home, name)
    if source == "environment":
        st.write(f"{label} `{secrets.mask(secrets.get_secret(home, name))}` from environment "
                 f"({secrets.ENV_VARS[name]}); it wins over a stored key.")
    elif source == "file":
        st.write(f"{label} `{secrets.mask(secrets.get_secret(home, name))}` stored in "
                 f"{home / secrets.SECRETS_DIR}, mode 0600.")
    else:
        st.write(f"No {label} set.")
    if (home / secrets.SECRETS_DIR / name).exists():
        st.button("Remove stored key", key=f"remove_{name}", on_click=_remove_key, args=(name, label))


def key_form(name: str, label: str) -> None:
    with st.form(f"{name}_form", clear_on_submit=True):
        st.text_input(f"New {label}", type="password", key=f"new_{name}", autocomplete="off")
        st.form_submit_button("Save key", key=f"save_{name}", on_click=_save_key, args=(name, label))


def api_key_section() -> None:
    st.subheader("OpenAI API key")
    key_status("openai_api_key", "API key")
    config = secrets.llm_config_for(engine.home, engine.settings)
    if config.configured():
        st.caption(f"Summaries use {config.model} at {config.base_url or 'the OpenAI API'}.")
    else:
        st.info("Summaries use the offline extractive summarizer (no key set).")
    key_form("openai_api_key", "API key")


def media_keys_section() -> None:
    st.subheader("Stock media keys (generated videos)")
    st.caption("Openverse needs no key. Pexels and Pixabay keys are free from their sites; a video batch "
               "chooses its provider (`--media-provider`).")
    for provider, name in secrets.MEDIA_KEYS.items():
        label = f"{provider.capitalize()} key"
        key_status(name, label)
        key_form(name, label)


def cookies_section() -> None:
    st.subheader("Cookie files (download accounts)")
    files = secrets.list_cookie_files(engine.home)
    if not files:
        st.write("No accounts configured: downloads are anonymous.")
    for c in files:
        cols = st.columns([4, 1])
        cols[0].write(f"**{c.name}** · {c.n_cookies} cookies · updated {_ago(c.mtime)}")
        cols[1].button("Delete", key=f"delete_cookies_{c.name}", on_click=_delete_cookies, args=(c.name,))
    with st.form("cookies_form", clear_on_submit=True):
        st.text_input("Account name", key="cookie_account", placeholder="e.g. main")
        st.file_uploader("cookies.txt (Netscape format)", type=["txt"], key="cookie_file")
        st.form_submit_button("Save cookies", key="save_cookies", on_click=_save_cookies)


def _save_notify() -> None:
    ss = st.session_state
    try:
        conf = replace(engine.settings.notify, webhook_url=ss.get("notify_url", "").strip(),
                       held_after_s=float(ss.get("notify_held_min", 30)) * 60,
                       events=tuple(ss.get("notify_events", ())))
        new = replace(engine.settings, notify=conf)
        save_settings(engine.home, new)
        engine.apply_settings(new)  # the main form saves engine.settings: it must hold this section too
        urls = ss.get("notify_apprise", "")
        ss["notify_apprise"] = ""  # the URLs carry tokens: out of session state now
        if urls.strip():
            notify.set_apprise_urls(engine.home, urls)
    except (InvalidInput, ValueError, OSError) as exc:
        flash("error", f"Notifications not saved: {exc}")
        return
    flash("success", "Notifications saved.")


def _notify_action(action: str) -> None:
    home = engine.home
    try:
        if action == "rotate":
            notify.rotate_webhook_secret(home)
            flash("success", "New webhook secret: give it to your receiver (the old one no longer verifies).")
        elif action == "remove_apprise":
            notify.set_apprise_urls(home, [])
            flash("success", "Stored Apprise URLs removed.")
        elif action == "test":
            notify.send_test(home)
            flash("info", f"Test notification queued; each attempt is logged in {notify.log_path(home)}.")
        elif action == "show":
            st.session_state["notify_show_secret"] = not st.session_state.get("notify_show_secret")
    except (InvalidInput, OSError) as exc:
        flash("error", f"Not done: {exc}")


def notifications_section() -> None:
    """Webhook (URL in settings.toml, signing secret 0600), Apprise URLs (a secret), a test button, the log."""
    from pipeline.notify.channels import apprise_module
    from pipeline.notify.keys import WEBHOOK_SECRET

    st.header("Notifications")
    st.caption("Batch done, failed or held for long, and new items of a subscription: a signed webhook POST, "
               "Apprise when it is installed, and a toast here.")
    conf, home = engine.settings.notify, engine.home
    with st.form("notify_form"):
        st.text_input("webhook URL", value=conf.webhook_url, key="notify_url", placeholder="https://…")
        cols = st.columns(2)
        cols[0].number_input("held for long after (minutes)", min_value=0.0, value=conf.held_after_s / 60,
                             key="notify_held_min")
        cols[1].multiselect("events", list(notify.NOTIFY_EVENTS), default=list(conf.events), key="notify_events")
        st.text_input("Apprise URLs (space separated; stored as a secret; leave empty to keep)", type="password",
                      key="notify_apprise", autocomplete="off")
        st.form_submit_button("Save notifications", key="save_notify", on_click=_save_notify)
    secret = secrets.get_secret(home, WEBHOOK_SECRET)
    shown = secret if st.session_state.get("notify_show_secret") else secrets.mask(secret)
    st.write(f"Webhook secret: `{shown}` (HMAC-SHA256, header {notify.SIGNATURE_HEADER})" if secret
             else "Webhook secret: generated on the first delivery.")
    n_urls = len(notify.apprise_urls(home))
    st.write(f"Apprise: {n_urls} URL(s) stored" + ("" if apprise_module() or not n_urls
                                                   else " — apprise is not installed (`pip install apprise`)"))
    cols = st.columns(4)
    cols[0].button("Hide secret" if st.session_state.get("notify_show_secret") else "Show secret",
                   key="notify_show", on_click=_notify_action, args=("show",), disabled=not secret)
    cols[1].button("Rotate secret", key="notify_rotate", on_click=_notify_action, args=("rotate",))
    cols[2].button("Remove Apprise URLs", key="notify_remove_apprise", on_click=_notify_action,
                   args=("remove_apprise",), disabled=not n_urls)
    cols[3].button("Send a test notification", key="notify_test", on_click=_notify_action, args=("test",))
    path = notify.log_path(home)
    if path.exists():
        with st.expander("Delivery log (last 20 lines)"):
            st.code("\n".join(path.read_text(encoding="utf-8").splitlines()[-20:]) or "(empty)")


def _ago(mtime: float) -> str:
    import time

    from pipeline.common.units import fmt_duration

    return f"{fmt_duration(max(0.0, time.time() - mtime))} ago"


st.title("Settings")
engine = engine_or_stop()
show_flash()
new = settings_form(engine.settings)
if new is not None:
    try:
        path = save_settings(engine.home, new)
        old_output = engine.settings.output_dir
        gpu_switched = bool(new.pools.get("gpu")) != bool(engine.pool_sizes.get("gpu"))
        engine.apply_settings(new)
    except (OSError, ValueError, TubemillError) as exc:
        log.exception("saving settings failed")
        st.error(f"Settings not saved: {exc}")
    else:
        st.success(f"Saved to {path}")
        if new.output_dir != old_output:
            st.info("The new output folder is used by batches started after the app restarts.")
        if gpu_switched:
            st.info("Turning the GPU pool on or off takes effect when the app restarts.")
        if not engine.owner:
            st.info("Another process runs this home: it takes the new settings when it restarts.")

st.header("Secrets")
st.caption(f"Kept out of {SETTINGS_NAME}, the batch state and every export.")
api_key_section()
media_keys_section()
cookies_section()
notifications_section()
