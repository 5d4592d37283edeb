"""Results: per video the transcript (click a line to play from there), summary, tags and files;
per batch the ZIP, the PDF, the manifest and the error report. The page reads its snapshot inside a
fragment that reruns every few seconds, so items that finish appear without a reload."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages.screens._engine import batch_picker, engine_or_stop
from pages.screens._item import render_item_detail
from pipeline.app import item_view, views
from pipeline.common.formats import fmt_timestamp

engine = engine_or_stop()
st.title("Results")
REFRESH_S = 2.0
IDLE_REFRESH_S = 10.0  # a page opened before its batch starts must still notice it


def download(label: str, path: Path, mime: str, key: str) -> None:
    # on_click="ignore": with a rerun the deferred file vanished ~1 click in 3 (NOTES).
    st.download_button(label, data=lambda p=path: p.read_bytes(), file_name=path.name, mime=mime, key=key,
                       on_click="ignore")


def batch_downloads(summary, bid: str) -> None:  # type: ignore[no-untyped-def]
    files = views.batch_files(summary)
    cols = st.columns(4)
    for col, (key, label, mime) in zip(cols, (("zip", "ZIP of the batch", "application/zip"),
                                              ("pdf", "Combined PDF", "application/pdf"),
                                              ("manifest", "Manifest (JSON)", "application/json"),
                                              ("errors", "Error report", "text/markdown")), strict=True):
        with col:
            if key in files:
                download(label, files[key], mime, f"dl-{key}-{bid}")
            else:
                st.caption(f"{label}: not written yet" if summary.state != "done" else f"{label}: none")
    stats = views.load_json(files["stats"]) if "stats" in files else None
    ledger = (stats or {}).get("llm") or {}
    if ledger.get("by_mode"):
        parts = [f"{mode}: {v['items']} summaries, {v['input_tokens']:,} + {v['output_tokens']:,} tokens, "
                 f"${v['cost_usd']:.4f}" for mode, v in ledger["by_mode"].items()]
        st.caption("LLM cost — " + "; ".join(parts))


def failed_items(summary, bid: str) -> None:  # type: ignore[no-untyped-def]
    if not summary.counts.get("failed"):
        return
    failed = engine.items(bid, status=["failed"], limit=200)
    with st.expander(f"Failed items ({summary.counts['failed']})", icon=":material/error:"):
        by_n = {it["n"]: it for it in failed}
        n = st.selectbox("Failed item", list(by_n), index=None, key=f"results_failed_{bid}",
                         placeholder="choose one: its full error, hint, log and actions",
                         format_func=lambda k: f"#{k} · {by_n[k].get('title') or by_n[k]['source']}")
        for it in failed[:20] if n is None else []:
            st.markdown(f"**#{it['n']} {views.md_text(it.get('title') or it['source'])}** — "
                        f"{views.md_text(item_view.error_text(it))}")
        if n is not None:
            render_item_detail(engine, summary, by_n[n], "results")


def player(item: dict, start: int) -> None:  # type: ignore[type-arg]
    source = item_view.player_source(item)
    if source is None:
        st.caption(":material/music_off: Nothing to play: the media was not kept and its file URL is not known "
                   "(keep the audio to play it here).")
    elif item_view.is_audio(source):
        st.audio(source, start_time=start)
    else:
        st.video(source, start_time=start)


def language_text(meta: dict) -> str | None:  # type: ignore[type-arg]
    """"en 98%": the language Whisper detected and how sure it was (captions: the language alone)."""
    lang, prob = meta.get("language"), meta.get("language_probability")
    if not lang:
        return None
    shown = f"{lang} (translated to English)" if meta.get("task") == "translate" else str(lang)
    detected = isinstance(prob, int | float) and meta.get("transcript_source") == "whisper"
    return f"{shown} {float(prob):.0%}" if detected else shown


def quality_notice(meta: dict) -> None:  # type: ignore[type-arg]
    """What the hallucination guard found in this transcript and what it repaired, as a badge and a line."""
    q = meta.get("quality")
    if not isinstance(q, dict):
        return
    if q.get("error"):
        st.warning(f"Hallucination guard failed ({views.md_text(q['error'])}); the transcript is Whisper's "
                   "first text.", icon=":material/report:")
        return
    found, fixed, left = int(q.get("found") or 0), int(q.get("repaired") or 0), int(q.get("flagged") or 0)
    if not found:
        st.badge("Guard: no suspect segments", icon=":material/verified:", color="green")
        return
    reasons = ", ".join(f"{k} {v}" for k, v in (q.get("reasons") or {}).items())
    st.badge(f"Guard: {fixed} repaired · {left} flagged", icon=":material/healing:",
             color="orange" if left else "blue")
    line = (f"Hallucination guard: {found} suspect segment(s) ({reasons}); {fixed} repaired by a fresh decode, "
            f"{left} still flagged.")
    for w in (q.get("windows") or [])[:3]:
        what = {"replaced": "replaced", "dropped": "dropped (silence)"}.get(w.get("outcome"), "kept")
        line += f"  \n{fmt_timestamp(w.get('start'))}: “{views.md_text(w.get('old'))}” {what}"
    for x in (q.get("still") or [])[:3]:  # where to listen
        line += f"  \nStill doubtful at {fmt_timestamp(x.get('start'))}: “{views.md_text(x.get('text'))}”"
    (st.warning if left else st.info)(line, icon=":material/healing:")


def show_item(summary, bid: str, item: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    n = item["n"]
    meta = item.get("meta") or {}
    st.subheader(views.md_text(item.get("title") or item["source"]))  # source metadata: text, never Markdown
    facts = [f"{fmt_timestamp(item['duration'])}" if item.get("duration") else None,
             language_text(meta), meta.get("transcript_source"), ", ".join(item.get("flags") or []) or None]
    st.caption(" · ".join(f for f in facts if f))
    st.caption(item_view.chain_text(item, list(summary.recipe)))
    for line in item_view.item_notes(item):
        st.info(views.md_text(line), icon=":material/info:")
    quality_notice(meta)
    if "repetition" in (item.get("flags") or []):
        st.warning(f"Possible Whisper hallucination: {views.md_text(meta.get('repetition'))}")
    note = views.summary_note(item)
    if note:
        (st.warning if meta.get("summary_outcome") == "fallback" else st.info)(note)

    rendered = Path(item["workdir"]) / "video.mp4"
    if rendered.exists():  # a generated video: show it, with its script below
        srt = rendered.with_name("subtitles.srt")
        st.video(str(rendered), subtitles=str(srt) if srt.exists() else None)
        upload = views.load_json(rendered.with_name("upload.json"))
        if upload:
            st.success(f"Uploaded: {views.md_text(upload.get('url'))} ({upload.get('privacy')})")
    transcript = views.load_json(Path(item["workdir"]) / "transcript.json") or {"segments": []}
    segments = transcript.get("segments", [])
    table_key = f"segments_{bid}_{n}"
    state = st.session_state.get(table_key)
    picked = list(state.selection.rows) if state is not None and getattr(state, "selection", None) else []
    start = int(segments[picked[0]]["start"]) if picked and picked[0] < len(segments) else 0
    if not rendered.exists():
        player(item, start)

    left, right = st.columns([3, 2])
    script = views.load_json(Path(item["workdir"]) / "script.json") if not segments else None
    with left:
        if script:
            st.markdown("**Script**")
            st.markdown(views.md_text(script.get("script", "")))  # model-written: shown as text
        else:
            st.markdown("**Transcript** — select a line to play from there")
            rows = [{"time": fmt_timestamp(s["start"]), "text": s["text"]} for s in segments]
            st.dataframe(rows, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                         key=table_key, height=360)
    with right:
        summary_md = Path(item["workdir"]) / "summary.md"
        if summary_md.exists():
            st.markdown(summary_md.read_text(encoding="utf-8"))
        for key, path, mime in views.item_files(item):
            download(f"{key}: {path.name}", path, mime, f"dl-{bid}-{n}-{key}")
    with st.expander("Item detail: stages, log, files", icon=":material/info:"):
        render_item_detail(engine, summary, item, "results-done")


def live() -> None:
    summaries = [s for s in engine.summaries() if s.counts.get("done") or s.counts.get("failed")]
    if not summaries:
        st.write("Nothing finished yet.")
        return
    bid = batch_picker(summaries, "results_batch", lambda s: f"{s.name} · {s.state} · {s.counts.get('done', 0)} done")
    summary = engine.summary(bid)
    batch_downloads(summary, bid)
    done = engine.items(bid, status=["done"], limit=None)
    flagged = views.summary_flagged(done)
    if flagged:
        st.warning(f"{flagged} summary(ies) fell back to the offline summarizer (the transcripts are complete). "
                   "Once the LLM endpoint works, ask it again for just these.")
        if st.button(f"Retry {flagged} summary(ies)", key=f"retry-summaries-{bid}", icon=":material/refresh:"):
            n_reopened = engine.retry_summaries(bid)
            st.toast(f"asking the LLM again for {n_reopened} summary(ies)")
    failed_items(summary, bid)
    query = st.text_input("Find a video", key="results_query", placeholder="part of a title")
    if query:
        done = [it for it in done if query.lower() in (it.get("title") or it["source"]).lower()]
    if not done:
        st.write("No finished videos match." if query else "No finished videos in this batch yet.")
        return
    shown = done[:500]
    by_n = {it["n"]: it for it in shown}
    wanted = views.results_hint(st.session_state, bid)  # "Open in Results" on Batches or Search
    if wanted in by_n:
        st.session_state[f"results_item_{bid}"] = wanted
    n = st.selectbox("Video", list(by_n), key=f"results_item_{bid}",
                     format_func=lambda k: by_n[k].get("title") or by_n[k]["source"] if k in by_n else str(k))
    show_item(summary, bid, by_n[n] if n in by_n else shown[0])


# Refresh while something runs (finished items appear without a reload); a quiet home is re-read slowly, so a
# Results page opened before its batch starts still shows it (and then refreshes fast on the next page run).
busy = any(s.state == "active" for s in engine.summaries())
st.fragment(live, run_every=REFRESH_S if busy else IDLE_REFRESH_S)()
