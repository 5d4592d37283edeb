"""The PDF's contents page shortens a long title at a word, never inside one."""

from __future__ import annotations

from pathlib import Path

import pypdf

from pipeline.recipes.transcribe.pdf import write_pdf

LONG = ("Understanding the Thermodynamics of Everyday Kitchen Appliances and Why Refrigerators Hum "
        "Quietly Through the Night While Ovens Roar")


def test_contents_cut_long_titles_at_words(tmp_path: Path) -> None:
    items = [{"n": 1, "title": LONG, "status": "done", "source": "x"},
             {"n": 2, "title": "Short one", "status": "done", "source": "y"}]
    path = write_pdf({"id": "b", "name": "titles"}, items, tmp_path / "t.pdf")
    text = " ".join(" ".join(page.extract_text().split()) for page in pypdf.PdfReader(path).pages[:2])
    assert "…" in text and "Short one" in text
    cut = text[text.index("Understanding"):text.index("…")].strip()
    assert LONG.startswith(cut) and (len(cut) == len(LONG) or LONG[len(cut)] == " "), cut
