"""frames: one still per scene (``frames/scene-NN.png``) drawn with Pillow from ``plan.json``.

Each still is a theme background (a vertical gradient, or a picture from the plan's
``background_dir`` cover-cropped to the frame and dimmed so text stays legible) with
the scene's text centred in the upper two thirds; the bottom third is left to the
subtitles. The font size is the largest that fits the wrapped text in its box.

Idempotent per scene: a PNG of the right size is kept, so a killed batch redraws only
the missing scenes. Background pictures are resized once per (content, size) and
cached under ``<home>/cache/backgrounds`` by content hash, so every item and every
rerun that uses the same picture skips the decode and the resize.

Options: ``frame_text`` = ``narration`` or ``visual``: which scene field is drawn (default ``visual`` when
subtitles are burnt in, since the narration is on screen already, else ``narration``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from pipeline import errors
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate.options import options_of
from pipeline.recipes.generate.video import FRAMES_DIR, PLAN, font_path, plan_size, read_json, scene_png

log = logging.getLogger("tubemill.frames")

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
TEXT_TOP, TEXT_BOTTOM = 0.10, 0.68  # text box, as fractions of the height: subtitles own the bottom third
MARGIN_X = 0.08


@dataclass(frozen=True)
class Theme:
    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    text: tuple[int, int, int]
    stroke: tuple[int, int, int]
    dim: float  # how much of the theme colour covers a background picture


THEMES = {
    "dark": Theme(top=(14, 17, 38), bottom=(62, 28, 84), text=(255, 255, 255), stroke=(0, 0, 0), dim=0.55),
    "light": Theme(top=(250, 247, 240), bottom=(206, 222, 240), text=(20, 24, 40), stroke=(255, 255, 255), dim=0.6),
}


def theme_of(plan: dict[str, Any]) -> Theme:
    return THEMES.get(str(plan.get("theme") or "dark"), THEMES["dark"])


# ---------------------------------------------------------------- backgrounds


@lru_cache(maxsize=8)
def _gradient(size: tuple[int, int], theme: Theme) -> Image.Image:
    mask = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
    return Image.composite(Image.new("RGB", size, theme.bottom), Image.new("RGB", size, theme.top), mask)


def list_backgrounds(folder: str | None) -> list[Path]:
    """Pictures in ``background_dir`` in name order; a missing folder means none (the gradient is used)."""
    if not folder:
        return []
    p = Path(folder).expanduser()
    if not p.is_dir():
        log.warning("background_dir %s is not a folder; using the theme gradient", p)
        return []
    return sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)


def cached_background(src: Path, size: tuple[int, int], cache_dir: Path) -> Image.Image:
    """``src`` cover-cropped to ``size``; the result is cached by content hash + size (decode and resize once)."""
    data = src.read_bytes()
    key = hashlib.sha256(data).hexdigest()[:24]
    cached = cache_dir / f"{key}-{size[0]}x{size[1]}.jpg"
    if cached.exists():
        try:
            with Image.open(cached) as im:
                if im.size == size:
                    return im.convert("RGB")
        except (OSError, UnidentifiedImageError):
            pass  # a damaged cache entry is rebuilt below
    try:
        with Image.open(src) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            fitted = ImageOps.fit(im, size, Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise errors.InvalidInput(f"background {src.name} is not a readable picture: {exc}") from exc
    cache_dir.mkdir(parents=True, exist_ok=True)
    part = cached.with_name(cached.name + f".{os.getpid()}.part")
    fitted.save(part, format="JPEG", quality=92)
    os.replace(part, cached)
    return fitted


def background(size: tuple[int, int], theme: Theme, picture: Path | None, cache_dir: Path) -> Image.Image:
    if picture is None:
        return _gradient(size, theme).copy()
    img = cached_background(picture, size, cache_dir)
    return Image.blend(img, _gradient(size, theme), theme.dim)


# ---------------------------------------------------------------- text


def _font(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    # One FreeType face per thread: two frames stages may draw at once in the cpu pool.
    return _font_for_thread(size, bold, threading.get_ident())


@lru_cache(maxsize=128)
def _font_for_thread(size: int, bold: bool, _thread: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(bold)), size)


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap by rendered width; a word wider than a line is cut by characters."""
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        cur = ""
        for word in para.split():
            cand = f"{cur} {word}" if cur else word
            if font.getlength(cand) <= width:
                cur = cand
                continue
            if cur:
                lines.append(cur)
            cur = ""
            while font.getlength(word) > width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and font.getlength(word[:cut]) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            cur = word
        if cur:
            lines.append(cur)
    return lines


