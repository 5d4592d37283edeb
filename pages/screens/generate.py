"""Generate: topics (or a CSV with per-row options) → narrated, subtitled videos, optionally uploaded."""

from __future__ import annotations

import time

import streamlit as st

from pages.screens._engine import engine_or_stop
from pipeline.app import views
from pipeline.app.progress import fmt_duration
from pipeline.errors import TubemillError
from pipeline.recipes.generate import media, music
from pipeline.recipes.generate.stages.script import script_notice
from pipeline.recipes.generate.topics import parse_topics

engine = engine_or_stop()
st.title("Generate videos")
text = st.text_area("Topics, one per line — or paste a CSV with a `topic` header and per-row options", height=160,
                    key="gen_topics", placeholder="How tides work\nWhy bread rises\n# or: topic,voice,length,aspect")
upload = st.file_uploader("…or upload a topics file (.txt or .csv)", type=["txt", "csv"], key="gen_file")
c1, c2, c3, c4 = st.columns(4)
name = c1.text_input("Batch name", value=time.strftime("videos-%Y%m%d-%H%M"), key="gen_name")
aspect = c2.selectbox("Aspect", ["9:16", "16:9"], key="gen_aspect")
length = c3.number_input("Target length (s)", 10, 1800, 60, key="gen_length")
pace = c4.selectbox("Pace", ["normal", "fast", "slow"], key="gen_pace")
c1, c2, c3, c4 = st.columns(4)
voice = c1.text_input("Voice (edge-tts)", value="en-US-AriaNeural", key="gen_voice")
style = c2.text_input("Style", value="", key="gen_style", placeholder="clear and friendly")
privacy = c3.selectbox("Privacy", ["private", "unlisted", "public"], key="gen_privacy")
do_upload = c4.checkbox("Upload to YouTube", key="gen_upload",
                        help="needs `tubemill youtube-auth CLIENT_SECRETS.json` once; uploads past the daily quota "
                             "wait for the next quota day")
burn = st.checkbox("Burn subtitles into the video", key="gen_burn")
with st.expander("Pictures, music, captions and upload extras"):
    c1, c2, c3 = st.columns(3)
    providers = media.provider_choices(engine.home)
    provider = c1.selectbox("Stock pictures", list(providers), key="gen_media", format_func=providers.get,
                            help="one picture (or clip) per scene from the script's visual; a provider that fails "
                                 "falls back to a drawn frame, never the video")
    kind = c2.selectbox("Kind", ["photo", "video", "any"], key="gen_media_kind", help="stills, footage or both")
    motion = c3.checkbox("Slow zoom/pan on stills", key="gen_motion")
    music_dir = st.text_input("Music folder (or one file)", key="gen_music", placeholder="~/music",
                              help="a track per video, looped or cut, ducked under the voice; empty: no music")
    c1, c2, c3 = st.columns(3)
    caption_style = c1.selectbox("Caption style", ["classic", "boxed", "bold", "karaoke"], key="gen_caption_style",
                                 help="burnt-in look; karaoke lights each word as it is spoken")
    embed = c2.checkbox("Soft subtitle track in the MP4", key="gen_embed")
    thumbnail = c3.selectbox("Thumbnail", ["title", "frame", "none"], key="gen_thumbnail")
    c1, c2, c3 = st.columns(3)
    playlist = c1.text_input("Add to playlist (ID)", key="gen_playlist",
                             help="needs `tubemill youtube-auth --playlists CLIENT_SECRETS.json`")
    kids = c2.checkbox("Made for kids", key="gen_kids")
    synthetic = c3.checkbox("Declare altered/synthetic content", value=True, key="gen_synthetic")
template, notice = script_notice(engine.home, engine.settings)
if template:
    st.info(notice)
else:
    st.caption(notice)

source_text = (text or "") + ("\n" + upload.getvalue().decode("utf-8", errors="replace") if upload else "")
topics = parse_topics(source_text)
for bad in topics.invalid:
    st.warning(f"Line {bad.line_no} skipped — {bad.reason}: `{bad.text[:80]}`")
if topics.items:
    per_video = views.per_item_seconds("generate", float(length), engine.summaries())
    st.metric("Videos", len(topics.items), help=f"≈ {fmt_duration(per_video * len(topics.items))} of work")
    st.dataframe([{"topic": i["source"], **i["meta"]} for i in topics.items], hide_index=True, width="stretch")
    if st.button("Start generating", type="primary", key="gen_start"):
        options = {"aspect": aspect, "length_s": float(length), "pace": pace, "voice": voice, "style": style,
                   "privacy": privacy, "upload": do_upload, "burn_subtitles": burn, "media_provider": provider,
                   "media_kind": kind, "motion": motion, "music_dir": music.music_path(music_dir),
                   "caption_style": caption_style, "embed_subtitles": embed, "thumbnail": thumbnail,
                   "playlist_id": playlist.strip(), "made_for_kids": kids, "synthetic_media": synthetic}
        try:
            bid = engine.submit(name.strip() or "videos", topics.items, recipe="generate", options=options)
        except (TubemillError, ValueError) as exc:
            st.error(str(exc))
        else:
            st.session_state["selected_batch"] = bid
            st.switch_page("pages/screens/batches.py")
else:
    st.caption("Add at least one topic.")
