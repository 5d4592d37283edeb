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

With stock visuals (``visuals.json``, written by the visuals stage when ``media_provider`` is set),
an image scene's picture is its ``media/scene-NNN.jpg`` (already fitted to the frame), dimmed less
than a local background since the picture is the point; a video scene's still is drawn over the
clip's first frame, and ``frames/scene-NN.text.png`` (RGBA, the text alone on transparency) is
written beside it for render to lay over the moving clip; a generated scene gets the gradient.
Without visuals.json nothing changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from pipeline import errors
from pipeline.common.ffmpeg import run_ffmpeg
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate.options import options_of
from pipeline.recipes.generate.video import FRAMES_DIR, PLAN, font_path, plan_size, read_json, scene_png

log = logging.getLogger("tubemill.frames")

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VISUALS = "visuals.json"  # written by the visuals stage (stock media per scene); absent when media_provider=none
STOCK_DIM = 0.6  # a stock picture is dimmed this fraction of the theme's dim: it is the point of the frame
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


def background(size: tuple[int, int], theme: Theme, picture: Path | None, cache_dir: Path,
               dim: float | None = None) -> Image.Image:
    if picture is None:
        return _gradient(size, theme).copy()
    img = _fitted(picture, size) or cached_background(picture, size, cache_dir)
    return Image.blend(img, _gradient(size, theme), theme.dim if dim is None else dim)


def _fitted(picture: Path, size: tuple[int, int]) -> Image.Image | None:
    """A picture already of the frame size (the visuals stage fits stock pictures once): used as is."""
    try:
        with Image.open(picture) as im:
            return im.convert("RGB") if im.size == size else None
    except (OSError, UnidentifiedImageError):
        return None


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


def draw_scene(text: str, size: tuple[int, int], theme: Theme, picture: Path | None, cache_dir: Path,
               dim: float | None = None) -> Image.Image:
    """One finished still: background plus centred, outlined text."""
    return draw_text(background(size, theme, picture, cache_dir, dim), text, theme)


def text_layer(text: str, size: tuple[int, int], theme: Theme) -> Image.Image:
    """The scene's text alone on transparency (RGBA): render lays it over a moving clip."""
    return draw_text(Image.new("RGBA", size, (0, 0, 0, 0)), text, theme)


def draw_text(img: Image.Image, text: str, theme: Theme) -> Image.Image:
    """``img`` with the text centred and outlined in the upper two thirds (RGB or RGBA)."""
    w, h = img.size
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
        d.text((w // 2, y), line, font=font, fill=(*theme.text, 255) if img.mode == "RGBA" else theme.text,
               anchor="ma", stroke_width=stroke,
               stroke_fill=(*theme.stroke, 255) if img.mode == "RGBA" else theme.stroke)
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


def load_visuals(ctx: StageContext) -> dict[int, dict[str, Any]]:
    """visuals.json's scenes by index; {} when there is none (media_provider=none) or it is unreadable."""
    try:
        doc = json.loads(ctx.path(VISUALS).read_text(encoding="utf-8"))
        return {int(s["index"]): s for s in doc.get("scenes") or [] if isinstance(s, dict) and "index" in s}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("visuals.json is unreadable (%s); drawing without stock media", exc)
        return {}


def first_frame(clip: Path, out: Path, ctx: StageContext) -> Path | None:
    """The clip's first frame as a PNG (the still under a video scene's text); None if ffmpeg cannot read it."""
    try:
        run_ffmpeg(["-y", "-i", str(clip), "-frames:v", "1", "-f", "image2", "-c:v", "png", str(out)],
                   cancelled=ctx.cancelled, timeout=60, what="first frame")
    except errors.Cancelled:
        raise
    except errors.TubemillError as exc:
        log.warning("cannot read the first frame of %s: %s", clip.name, exc)
        return None
    return out if out.exists() else None


def text_png(index: int) -> str:
    """``frames/scene-NN.text.png``: a video scene's text layer."""
    return scene_png(index)[: -len(".png")] + ".text.png"


def _draw_one(scene: dict[str, Any], stock: dict[str, Any] | None, pictures: list[Path], ctx: StageContext,
              size: tuple[int, int], theme: Theme, field: str, cache_dir: Path) -> None:
    index = int(scene["index"])
    text = scene_text(scene, field)
    dim = None
    picture = pictures[(index - 1) % len(pictures)] if pictures else None
    if stock is not None:  # the visuals stage already chose: its picture, its clip, or the gradient
        kind, rel = stock.get("kind"), stock.get("path")
        picture = ctx.path(rel) if rel and kind in ("image", "video") else None
        if picture is not None and not picture.exists():
            picture = None
        if picture is not None and kind == "video":
            picture = first_frame(picture, ctx.tmpdir / f"first-{index:03d}.png", ctx)
            save_png(text_layer(text, size, theme), ctx.path(text_png(index)))
        if picture is not None and stock.get("provider") != "local":
            dim = theme.dim * STOCK_DIM
    save_png(draw_scene(text, size, theme, picture, cache_dir, dim), ctx.path(scene_png(index)))


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    plan = read_json(ctx.path(PLAN), "plan")
    size = plan_size(plan)
    theme = theme_of(plan)
    scenes = plan_scenes(plan)
    field = str(options_of(ctx).frame_text)
    pictures = list_backgrounds(plan.get("background_dir"))
    stock = load_visuals(ctx)
    cache_dir = Path(ctx.home) / "cache" / "backgrounds"
    ctx.path(FRAMES_DIR).mkdir(parents=True, exist_ok=True)
    made = reused = 0
    for k, scene in enumerate(scenes):
        if ctx.cancelled():
            raise errors.Cancelled("frames cancelled")
        entry = stock.get(int(scene["index"])) if stock else None
        done = png_ok(ctx.path(scene_png(scene["index"])), size)
        if entry is not None and entry.get("kind") == "video":
            done = done and png_ok(ctx.path(text_png(scene["index"])), size)
        if done:
            reused += 1
        else:
            try:
                _draw_one(scene, entry, pictures, ctx, size, theme, field, cache_dir)
            except OSError as exc:
                raise errors.PermanentError(f"cannot write the still of scene {scene['index']}: {exc}") from exc
            made += 1
        ctx.progress((k + 1) / len(scenes))
    meta: dict[str, Any] = {"frames": len(scenes), "frames_made": made, "frames_reused": reused,
                            "backgrounds": len(pictures)}
    if stock:
        meta["frames_stock"] = sum(1 for s in stock.values() if s.get("kind") in ("image", "video"))
    return StageResult(artifacts={"frames": str(ctx.path(FRAMES_DIR))}, meta=meta)


register(Stage("frames", run, resource="cpu", doc="plan.json → frames/scene-NN.png (one still per scene)"))