def fit_text(text: str, box: tuple[int, int], lo: int, hi: int) -> tuple[ImageFont.FreeTypeFont, list[str], int]:
    """The largest font size in [lo, hi] whose wrapped lines fit ``box``; (font, lines, line height)."""
    bw, bh = box

    def layout(size: int) -> tuple[ImageFont.FreeTypeFont, list[str], int]:
        font = _font(size)
        return font, wrap(text, font, bw), int(size * 1.25)

    best = None
    a, b = lo, hi
    while a <= b:
        mid = (a + b) // 2
        font, lines, lh = layout(mid)
        if len(lines) * lh <= bh:
            best = (font, lines, lh)
            a = mid + 1
        else:
            b = mid - 1
    if best is None:  # too long even at the smallest size: keep what fits and mark the cut
        font, lines, lh = layout(lo)
        keep = max(1, bh // lh)
        if len(lines) > keep:
            lines = lines[:keep]
            lines[-1] = lines[-1].rstrip(" .,;:") + "…"
        best = (font, lines, lh)
    return best


def scene_text(scene: dict[str, Any], field: str = "narration") -> str:
    other = "visual" if field == "narration" else "narration"
    return " ".join(str(scene.get(field) or scene.get(other) or "").split())


def draw_scene(text: str, size: tuple[int, int], theme: Theme, picture: Path | None, cache_dir: Path) -> Image.Image:
    """One finished still: background plus centred, outlined text."""
    w, h = size
    img = background(size, theme, picture, cache_dir)
    if not text:
        return img
    short = min(w, h)
    margin = int(w * MARGIN_X)
    top, bottom = int(h * TEXT_TOP), int(h * TEXT_BOTTOM)
    font, lines, lh = fit_text(text, (w - 2 * margin, bottom - top), max(10, int(short * 0.03)),
                               max(12, int(short * 0.085)))
    stroke = max(1, font.size // 16)
    d = ImageDraw.Draw(img)
    y = top + (bottom - top - len(lines) * lh) // 2
    for line in lines:
        d.text((w // 2, y), line, font=font, fill=theme.text, anchor="ma", stroke_width=stroke,
               stroke_fill=theme.stroke)
        y += lh
    return img


# ---------------------------------------------------------------- stage


def png_ok(path: Path, size: tuple[int, int]) -> bool:
    """An existing still of the right size (written atomically, so present means complete)."""
    try:
        with Image.open(path) as im:
            return im.size == size and im.format == "PNG"
    except (OSError, UnidentifiedImageError):
        return False


def save_png(img: Image.Image, path: Path) -> None:
    part = path.with_name(path.name + ".part")
    img.save(part, format="PNG", compress_level=1)  # level 1: 2 MP saves in ~0.1 s; ffmpeg reads it once
    os.replace(part, path)


def plan_scenes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    scenes = [s for s in plan.get("scenes") or [] if isinstance(s, dict)]
    if not scenes:
        raise errors.InvalidInput("plan.json has no scenes")
    for k, s in enumerate(scenes, 1):
        s.setdefault("index", k)
    return scenes


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    plan = read_json(ctx.path(PLAN), "plan")
    size = plan_size(plan)
    theme = theme_of(plan)
    scenes = plan_scenes(plan)
    field = str(options_of(ctx).frame_text)
    pictures = list_backgrounds(plan.get("background_dir"))
    cache_dir = Path(ctx.home) / "cache" / "backgrounds"
    ctx.path(FRAMES_DIR).mkdir(parents=True, exist_ok=True)
    made = reused = 0
    for k, scene in enumerate(scenes):
        if ctx.cancelled():
            raise errors.Cancelled("frames cancelled")
        out = ctx.path(scene_png(scene["index"]))
        if png_ok(out, size):
            reused += 1
        else:
            picture = pictures[(int(scene["index"]) - 1) % len(pictures)] if pictures else None
            try:
                img = draw_scene(scene_text(scene, field), size, theme, picture, cache_dir)
                save_png(img, out)
            except OSError as exc:
                raise errors.PermanentError(f"cannot write {out.name}: {exc}") from exc
            made += 1
        ctx.progress((k + 1) / len(scenes))
    return StageResult(artifacts={"frames": str(ctx.path(FRAMES_DIR))},
                       meta={"frames": len(scenes), "frames_made": made, "frames_reused": reused,
                             "backgrounds": len(pictures)})


register(Stage("frames", run, resource="cpu", doc="plan.json → frames/scene-NN.png (one still per scene)"))
