"""New batch: paste or upload sources, choose options, preview, start."""

from __future__ import annotations

import re
import time
from datetime import date

import streamlit as st

from pages.screens._engine import get_engine
from pipeline.app import batch_view, views
from pipeline.app.progress import fmt_duration
from pipeline.errors import TubemillError
from pipeline.recipes.transcribe.options import FORMATS
from pipeline.recipes.transcribe.sources import Filters, printable

# Everything Markdown, Streamlit directives (:red[…]) or LaTeX ($…$) would act on.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&])")


def plain(text: str) -> str:
    """Input text for a Markdown widget that shows as typed: a pasted line is never a link, image or formula."""
    return _MD_SPECIAL.sub(r"\\\1", printable(str(text)))


st.title("New batch")
try:
    engine = get_engine()
except OSError as exc:  # an unwritable home or batches folder: say so instead of a traceback
    st.error(f"Tubemill cannot use its state folder: {plain(exc.strerror or str(exc))}: "
             f"{plain(str(exc.filename or ''))}. Set TUBEMILL_HOME to a writable folder and restart the app.")
    st.stop()

PLACEHOLDER = "https://www.youtube.com/watch?v=…\nhttps://example.org/podcast.xml\n# comments are ignored"
text = st.text_area("Sources, one per line", key="nb_sources", height=160, placeholder=PLACEHOLDER)
uploads = st.file_uploader("…or upload a list of URLs (.txt) or media files", accept_multiple_files=True,
                           key="nb_uploads")

RECIPE = "transcribe"  # New batch transcribes; Generate has its own page
llm_cfg = views.llm_config(engine)
with st.expander("Options", expanded=False):
    c1, c2, c3 = st.columns(3)
    name = c1.text_input("Batch name", value=st.session_state.get("nb_default_name") or
                         time.strftime("batch-%Y%m%d-%H%M"), key="nb_name")
    captions = c2.selectbox("Captions", ["prefer", "never", "only"], key="nb_captions",
                            help="prefer: use existing subtitles when present; only: skip videos without them")
    language = c3.text_input("Language", value="", key="nb_language", placeholder="detect (captions: en)")
    c1, c2, c3 = st.columns(3)
    models = batch_view.model_choices(engine.settings.whisper_model)
    model = c1.selectbox("Whisper model", models, index=models.index(engine.settings.whisper_model)
                         if engine.settings.whisper_model in models else 0, format_func=batch_view.model_label,
                         key="nb_model", help="the same list as Settings; the default is Settings' model")
    if llm_cfg.configured():
        summarizer = c2.selectbox("Summarizer", ["auto", "llm", "offline"], key="nb_summarizer")
        llm_mode = c3.radio("LLM summaries", ["realtime", "batch", "auto"], horizontal=True, key="nb_llm_mode",
                            help="batch: the OpenAI Batch API, about half the price, results within 24 h; auto: "
                                 f"batch above {engine.settings.llm_batch_min_items} videos")
    else:
        summarizer, llm_mode = "auto", "realtime"
        c2.caption("Summaries: offline extractive summarizer. Set an API key or an LLM server on the Settings page "
                   "for LLM summaries (and the Batch API).")
    c1, c2, c3 = st.columns(3)
    retry_limit = c1.number_input("Retry limit", 0, 20, engine.settings.retry.limit, key="nb_retry")
    on_error = c2.selectbox("On error", ["continue", "stop", "retry"], key="nb_on_error")
    force = c3.checkbox("Redo videos already done", key="nb_force")
    keep_audio = c3.checkbox("Keep audio", key="nb_keep_audio")
    st.caption("Filters for playlists, channels and feeds (unknown durations and dates pass)")
    c1, c2, c3 = st.columns(3)
    min_minutes = c1.number_input("Min duration (min)", 0.0, value=0.0, key="nb_min")
    max_minutes = c2.number_input("Max duration (min, 0 = none)", 0.0, value=0.0, key="nb_max")
    newest = c3.number_input("Newest N (0 = all)", 0, value=0, key="nb_newest")
    c1, c2, c3 = st.columns(3)
    after = c1.date_input("Published after", value=None, key="nb_after")
    before = c2.date_input("Published before", value=None, key="nb_before")
    match_title = c3.text_input("Title matches (regex)", key="nb_match")
    c1, c2 = st.columns(2)
    formats = c1.multiselect("Extra exports", list(FORMATS), key="nb_formats",
                             help="obsidian: Markdown note with YAML front matter; docx; words: word-level SRT/VTT; "
                                  "ass: karaoke subtitles for burn-in")
    if llm_cfg.configured():
        translate_to = c2.text_input("Translate to (LLM)", key="nb_translate_to", placeholder="e.g. de, fr, es",
                                     help="transcript.LANG.txt/.srt/.vtt with the original timing")
    else:
        translate_to = ""
        c2.caption("Translation needs an LLM: set an API key or an LLM server on the Settings page.")


