"""Caption styles and word-by-word captions: the ASS the subtitles stage writes, burnt in by ffmpeg's libass
and checked pixel by pixel (highlight colour on the spoken word, the box, the position)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.common import ffmpeg
from pipeline.engine.stage import StageContext
from pipeline.recipes.generate import captions
from pipeline.recipes.generate.options import GenerateOptions
from pipeline.recipes.generate.stages import subtitles
from pipeline.recipes.generate.tts import estimate_words
from pipeline.recipes.generate.video import font_path

W, H = 360, 640
TEXTS = ["Tides rise and fall twice a day.", "The moon pulls the oceans, and the sun helps a little."]
SPANS = [(0.2, 2.4), (2.6, 5.6)]  # each scene's speech, as narrate's speech_bounds finds it
BG = "0x3070A0"  # a mid blue: neither white text, black outline nor yellow highlight
YELLOW = (0xFF, 0xD4, 0x00)


def narration(texts: list[str] = TEXTS, edge: bool = False) -> dict[str, Any]:
    """narration.json as narrate writes it: espeak-ng's estimated words (or edge-tts's bare words)."""
    scenes, words = [], []
    for k, (text, (a, b)) in enumerate(zip(texts, SPANS, strict=True), 1):
        scenes.append({"index": k, "start": a - 0.2 if k == 1 else SPANS[k - 2][1], "end": b + 0.1})
        for w in estimate_words(text, a, b):
            bare = re.sub(r"[^\w']", "", w["text"]) if edge else w["text"]
            words.append({**w, "text": bare, "scene": k})
    return {"audio": "narration.m4a", "duration": SPANS[-1][1] + 0.1, "scenes": scenes, "words": words,
            "engine": "edge-tts" if edge else "espeak-ng"}


def make_item(root: Path, name: str, texts: list[str] = TEXTS, edge: bool = False) -> Path:
    wd = root / name
    wd.mkdir(parents=True)
    plan = {"title": "Tides", "aspect": "9:16", "width": W, "height": H,
            "scenes": [{"index": k, "narration": t, "visual": "sea"} for k, t in enumerate(texts, 1)]}
    (wd / "plan.json").write_text(json.dumps(plan))
    (wd / "narration.json").write_text(json.dumps(narration(texts, edge)))
    return wd


def ctx_for(wd: Path, **options: Any) -> StageContext:
    return StageContext(batch_id="b1", batch_name="t", item_n=1, stage="subtitles", workdir=wd, options=options,
                        attempt=1, account=None, _progress=lambda f: None, _cancelled=lambda: False,
                        home=wd.parent / "home", pool_size=1)


def dialogues(wd: Path) -> list[tuple[float, float, str]]:
    out = []
    for line in (wd / "subtitles.ass").read_text().splitlines():
        if line.startswith("Dialogue:"):
            parts = line.split(",", 9)
            t = [int(h) * 3600 + int(m) * 60 + float(s) for h, m, s in (x.split(":") for x in parts[1:3])]
            out.append((t[0], t[1], parts[9]))
    return out


def style_fields(wd: Path) -> list[str]:
    line = next(x for x in (wd / "subtitles.ass").read_text().splitlines() if x.startswith("Style: Default,"))
    return line[len("Style: "):].split(",")


def plain(text: str) -> str:
    return re.sub(r"\{[^}]*\}", "", text)


# ---------------------------------------------------------------- styles


def test_ass_colours_are_aabbggrr() -> None:
    """#RRGGBB → &HAABBGGRR: alpha first, then blue, green, red."""
    assert captions.ass_colour("#FFD400") == "&H0000D4FF"
    assert captions.ass_colour("#123456", 0x40) == "&H40563412"
    with pytest.raises(ValueError):
        captions.ass_colour("yellow")


