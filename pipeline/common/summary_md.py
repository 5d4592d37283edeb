"""A summary as Markdown: source metadata escaped to plain text, model-written text defanged (no images, links
only to the item's own source), because both come from the internet and end up in a reader's browser.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.common.transcript_text import clean_text, finite, fmt_timestamp

_MD_SPECIAL = re.compile(r"([\\`*_\[\]()!<>#|~])")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_MD_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto|file|data|javascript):[^>\s]*)>", re.IGNORECASE)
_BARE_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s`]+|\bwww\.[^\s`]+|\b(?:data|javascript|mailto):[^\s`]+",
                       re.IGNORECASE)


def _md_inline(text: Any) -> str:
    """Text from the internet (titles, feed metadata) as Markdown that renders as exactly that text.

    A title like ``![b](http://host/track.png)`` must not make a reader's browser fetch a
    tracking image, nor ``[click](…)`` become a link: every Markdown special is escaped, and
    URLs go into code spans, where GFM's autolinking (which sees through escapes) finds none.
    """
    t = clean_text(text)
    out, pos = [], 0
    for m in _BARE_URL.finditer(t):
        url = _url_end(m.group(0))
        out.append(_MD_SPECIAL.sub(r"\\\1", t[pos:m.start()]))
        out.append(f"`{url}`")
        pos = m.start() + len(url)
    out.append(_MD_SPECIAL.sub(r"\\\1", t[pos:]))
    return "".join(out)


def _url_end(url: str) -> str:
    """A URL found in running text without the punctuation that closes the sentence or a bracket around it."""
    while url and (url[-1] in ".,;:!?'\"" or (url[-1] in ")]" and url.count("(") + url.count("[")
                                                < url.count(")") + url.count("]"))):
        url = url[:-1]
    return url


def _origin(url: str | None) -> str | None:
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url or "")
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme in ("http", "https") and parts.netloc else None


def md_model_text(text: Any, source_url: str | None = None) -> str:
    """LLM-written text as Markdown: images dropped, links kept only when they point at the item's own source.

    A model that read a hostile transcript may echo a beacon image or a phishing link;
    what is left renders as plain text (raw HTML and bare URLs are defanged too).
    """
    own = _origin(source_url)
    t = clean_text(text)
    t = _MD_IMAGE.sub(lambda m: m.group(1), t)

    def link(m: re.Match[str]) -> str:
        label, url = m.group(1), m.group(2)
        if own and _origin(url) == own:
            return f"[{label.replace(']', '')}]({url})"
        return label

    kept: list[str] = []

    def stash(m: re.Match[str]) -> str:
        kept.append(link(m))
        return f"\x00{len(kept) - 1}\x00"

    t = _MD_LINK.sub(stash, t)
    t = _MD_AUTOLINK.sub(lambda m: m.group(1), t)
    t = _BARE_URL.sub(lambda m: m.group(0) if own and _origin(m.group(0)) == own
                      else f"`{_url_end(m.group(0))}`{m.group(0)[len(_url_end(m.group(0))):]}", t)
    t = t.replace("<", "&lt;").replace(">", "&gt;")
    return re.sub("\x00(\\d+)\x00", lambda m: kept[int(m.group(1))], t)


def summary_markdown(title: str, summary: dict[str, Any], source_url: str | None = None) -> str:
    """A summary dict -> Markdown: title, TL;DR, key points, chapters with timestamps, tags.

    The title is source metadata (escaped to plain text); the rest is model-written
    (:func:`md_model_text`: no images, links only to the item's own source).
    """
    def model(text: Any) -> str:
        return md_model_text(text, source_url)

    out = [f"# {_md_inline(title) or 'Untitled'}", ""]
    tldr = model(summary.get("tldr"))
    if tldr:
        out += ["## TL;DR", "", tldr, ""]
    points = [model(p) for p in summary.get("key_points") or [] if clean_text(p)]
    if points:
        out += ["## Key points", "", *[f"- {p}" for p in points], ""]
    chapters = [c for c in summary.get("chapters") or [] if isinstance(c, dict)]
    if chapters:
        chapters.sort(key=lambda c: finite(c.get("start")))
        out += ["## Chapters", ""]
        out += [f"- [{fmt_timestamp(c.get('start'))}] {model(c.get('title')) or '—'}" for c in chapters]
        out.append("")
    tags = [_md_inline(t) for t in summary.get("tags") or [] if clean_text(t)]
    if tags:
        out += ["## Tags", "", ", ".join(tags), ""]
    engine = summary.get("engine")
    if engine:
        model = summary.get("model")
        out += [f"_Summary: {engine}{f' ({model})' if model else ''}_", ""]
    return "\n".join(out)