def gather_text() -> str:
    """The pasted text plus uploaded URL lists and uploaded media (saved under the home first)."""
    parts = [text or ""]
    for f in uploads or []:
        if f.name.lower().endswith((".txt", ".csv", ".list")):
            # surrogateescape, not "replace": a bad byte is reported on its line by the preview, not hidden.
            parts.append(f.getvalue().decode("utf-8", errors="surrogateescape"))
        else:
            parts.append(str(views.save_upload(engine.home, f.name, f.getvalue())))
    return "\n".join(parts)


def options(n_items: int) -> dict:
    return views.batch_options(captions=captions, model=model, summarizer=summarizer, language=language or None,
                               retry_limit=int(retry_limit), on_error=on_error, force=force, keep_audio=keep_audio,
                               llm_mode=llm_mode, n_items=n_items,
                               llm_batch_min_items=engine.settings.llm_batch_min_items,
                               extra={k: v for k, v in (("formats", ",".join(formats)),
                                                        ("translate_to", translate_to.strip())) if v})


def make_preview() -> views.Preview | None:
    try:
        filters = Filters(min_duration=min_minutes * 60 or None, max_duration=max_minutes * 60 or None,
                          date_after=after if isinstance(after, date) else None,
                          date_before=before if isinstance(before, date) else None,
                          newest=int(newest) or None, match_title=match_title or None)
        cfg = llm_cfg
        with st.spinner("Listing sources…"):
            return views.build_preview(engine.home, gather_text(), RECIPE, filters, pools=engine.pool_sizes,
                                       summaries=engine.summaries(), llm_configured=cfg.configured(),
                                       llm_model=cfg.model, llm_prices=cfg.prices(), force=force,
                                       ytdlp_options=engine.settings.ytdlp, settings=engine.settings)
    except (TubemillError, OSError, ValueError) as exc:  # bad input or a full disk: a message, never a traceback
        st.error(plain(str(exc)))
        return None


c1, c2, _ = st.columns([1, 1, 4])
if c1.button("Preview", type="secondary", key="nb_preview_btn"):
    st.session_state["nb_preview"] = make_preview()
start = c2.button("Start batch", type="primary", key="nb_start_btn")

preview: views.Preview | None = st.session_state.get("nb_preview")
if start:
    preview = preview or make_preview()
    if preview is not None and preview.count:
        try:
            bid = engine.submit(name.strip() or "batch", preview.items(), recipe=RECIPE,
                                options=options(preview.count))
        except (TubemillError, OSError, ValueError) as exc:
            st.error(plain(str(exc)))
        else:
            st.session_state.pop("nb_preview", None)
            st.session_state["selected_batch"] = bid
            st.switch_page("pages/screens/batches.py")
    elif preview is not None:
        st.warning("Nothing to process: add at least one valid source.")

if preview is not None:
    for bad in preview.invalid:
        st.warning(f"Line {bad.line_no} skipped — {plain(bad.reason)}: {plain(bad.text[:100])}")
    for src, why in preview.failed:
        st.warning(f"Could not list {plain(src)}: {plain(why)}. It stays in the batch and will fail or retry with "
                   "this reason.")
    m = st.columns(5)
    m[0].metric("Videos", preview.count)
    m[1].metric("Already done", len(preview.already_done))
    m[2].metric("Duplicates removed", preview.duplicates)
    m[3].metric("Media", fmt_duration(preview.media_seconds) if preview.media_seconds else "?",
                help=f"{preview.unknown_durations} without a known duration" if preview.unknown_durations else None)
    m[4].metric("Estimated time", fmt_duration(preview.est_seconds) if preview.est_seconds is not None else "?")
    if preview.llm.get("engine") == "llm":
        cost = preview.llm.get("cost_usd")
        st.info(f"LLM summaries with {preview.llm['model']}: about {preview.llm['input_tokens']:,} input and "
                f"{preview.llm['output_tokens']:,} output tokens"
                + (f", ≈ ${cost:.2f} realtime (≈ ${cost / 2:.2f} with the Batch API)" if cost is not None else
                   " (no price known for this model)"))
    elif preview.recipe == "transcribe":
        st.caption("Summaries: offline extractive summarizer (no LLM key or endpoint set) — no cost.")
    if preview.entries:
        st.dataframe(preview.rows(), hide_index=True, width="stretch",
                     column_config={"duration_s": st.column_config.NumberColumn("duration (s)", format="%d")})
    elif preview.raw_sources:
        st.dataframe([{"source": s} for s in preview.raw_sources], hide_index=True, width="stretch")