def test_presets_and_overrides() -> None:
    """Each preset sets its parts at the 1080 px short side; every caption_* option overrides its own part."""
    def st(**o: Any) -> captions.CaptionStyle:
        return captions.resolve(GenerateOptions.parse(o), 1080, 1920)

    classic, boxed, bold, karaoke = (st(caption_style=s) for s in ("classic", "boxed", "bold", "karaoke"))
    assert (classic.size, classic.box, classic.words, classic.upper) == (64, False, False, False)
    assert boxed.box and not boxed.words and boxed.shadow == 0
    assert bold.size > classic.size and bold.upper and bold.outline > classic.outline
    assert karaoke.words and not karaoke.box
    assert captions.resolve(GenerateOptions(), 540, 960).size == 32  # scaled with the short side
    assert st(caption_style="boxed", caption_box="0").box is False
    assert st(caption_box="1").box is True
    assert st(caption_style="karaoke", caption_words="no").words is False
    assert st(caption_words="yes").words is True
    assert st(caption_size="90").size == 90
    assert st(caption_size="90", caption_style="bold").outline == round(7 * 90 / 84)
    line = captions.style_line(st(caption_position="top", caption_color="#102030", caption_outline="#0000FF",
                                  caption_highlight="#FFD400", caption_box=True))
    f = line[len("Style: "):].split(",")
    assert f[3:7] == ["&H00302010", "&H0000D4FF", "&H40FF0000", captions.SHADOW]
    assert f[15] == "3" and f[18] == "8"  # BorderStyle 3 (box), Alignment 8 (top centre)
    assert captions.style_line(st(caption_position="middle")).split(",")[18] == "5"
    assert captions.style_line(st()).split(",")[15:19] == ["1", "4", "2", "2"]


def test_classic_keeps_the_old_document_and_srt_ignores_style(tmp_path: Path) -> None:
    """classic is today's look; the SRT stays the broadcast 42×2 cues whatever the style and line count."""
    wd = make_item(tmp_path, "a")
    subtitles.run({}, ctx_for(wd))
    srt = (wd / "subtitles.srt").read_text()
    f = style_fields(wd)
    assert f[1] == "DejaVu Sans" and int(f[2]) == round(64 * W / 1080) and f[15] == "1"
    for opts in ({"caption_style": "bold", "caption_lines": 1}, {"caption_style": "karaoke"}):
        res = subtitles.run({}, ctx_for(wd, **opts))
        assert not res.meta.get("subtitles_reused")  # a new style is a new ASS
        assert (wd / "subtitles.srt").read_text() == srt
    assert subtitles.run({}, ctx_for(wd, caption_style="karaoke")).meta.get("subtitles_reused")


def test_line_count_and_upper_case(tmp_path: Path) -> None:
    """caption_lines caps the lines on screen; bold shouts in upper case on screen only."""
    wd = make_item(tmp_path, "a")
    subtitles.run({}, ctx_for(wd, caption_style="bold", caption_lines=1))
    cues = dialogues(wd)
    assert cues and all("\\N" not in text for _, _, text in cues)
    assert " ".join(text for *_, text in cues) == " ".join(TEXTS).upper()
    assert "Tides rise" in (wd / "subtitles.srt").read_text()


def test_word_by_word_events(tmp_path: Path) -> None:
    """Karaoke: one event per word, abutting, each the whole cue with exactly the spoken word recoloured."""
    wd = make_item(tmp_path, "a")
    res = subtitles.run({}, ctx_for(wd, caption_style="karaoke", caption_highlight="#00FF80"))
    assert res.meta["caption_words"] is True and res.meta["word_timing"] == "estimated"
    events = dialogues(wd)
    words = narration()["words"]
    assert len(events) == len(words)
    lit = []
    for (a, b, text), nxt in zip(events, events[1:] + [None], strict=True):
        assert b > a
        tags = re.findall(r"\{\\1c(&H[0-9A-F]{6}&)\}([^{]+)\{\\r\}", text)
        assert len(tags) == 1 and tags[0][0] == "&H80FF00&"
        lit.append(tags[0][1])
        if nxt and plain(nxt[2]) == plain(text):
            assert nxt[0] == b  # same cue: the next word takes over on the same centisecond
    assert lit == [w["text"] for w in words]
    for (a, _, _), w in zip(events, words, strict=True):  # each word lights at its own start (cue start for the first)
        assert a <= w["start"] + 0.011


