"""The combined PDF of a transcribe batch: per item its summary (TL;DR, key points, chapters, tags)
and transcript, with fonts that cover every script the transcripts hold."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.common.formats import fmt_timestamp
from pipeline.engine.manifest import _num
from state.storage import atomic_write_bytes

log = logging.getLogger("pipeline")

FONT = "DejaVu"
_REPLACEMENT = "\u25a1"  # WHITE SQUARE: shown where no font has the glyph, instead of failing
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _font_dir() -> Path | None:
    """matplotlib's bundled DejaVu fonts, found without importing matplotlib (16 MB resident for a path)."""
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    return d if (d / "DejaVuSans.ttf").is_file() and (d / "DejaVuSans-Bold.ttf").is_file() else None


@lru_cache(maxsize=8)
def _coverage(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        return frozenset(font.getBestCmap() or {})


class _Glyphs:
    """Keeps text inside what the embedded fonts can draw.

    fpdf2 would log a warning and draw nothing for a glyph no font has (CJK in
    DejaVu, most emoji); we substitute a visible box instead so the reader sees that
    something was there. Fallback fonts (``TUBEMILL_PDF_FALLBACK_FONTS``: TTF/OTF paths
    separated by ``os.pathsep``) widen the coverage, e.g. a Noto CJK font.
    """

    def __init__(self, covered: frozenset[int], unicode_ok: bool) -> None:
        self.covered = covered
        self.unicode_ok = unicode_ok
        self._cache: dict[str, str] = {}

    def __call__(self, text: Any) -> str:
        s = _CTRL.sub(" ", str(text or "")).replace("\r", "").replace("\t", "    ")
        if s.isascii():
            return s
        if not self.unicode_ok:
            return s.encode("latin-1", "replace").decode("latin-1")
        out = []
        for ch in s:
            if ch == "\n" or ord(ch) in self.covered:
                out.append(ch)
            else:
                out.append(self._cache.setdefault(ch, "" if ch in "\u200b\u200c\u200d\ufeff" else _REPLACEMENT))
        return "".join(out)


def _fallback_font_paths() -> list[Path]:
    raw = os.environ.get("TUBEMILL_PDF_FALLBACK_FONTS", "")
    return [Path(p) for p in raw.split(os.pathsep) if p and Path(p).is_file()]


def _load_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("export: cannot read %s", path)
        return None
    return doc if isinstance(doc, dict) else None


def _artifact(item: dict[str, Any], name: str) -> Path | None:
    p = (item.get("artifacts") or {}).get(name)
    if not p:
        return None
    p = Path(p)
    if not p.is_absolute() and item.get("workdir"):
        p = Path(item["workdir"]) / p
    return p if p.is_file() else None


def _item_summary(item: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(summary dict from ``summary.json`` beside the Markdown or in the workdir, else the Markdown text)."""
    md = _artifact(item, "summary")
    for cand in ([md.with_name("summary.json")] if md else []) + (
        [Path(item["workdir"]) / "summary.json"] if item.get("workdir") else []
    ):
        doc = _load_json(cand)
        if doc is not None:
            return doc, None
    if md is not None:
        try:
            return None, md.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None, None
    return None, None


class _PdfWriter:
    """One combined PDF: title page, table of contents, one outline section per done item."""

    LINE_H = 5.0
    TOC_LINE_H = 6.0
    TOC_HEAD_H = 12.0
    MARGIN = 15.0

    def __init__(self, fallback_fonts: Sequence[Path]) -> None:
        from fpdf import FPDF

        pdf = FPDF(format="A4")
        pdf.set_auto_page_break(True, margin=self.MARGIN)
        pdf.set_margins(self.MARGIN, self.MARGIN, self.MARGIN)
        pdf.set_compression(True)
        fonts = _font_dir()
        self._glyphs: dict[str, _Glyphs] = {}
        if fonts is not None:
            extra: set[int] = set()
            names = []
            for i, path in enumerate(fallback_fonts):
                name = f"fallback{i}"
                pdf.add_font(name, "", str(path))
                extra |= _coverage(str(path))
                names.append(name)
            if names:
                pdf.set_fallback_fonts(names, exact_match=False)
            for style, file in (("", "DejaVuSans.ttf"), ("B", "DejaVuSans-Bold.ttf")):
                pdf.add_font(FONT, style, str(fonts / file))
                self._glyphs[style] = _Glyphs(_coverage(str(fonts / file)) | extra, True)
            self.family = FONT
        else:  # no matplotlib: core font, Latin-1 only
            self.family = "Helvetica"
            self._glyphs = dict.fromkeys(("", "B"), _Glyphs(frozenset(), False))
        self.pdf = pdf
        self._fresh_page = False
        self._widths: dict[str, dict[str, float]] = {}

    def _p(self, text: str, size: float = 10, style: str = "", h: float | None = None) -> None:
        """A paragraph, wrapped by us and drawn line by line with ``cell``.

        fpdf2's ``multi_cell`` re-measures the whole line for every character it adds
        (0.3 s for a 10-minute transcript, minutes for a 500-video batch); measuring each
        distinct character once and breaking on words ourselves is about 10x faster. Words
        wider than the page (URLs, unspaced CJK) are broken between characters, so nothing
        can trigger fpdf2's "Not enough horizontal space" error.
        """
        from fpdf.enums import XPos, YPos

        pdf = self.pdf
        pdf.set_font(self.family, style, size)
        h = h or self.LINE_H
        pdf.set_x(pdf.l_margin)
        avail = pdf.epw - 2 * pdf.c_margin - 0.5
        for line in self._wrap(self.text(text, style), avail, f"{style}{size}"):
            if line:
                pdf.cell(pdf.epw, h, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            else:
                pdf.ln(h)

    def text(self, text: Any, style: str = "") -> str:
        """``text`` with every glyph the font of ``style`` (bold has a slightly different set) cannot draw boxed."""
        return self._glyphs[style](text)

    def _wrap(self, text: str, avail: float, key: str) -> Iterable[str]:
        widths = self._widths.setdefault(key, {})
        measure = self.pdf.get_string_width

        def width(s: str) -> float:
            total = 0.0
            for ch in s:
                w = widths.get(ch)
                if w is None:
                    w = widths[ch] = measure(ch)
                total += w
            return total

        space = width(" ")
        for para in text.split("\n"):
            line, lw = "", 0.0
            for word in para.split(" "):
                ww = width(word)
                if line and lw + space + ww <= avail:
                    line, lw = f"{line} {word}", lw + space + ww
                    continue
                if line:
                    yield line
                if ww <= avail:
                    line, lw = word, ww
                    continue
                line, lw = "", 0.0
                for ch in word:
                    cw = widths[ch]
                    if line and lw + cw > avail:
                        yield line
                        line, lw = "", 0.0
                    line, lw = line + ch, lw + cw
            yield line

    def title_page(self, batch: dict[str, Any], done: int) -> None:
        pdf = self.pdf
        pdf.add_page()
        pdf.set_y(60)
        self._p(str(batch.get("name") or batch.get("id") or "Batch"), 24, "B", 11)
        pdf.ln(4)
        created = _num(batch.get("created_at"))
        counts = batch.get("counts") or {}
        lines = [
            f"Recipe: {' → '.join(batch.get('recipe') or []) or '—'}",
            f"Created: {time.strftime('%Y-%m-%d %H:%M', time.localtime(created))}" if created else "",
            f"Items: {batch.get('total', '')} — " + ", ".join(f"{k} {v}" for k, v in counts.items() if v),
            f"In this document: {done} transcript(s)",
            f"Generated by Tubemill on {time.strftime('%Y-%m-%d %H:%M')}",
        ]
        for line in lines:
            if line:
                self._p(line, 11, h=6)

    def _toc_capacity(self) -> tuple[int, int]:
        """Entries on the first ToC page (under the heading) and on each later one."""
        pdf = self.pdf
        bottom = pdf.h - pdf.b_margin
        first = int((bottom - pdf.t_margin - self.TOC_HEAD_H) // self.TOC_LINE_H)
        rest = int((bottom - pdf.t_margin) // self.TOC_LINE_H)
        return max(1, first), max(1, rest)

    def toc(self, n_entries: int) -> None:
        """Reserve exactly the pages the ToC needs: one line per entry, so the count is known now.

        fpdf2's ``allow_extra_pages`` would insert pages at the end and shift every page
        number the ToC has already printed, so we paginate by hand instead.
        """
        first, rest = self._toc_capacity()
        pages = 1 if n_entries <= first else 1 + math.ceil((n_entries - first) / rest)
        self.pdf.add_page()
        self.pdf.insert_toc_placeholder(self._render_toc, pages=pages)
        self._fresh_page = True  # the placeholder already broke to a new, empty page

    def _render_toc(self, pdf: Any, outline: list[Any]) -> None:
        from fpdf.enums import XPos, YPos

        first, rest = self._toc_capacity()
        pdf.set_auto_page_break(False)
        pdf.set_font(self.family, "B", 16)
        pdf.cell(0, self.TOC_HEAD_H - 2, "Contents", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)
        pdf.set_font(self.family, "", 10)
        width = pdf.epw
        room_on_page = first
        for sec in outline:
            if sec.level != 0:
                continue
            if room_on_page == 0:
                pdf.add_page()
                pdf.set_font(self.family, "", 10)
                room_on_page = rest
            room_on_page -= 1
            page = str(sec.page_number)
            room = width - pdf.get_string_width(page) - 4
            name = self.text(sec.name)
            if pdf.get_string_width(name) > room:  # cut at a word, never inside one (unless one word is too long)
                words = name.split(" ")
                while len(words) > 1 and pdf.get_string_width(" ".join(words) + " …") > room:
                    words.pop()
                name = " ".join(words)
                if pdf.get_string_width(name + " …") > room:
                    while name and pdf.get_string_width(name + "…") > room:
                        name = name[:-1]
                    name += "…"
                else:
                    name = name.rstrip(" ,;:-") + " …"
            link = pdf.add_link(page=sec.page_number)
            pdf.cell(width - pdf.get_string_width(page) - 2, self.TOC_LINE_H, name, link=link)
            pdf.cell(0, self.TOC_LINE_H, page, align="R", link=link, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_auto_page_break(True, margin=self.MARGIN)

    def item(self, item: dict[str, Any]) -> None:
        pdf = self.pdf
        title = " ".join(str(item.get("title") or item.get("source") or f"Item {item.get('n')}").split())
        if not self._fresh_page:
            pdf.add_page()
        self._fresh_page = False
        # Viewers draw bookmarks with system fonts, so the outline keeps the real title (CJK too).
        pdf.start_section("".join(ch for ch in title[:200] if ch.isprintable()) or "Untitled")
        self._p(title, 16, "B", 8)
        facts = [str(item.get("source") or "")]
        dur = _num(item.get("duration"))
        if dur:
            facts.append(f"duration {fmt_timestamp(dur)}")
        transcript = _load_json(_artifact(item, "json"))
        if transcript and transcript.get("language"):
            facts.append(f"language {transcript['language']}")
        if transcript and (transcript.get("source") or transcript.get("model")):
            facts.append(" ".join(str(x) for x in (transcript.get("source"), transcript.get("model")) if x))
        pdf.set_text_color(90)
        self._p(" · ".join(f for f in facts if f), 8)
        pdf.set_text_color(0)
        pdf.ln(2)

        summary, summary_md = _item_summary(item)
        if summary:
            self._summary(summary)
        elif summary_md:
            self._heading("Summary")
            # Plain text of the Markdown: its "# title" repeats the section title; "## x" reads as "x".
            body = "\n".join(re.sub(r"^#{2,6}\s+", "", line) for line in summary_md.splitlines()
                             if not line.startswith("# "))
            self._p(body.strip(), 10)

        self._heading("Transcript")
        segments = (transcript or {}).get("segments") or []
        lines = [f"[{fmt_timestamp(s.get('start'))}] {' '.join(str(s.get('text') or '').split())}"
                 for s in segments if isinstance(s, dict) and str(s.get("text") or "").strip()]
        if lines:
            self._p("\n".join(lines), 9, h=4.6)
        else:
            txt = _artifact(item, "txt")
            body = txt.read_text(encoding="utf-8", errors="replace").strip() if txt else ""
            self._p(body or "No transcript file was found for this item.", 9, h=4.6)

    def _heading(self, text: str) -> None:
        self.pdf.ln(2)
        self._p(text, 12, "B", 7)

    def _summary(self, summary: dict[str, Any]) -> None:
        tldr = " ".join(str(summary.get("tldr") or "").split())
        if tldr:
            self._heading("TL;DR")
            self._p(tldr, 10)
        points = [" ".join(str(p).split()) for p in summary.get("key_points") or [] if str(p).strip()]
        if points:
            self._heading("Key points")
            self._p("\n".join(f"• {p}" for p in points), 10)
        chapters = [c for c in summary.get("chapters") or [] if isinstance(c, dict)]
        if chapters:
            self._heading("Chapters")
            self._p("\n".join(f"[{fmt_timestamp(c.get('start'))}] {' '.join(str(c.get('title') or '').split())}"
                              for c in chapters), 10)
        tags = [str(t) for t in summary.get("tags") or [] if str(t).strip()]
        if tags:
            self._heading("Tags")
            self._p(", ".join(tags), 10)

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def write_pdf(batch: dict[str, Any], items: list[dict[str, Any]], path: Path,
              fallback_fonts: Sequence[Path] | None = None) -> Path:
    """The combined PDF: a title page, a linked table of contents, then one bookmarked section per done item.

    Uses DejaVu Sans from matplotlib (plus any ``TUBEMILL_PDF_FALLBACK_FONTS``); glyphs
    no font has are drawn as a box rather than failing the export. fpdf2 builds the
    document in memory, so this is the one export whose memory grows with the batch:
    500 ten-minute transcripts made a 3 MB, 1,500-page PDF in about 5 s.
    """
    done = [it for it in items if it.get("status") == "done"]
    w = _PdfWriter(_fallback_font_paths() if fallback_fonts is None else fallback_fonts)
    w.title_page(batch, len(done))
    if done:
        w.toc(len(done))
    for it in done:
        w.item(it)
    atomic_write_bytes(Path(path), w.output())
    return Path(path)


