"""System: this machine's resources over time, the pools, what the governor holds and why, download accounts,
and the setup check (`tubemill doctor`'s table)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from pages.screens._engine import engine_or_stop, get_monitor
from pipeline.app import doctor
from pipeline.app.monitor import busy_rows, chart_rows, time_chart
from pipeline.common.units import fmt_duration
from pipeline.config import secrets

log = logging.getLogger("tubemill.app")


@contextmanager
def shown_as_error(what: str) -> Iterator[None]:
    """The page's boundary: a failure becomes one readable line here (and a traceback in the server log)."""
    try:
        yield
    except Exception as exc:
        log.exception("System page: %s failed", what)
        st.error(f"Could not {what}: {type(exc).__name__}: {exc}")


def _mb(value: float) -> str:
    return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value:.0f} MB"


def render_resources() -> None:
    monitor = get_monitor()
    sample = monitor.latest() or monitor.sample_once()
    cols = st.columns(3)
    cols[0].metric("CPU", f"{sample['cpu_percent']:.0f} %")
    used = sample["ram_total_mb"] - sample["ram_available_mb"]
    cols[1].metric("RAM used", f"{_mb(used)} of {_mb(sample['ram_total_mb'])}", help=f"{sample['ram_used_pct']:.0f} %")
    cols[2].metric("Disk free (output folder)", _mb(sample["disk_free_mb"]), help=str(engine.output_root))
    if sample["gpus"]:
        gcols = st.columns(len(sample["gpus"]))
        for col, g in zip(gcols, sample["gpus"], strict=True):
            col.metric(f"GPU {g['index']} memory · {g['name']}",
                       f"{_mb(g['mem_total_mb'] - g['mem_free_mb'])} of {_mb(g['mem_total_mb'])}",
                       help=f"utilization {g['util_percent']:.0f} %")
            col.caption(f"utilization {g['util_percent']:.0f} %")
    else:
        st.info(f"No NVIDIA GPU detected ({sample['gpu_error'] or 'no reason given'}): GPU stages run on the CPU.")
    if monitor.last_error:
        st.warning(f"The last resource reading failed: {monitor.last_error}")

    samples = monitor.samples()
    if samples:
        st.caption(f"Last {fmt_duration(samples[-1]['t'] - samples[0]['t'])}, a reading every "
                   f"{monitor.interval_s:g} s")
        st.altair_chart(time_chart(chart_rows(samples), "%"), width="stretch")
        st.altair_chart(time_chart(busy_rows(samples), "busy workers"), width="stretch")


def render_pools() -> None:
    pools = engine.pools()
    g = engine.settings.governor
    st.dataframe(
        pd.DataFrame([{"pool": p.name, "size": p.size, "busy": p.busy, "held": p.held or ""} for p in pools]),
        hide_index=True,
    )
    held = [p for p in pools if p.held]
    for p in held:
        st.warning(f"The governor holds the {p.name} pool: {p.held}")
    if not held:
        st.caption("The governor is holding nothing.")
    st.caption(f"Heavy stages (cpu, gpu) wait while free RAM is under {g.min_free_ram_mb} MB, free disk under "
               f"{engine.output_root} is under {g.min_free_disk_mb} MB, or free GPU memory is under "
               f"{g.min_free_gpu_mb} MB. Change these on the Settings page.")


def render_accounts() -> None:
    """One row per download account: pacing state, delay multiplier, downloads and failures."""
    files = {r["account"]: r for r in secrets.accounts_overview(engine.home)}
    rows, held = engine.accounts_snapshot()
    if held:
        st.warning(f"Downloads are held: {held}")
    if not files:
        st.write("No accounts configured: downloads are anonymous. Add a cookies.txt on the Settings page.")
    if not rows and not files:
        return
    table = []
    for r in rows:
        f = files.pop(r["account"], None)
        state = r["state"] + (f" ({fmt_duration(r['wait_s'])})" if r.get("wait_s") else "")
        table.append({"account": r["account"], "state": state, "delay ×": r["multiplier"],
                      "downloads": r["downloads"], "failures": r["failures"], "429s": r["rate_limits"],
                      "last delay": fmt_duration(r["last_delay_s"]) if r.get("last_delay_s") else "",
                      "cookies": f["cookies"] if f else ("yes" if r["cookies"] else "none"),
                      "identity": r.get("source") or "", "proxy": r.get("proxy") or "",
                      "note": r.get("disabled") or ""})
    for name, f in files.items():  # saved but not used by any batch yet
        table.append({"account": name, "state": "ready", "delay ×": 1.0, "downloads": 0, "failures": 0, "429s": 0,
                      "last delay": "", "cookies": f["cookies"], "note": f"cookies updated {fmt_duration(f['age_s'])} "
                                                                         "ago"})
    st.dataframe(pd.DataFrame(table), hide_index=True)
    p = engine.settings.pacing
    st.caption(f"One download at a time per account, {p.cookie_delay_min_s:.0f}–{p.cookie_delay_max_s:.0f} s apart "
               f"with cookies ({p.anon_delay_min_s:.0f}–{p.anon_delay_max_s:.0f} s anonymous), ×"
               f"{p.backoff_factor:g} after a 429. A disabled account comes back when its cookie file is replaced.")


def render_doctor() -> None:
    """The setup check, on demand (it runs tools and probes the LLM endpoint: seconds, not every refresh)."""
    if st.button("Run the setup check", key="doctor_run"):
        st.session_state["doctor_checks"] = doctor.run_checks(engine.home)
    checks = st.session_state.get("doctor_checks")
    if checks is None:
        st.caption("Checks yt-dlp and its JavaScript runtime, PO-token providers, ffmpeg, Whisper models, the GPU, "
                   "the LLM endpoint, cookie accounts, disk and home — the same table as `tubemill doctor`.")
        return
    code = doctor.exit_code(checks)
    summary = doctor.format_table(checks)[-1]
    show = st.success if code == 0 else st.warning if code == 1 else st.error
    show(f"Setup check: {summary}")
    st.dataframe(pd.DataFrame(doctor.rows_for_page(checks)), hide_index=True)


@st.fragment(run_every=2)
def live() -> None:
    st.subheader("Resources")
    with shown_as_error("read this machine's resources"):
        render_resources()
    st.subheader("Pools")
    with shown_as_error("read the pools"):
        render_pools()
    st.subheader("Download accounts")
    with shown_as_error("list the accounts"):
        render_accounts()


st.title("System")
engine = None
with shown_as_error("start the engine"):
    engine = engine_or_stop()
if engine is not None:
    if not engine.owner:
        owner = engine.owner_info() or {}
        st.info(f"Another process (pid {owner.get('pid', '?')}) runs this home: its pools are busy there, "
                "not in this one. The readings are this machine's.")
    live()
    st.subheader("Setup check")
    with shown_as_error("run the setup check"):
        render_doctor()