def test_edge_words_get_the_scripts_punctuation(tmp_path: Path) -> None:
    """edge-tts's bare words are matched back to the script: cues end at sentences and keep their punctuation."""
    texts = ["It costs 100 dollars, really. Then it stops.", "Done now."]
    wd = make_item(tmp_path, "a", texts, edge=True)
    nar = json.loads((wd / "narration.json").read_text())
    spoken = [w for w in nar["words"] if w["text"] != "100"]  # the voice said the number as two words
    i = next(k for k, w in enumerate(nar["words"]) if w["text"] == "100")
    half = (nar["words"][i]["start"] + nar["words"][i]["end"]) / 2
    spoken[i:i] = [{**nar["words"][i], "text": "one", "end": half}, {**nar["words"][i], "text": "hundred",
                                                                    "start": half}]
    nar["words"] = spoken
    nar["scenes"] = [dict(x, engine="edge-tts") for x in nar["scenes"]]
    (wd / "narration.json").write_text(json.dumps(nar))
    assert subtitles.run({}, ctx_for(wd)).meta["word_timing"] == "measured"
    srt = (wd / "subtitles.srt").read_text()
    assert "It costs one hundred dollars, really." in srt.replace("\n", " ")
    blocks = [b.splitlines()[2:] for b in srt.strip().split("\n\n")]
    assert [" ".join(b) for b in blocks] == ["It costs one hundred dollars, really.", "Then it stops.", "Done now."]


def test_long_word_cut_across_lines_is_lit_piece_by_piece(tmp_path: Path) -> None:
    """A word longer than a line is cut into pieces; each piece lights in turn, within the word's time."""
    url = "https://example.org/" + "tides" * 12
    wd = make_item(tmp_path, "a", ["See " + url + " for more.", "Bye now."])
    res = subtitles.run({}, ctx_for(wd, caption_style="karaoke"))
    assert res.meta["word_timing"] == "estimated"
    events = dialogues(wd)
    lit = [re.findall(r"\{\\1c&H[0-9A-F]{6}&\}([^{]+)\{\\r\}", t) for _, _, t in events]
    assert all(len(x) == 1 for x in lit)
    assert "".join(x[0] for x in lit).replace(" ", "") == ("See" + url + "for more.Bye now.").replace(" ", "")
    assert all(b > a for a, b, _ in events) and all(e[0] >= p[1] for p, e in zip(events, events[1:], strict=False))
    w = next(x for x in narration(["See " + url + " for more.", "Bye now."])["words"] if x["text"] == url)
    pieces = [a for (a, _, _), x in zip(events, lit, strict=True) if x[0] in url]
    assert len(pieces) >= 2 and w["start"] - 0.011 <= pieces[0] < pieces[-1] < w["end"]


def test_wordless_narration_still_lights_words(tmp_path: Path) -> None:
    """No word timings at all: each cue's span is shared out by characters, one lit word at a time."""
    wd = make_item(tmp_path, "a")
    nar = json.loads((wd / "narration.json").read_text())
    nar["words"] = []
    (wd / "narration.json").write_text(json.dumps(nar))
    subtitles.run({}, ctx_for(wd, caption_words=True))
    events = dialogues(wd)
    assert len(events) == len(" ".join(TEXTS).split())
    assert all(b > a for a, b, _ in events) and all(e[0] >= p[1] for p, e in zip(events, events[1:], strict=False))


def test_font_as_a_file_and_a_missing_font(tmp_path: Path) -> None:
    """A .ttf path is named by its family and copied for libass; a missing font falls back to DejaVu, flagged."""
    serif = font_path().parent / "DejaVuSerif.ttf"
    wd = make_item(tmp_path, "a")
    res = subtitles.run({}, ctx_for(wd, caption_font=str(serif)))
    assert style_fields(wd)[1] == "DejaVu Serif" and "caption_font_fallback" not in res.meta
    assert (wd / "fonts" / serif.name).stat().st_size == serif.stat().st_size
    assert (wd / "fonts" / "DejaVuSans-Bold.ttf").exists()  # the folder alone serves later styles too
    assert captions.fonts_dir(wd) == wd / "fonts"
    res = subtitles.run({}, ctx_for(wd, caption_font=str(tmp_path / "nope.ttf")))
    assert style_fields(wd)[1] == "DejaVu Sans" and "cannot be read" in res.meta["caption_font_fallback"]
    res = subtitles.run({}, ctx_for(wd, caption_font="No Such Family Zz"))
    assert style_fields(wd)[1] == "DejaVu Sans" and res.meta["caption_font_fallback"]


