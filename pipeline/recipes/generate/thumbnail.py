"""The custom thumbnail an uploaded video gets: a title card drawn with Pillow, or a frame of the rendered video.

YouTube takes JPEG/PNG up to 2 MB and shows thumbnails at 16:9; 1280x720 is the size it asks
for. Both kinds are written as ``thumbnail.jpg`` in the item folder (the batch ZIP carries it
too), at 1280x720 whatever the video's aspect: a vertical frame sits in the middle over a
blurred, darkened copy of itself rather than being cropped to a strip. The JPEG quality steps
down until the file fits under :data:`MAX_BYTES`.

A title card's background is the video's first scene still when the frames stage left one
(so the card looks like the video), else a dark gradient.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from pipeline import errors
from pipeline.common.ffmpeg import probe, run_ffmpeg
from pipeline.recipes.generate.video import font_path

SIZE = (1280, 720)
MAX_BYTES = 2 * 1024 * 1024  # thumbnails.set refuses larger files
FILE = "thumbnail.jpg"
KINDS = ("title", "frame")


def save_jpeg(img: Image.Image, out: Path, max_bytes: int = MAX_BYTES) -> int:
    """Write ``img`` as a baseline JPEG under ``max_bytes`` (quality 92 down to 40); returns the size in bytes."""
    rgb = img.convert("RGB")
    for quality in (92, 85, 75, 65, 50, 40):
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=quality, optimize=True)
        if buf.tell() <= max_bytes:
            break
    else:
        raise errors.PermanentError(f"the thumbnail stays over {max_bytes} bytes even at quality 40")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(out)
    return buf.tell()


def backdrop(picture: Image.Image, size: tuple[int, int] = SIZE, darken: float = 0.45) -> Image.Image:
    """``picture`` fitted into ``size`` over a blurred, darkened cover-crop of itself (no black bars, no crop)."""
    back = ImageOps.fit(picture.convert("RGB"), size, Image.Resampling.LANCZOS)
    back = back.filter(ImageFilter.GaussianBlur(radius=max(8, size[0] // 60)))
    back = Image.eval(back, lambda v: int(v * darken))
    front = ImageOps.contain(picture.convert("RGB"), size, Image.Resampling.LANCZOS)
    back.paste(front, ((size[0] - front.width) // 2, (size[1] - front.height) // 2))
    return back


def _gradient(size: tuple[int, int]) -> Image.Image:
    top, bottom = (24, 28, 48), (70, 32, 90)
    column = Image.new("RGB", (1, size[1]))
    for y in range(size[1]):
        t = y / max(1, size[1] - 1)
        column.putpixel((0, y), tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return column.resize(size)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _fit(text: str, box: tuple[int, int], max_lines: int = 3) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest bold font (from a third of the box's height down) whose wrapping fits ``box`` in ``max_lines``."""
    path = str(font_path(bold=True))
    size = box[1] // 3
    while True:
        font = ImageFont.truetype(path, size)
        lines = _wrap(text, font, box[0])
        height = len(lines) * size * 1.2
        widest = max((font.getlength(line) for line in lines), default=0)
        if (len(lines) <= max_lines and height <= box[1] and widest <= box[0]) or size <= 24:
            if len(lines) > max_lines:  # tiny and still too long: cut with an ellipsis
                lines = lines[:max_lines]
                lines[-1] = lines[-1].rstrip(".,;:") + "…"
            return font, lines
        size = int(size * 0.9)


def title_card(title: str, out: Path, background: Path | None = None, size: tuple[int, int] = SIZE) -> int:
    """Draw ``title`` large and outlined over ``background`` (a still of the video) or a gradient; JPEG bytes."""
    text = " ".join(str(title or "").split())
    if not text:
        raise errors.InvalidInput("no title to draw on the thumbnail")
    img: Image.Image | None = None
    if background is not None and background.is_file():
        try:
            with Image.open(background) as pic:
                img = backdrop(pic, size, darken=0.55)
        except (OSError, ValueError):
            img = None  # an unreadable still: the gradient instead
    img = img or _gradient(size)
    margin = size[0] // 16
    font, lines = _fit(text, (size[0] - 2 * margin, size[1] - 2 * margin))
    draw = ImageDraw.Draw(img)
    line_h = int(font.size * 1.2)
    y = (size[1] - line_h * len(lines)) // 2
    stroke = max(2, font.size // 14)
    for line in lines:
        x = (size[0] - font.getlength(line)) / 2
        draw.text((x, y), line, font=font, fill=(255, 255, 255), stroke_width=stroke, stroke_fill=(0, 0, 0))
        y += line_h
    bar = max(6, size[1] // 60)
    draw.rectangle((0, size[1] - bar, size[0], size[1]), fill=(255, 212, 0))
    return save_jpeg(img, out)


def frame_at(video: Path, at: float | None) -> float:
    """The time of the frame to take: ``at`` kept inside the video, a third of the way in when None."""
    duration = probe(video).duration
    if duration <= 0:
        raise errors.PermanentError(f"{video.name} has no duration")
    t = duration / 3 if at is None else float(at)
    return min(max(0.0, t), max(0.0, duration - 0.1))


def video_frame(video: Path, out: Path, at: float | None = None, size: tuple[int, int] = SIZE) -> int:
    """The rendered video's frame at ``at`` seconds (:func:`frame_at`) on a 16:9 backdrop; JPEG bytes."""
    if not video.is_file():
        raise errors.RetryableError(f"no {video.name} to take a thumbnail from")
    t = frame_at(video, at)
    with tempfile.TemporaryDirectory(prefix="tubemill-thumb-") as tmp:
        png = Path(tmp) / "frame.png"
        run_ffmpeg(["-ss", f"{t:.3f}", "-i", str(video), "-frames:v", "1", "-an", "-y", str(png)],
                   timeout=60, what="thumbnail frame")
        if not png.is_file():
            raise errors.PermanentError(f"ffmpeg wrote no frame at {t:.2f}s of {video.name}")
        with Image.open(png) as pic:
            return save_jpeg(backdrop(pic, size), out)