# ---------------------------------------------------------------- burnt in by libass, checked in pixels


def _libass_ffmpeg() -> str | None:
    """The project's ffmpeg when it has the subtitles filter, else imageio-ffmpeg's static one."""
    cands = [ffmpeg.find_ffmpeg()]
    try:
        import imageio_ffmpeg

        cands.append(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    for exe in filter(None, cands):
        out = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=30).stdout
        if re.search(r"^\s*\S+\s+subtitles\s", out, re.M):
            return exe
    return None


FFMPEG = _libass_ffmpeg()
BURN = {"classic": {}, "karaoke": {"caption_style": "karaoke"}, "boxed": {"caption_style": "boxed"},
        "top": {"caption_position": "top"}}


@pytest.fixture(scope="module")
def burnt(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, float], Image.Image]:
    """Each style burnt into a 6 s H.264 video over a flat blue; a function grabbing an RGB frame at t."""
    if FFMPEG is None:
        pytest.skip("no ffmpeg with libass's subtitles filter")
    root = tmp_path_factory.mktemp("burn")
    for name, opts in BURN.items():
        wd = make_item(root, name)
        subtitles.run({}, ctx_for(wd, **opts))
        subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "lavfi",
                        "-i", f"color=c={BG}:s={W}x{H}:r=30:d=6",
                        "-vf", f"subtitles=filename=subtitles.ass:fontsdir={captions.fonts_dir(wd)}",
                        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p", "video.mp4"],
                       cwd=wd, check=True, timeout=60)

    def grab(name: str, t: float) -> Image.Image:
        out = root / name / f"t{t:.2f}.png"
        subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-ss", f"{t:.3f}", "-i", "video.mp4",
                        "-frames:v", "1", out.name], cwd=root / name, check=True, timeout=30)
        return Image.open(out).convert("RGB")

    return grab


def pixels(img: Image.Image, test: Callable[[tuple[int, int, int]], bool]) -> list[tuple[int, int]]:
    px = img.load()
    return [(x, y) for y in range(img.height) for x in range(img.width) if test(px[x, y])]


def is_yellow(p: tuple[int, int, int]) -> bool:
    return p[0] > 200 and 160 < p[1] < 245 and p[2] < 90


def is_white(p: tuple[int, int, int]) -> bool:
    return min(p) > 210


def is_dark(p: tuple[int, int, int]) -> bool:
    return max(p) < 70


def mid_word(k: int) -> float:
    w = narration()["words"][k]
    return (w["start"] + w["end"]) / 2


def test_burnt_highlight_follows_the_spoken_word(burnt: Callable[[str, float], Image.Image]) -> None:
    """The highlight colour is on screen exactly while words are spoken, and it moves with the words."""
    first, fourth = pixels(burnt("karaoke", mid_word(0)), is_yellow), pixels(burnt("karaoke", mid_word(3)), is_yellow)
    assert len(first) > 30 and len(fourth) > 15
    cx = [sum(x for x, _ in p) / len(p) for p in (first, fourth)]
    cy = [sum(y for _, y in p) / len(p) for p in (first, fourth)]
    assert (cx[0], cy[0]) != pytest.approx((cx[1], cy[1]), abs=8)  # "Tides" and "fall" sit apart
    assert len(set(first) & set(fourth)) < 3  # one word at a time: "Tides" is no longer lit (\\k would keep it)
    assert all(y > H * 0.6 for _, y in first)
    assert len(pixels(burnt("classic", mid_word(0)), is_yellow)) < 3  # classic lights nothing
    assert len(pixels(burnt("karaoke", 5.9), is_yellow)) < 3  # after the last cue: nothing on screen


def test_burnt_box_and_position(burnt: Callable[[str, float], Image.Image]) -> None:
    """boxed fills a dark box behind the text; top puts the text in the top rows instead of the bottom ones."""
    t = mid_word(1)
    dark = {name: pixels(burnt(name, t), is_dark) for name in ("classic", "boxed")}

    def fill(ps: list[tuple[int, int]]) -> float:  # share of the dark pixels' bounding box that is dark
        xs, ys = [x for x, _ in ps], [y for _, y in ps]
        return len(ps) / ((max(xs) - min(xs) + 1) * (max(ys) - min(ys) + 1))

    assert len(dark["boxed"]) > 4 * len(dark["classic"]) and fill(dark["boxed"]) > 0.6 > 0.3 > fill(dark["classic"])
    rows = {name: [y for _, y in pixels(burnt(name, t), is_white)] for name in ("classic", "top")}
    assert rows["classic"] and rows["top"]
    assert max(rows["top"]) < H * 0.3 and min(rows["classic"]) > H * 0.6


def test_burnt_font_file_is_used(tmp_path: Path) -> None:
    """A caption_font file unknown to fontconfig (STIX) reaches libass through the item's relative fonts/ folder."""
    if FFMPEG is None:
        pytest.skip("no ffmpeg with libass's subtitles filter")
    stix = str(font_path().parent / "STIXGeneral.ttf")
    shots = {}
    for name, font, fonts in (("sans", None, str(captions.fonts_dir(tmp_path))), ("stix", stix, captions.FONTS_DIR),
                              ("stix-no-folder", stix, None)):
        wd = make_item(tmp_path, name)
        subtitles.run({}, ctx_for(wd, caption_font=font))
        vf = "trim=start=1.0,subtitles=filename=subtitles.ass" + (f":fontsdir={fonts}" if fonts else "")
        subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={BG}:s={W}x{H}:d=2",
                        "-vf", vf, "-frames:v", "1", "-update", "1", "f.png"], cwd=wd, check=True, timeout=30)
        shots[name] = set(pixels(Image.open(wd / "f.png").convert("RGB"), lambda p: min(p) > 150))
    assert style_fields(tmp_path / "stix")[1] == "STIXGeneral"
    assert shots["sans"] and shots["stix"] and len(shots["sans"] ^ shots["stix"]) > 0.3 * len(shots["sans"])
    if "stix" not in (captions._fc_match("STIXGeneral", False) or ("",))[0].lower():  # fontconfig lacks it
        # Without the folder libass draws a fallback face: the folder is what brought STIX.
        assert len(shots["stix"] ^ shots["stix-no-folder"]) > 0.3 * len(shots["stix"])


def test_render_stage_burns_word_by_word(tmp_path: Path) -> None:
    """Through the real frames and render stages (segments encoded apart, cues on absolute times)."""
    from pipeline.recipes.generate.stages import frames, render

    wd = make_item(tmp_path, "item")
    subprocess.run([ffmpeg.ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=5.7", "-c:a", "aac", "-b:a", "64k", str(wd / "narration.m4a")],
                   check=True, timeout=60)
    nar = json.loads((wd / "narration.json").read_text())
    nar["duration"] = 5.7
    (wd / "narration.json").write_text(json.dumps(nar))
    frames.run({}, ctx_for(wd, burn_subtitles=True))
    subtitles.run({}, ctx_for(wd, caption_style="karaoke"))
    render.run({}, ctx_for(wd, burn_subtitles=True))
    counts = []
    for k in (0, 8):  # "Tides" in scene 1, "the" of "the oceans" in scene 2 (another segment)
        out = wd / f"k{k}.png"
        subprocess.run([ffmpeg.ffmpeg_exe(), "-v", "error", "-y", "-ss", f"{mid_word(k):.3f}", "-i",
                        str(wd / "video.mp4"), "-frames:v", "1", str(out)], check=True, timeout=30)
        counts.append(len(pixels(Image.open(out).convert("RGB"), is_yellow)))
    assert min(counts) > 15, counts
