"""What a generated video and a generate batch hand out: each video's credits, and the batch ZIP.

Credits: the stock pictures and clips a video shows (``visuals.json``, written by the visuals stage)
may carry a licence that asks to be credited (CC BY and its kin: title, author, licence, link).
:func:`credits_of` lists them once per asset; :func:`fit_description` puts them into the YouTube
description within its 5,000-byte limit (room goes to the credits first, then the hashtags, and the
body gets the rest; on the page they read body, hashtags, credits), and ``credits.txt`` beside the
video keeps every line even when the description could not.
Pexels and Pixabay ask for no credit but like one: a short line names them and their authors.

The ZIP holds what a batch is for, not how it was made: per video its MP4, subtitles (SRT/ASS/VTT),
thumbnail, metadata/script/upload/visuals JSON, credits and log; at the top the manifest, errors.md
and stats.json. Frames, narration clips, downloaded stock media and anything hidden (an open upload
session is a capability to write into that upload) stay out. Members come from the engine's
:func:`~pipeline.engine.archive.zip_members`, so its secret filter (names and contents) and its refusal
of symbolic links apply, and every name is relative to the batch folder: nothing can point out of it.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.engine.archive import zip_members
from pipeline.engine.outputs import batch_slug
from state.storage import TEMP_PREFIX

log = logging.getLogger("pipeline")

VISUALS = "visuals.json"
CREDITS = "credits.txt"
DESCRIPTION_MAX_BYTES = 5000  # as youtube_meta.DESCRIPTION_MAX_BYTES: the API counts UTF-8 bytes
# Licences that ask for no credit (public domain, CC0, the stock sites' own licences).
_FREE = ("cc0", "pdm", "public domain", "pexels", "pixabay")
_PROVIDERS = {"pexels": "Pexels", "pixabay": "Pixabay", "openverse": "Openverse"}
_CUSTOMARY = ("pexels", "pixabay")
# An item folder's top-level files that go into the ZIP (its sub-folders never do: frames, narration, media).
ITEM_FILES = ("video.mp4", "*.srt", "*.ass", "*.vtt", "thumbnail*.jpg", "thumbnail*.jpeg", "thumbnail*.png",
              "thumbnail*.webp", "metadata.json", "script.json", "upload.json", VISUALS, CREDITS, "log.txt")
BATCH_FILES = ("manifest.json", "manifest.csv", "errors.md", "stats.json")
_STORED = {".mp4", ".jpg", ".jpeg", ".png", ".webp"}


# ---------------------------------------------------------------- credits


def read_visuals(path: Path) -> dict[str, Any] | None:
    """``visuals.json`` when the batch used a media provider; None when there is none (the stage did not
    run). A file that does not parse raises ValueError: the caller flags it, the video goes on."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("scenes", []), list):
        raise ValueError(f"{VISUALS} is not an object with a scenes list")
    return doc


def _text(v: Any) -> str:
    # YouTube refuses '<' and '>' in a description; authors and titles come from the internet.
    return " ".join(str(v or "").replace("<", "").replace(">", "").split())


def _required(sc: dict[str, Any]) -> bool:
    flag = sc.get("attribution_required")
    if isinstance(flag, bool):
        return flag
    licence = _text(sc.get("licence")).lower()  # not said: any licence but a free one asks for credit
    return bool(licence) and not any(f in licence for f in _FREE)


def credits_of(visuals: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One entry per asset shown (generated frames and the local folder need none), with the scenes it is
    in and whether its licence asks for a credit."""
    out: dict[str, dict[str, Any]] = {}
    for sc in (visuals or {}).get("scenes") or []:
        if not isinstance(sc, dict) or sc.get("kind") == "generated" or sc.get("provider") in (None, "local"):
            continue
        key = _text(sc.get("url")) or _text(sc.get("path"))
        if not key:
            continue
        entry = out.setdefault(key, {
            "provider": _text(sc.get("provider")), "kind": "video" if sc.get("kind") == "video" else "image",
            "title": _text(sc.get("title")), "author": _text(sc.get("author")),
            "author_url": _text(sc.get("author_url")), "url": _text(sc.get("url")),
            "licence": _text(sc.get("licence")), "licence_url": _text(sc.get("licence_url")),
            "required": _required(sc), "scenes": []})
        if isinstance(sc.get("index"), int):
            entry["scenes"].append(sc["index"])
    return list(out.values())


def credit_line(c: dict[str, Any], compact: bool = False) -> str:
    """TASL (title, author, source, licence): ``"Title" by Author, CC BY 2.0 (licence link): page link``."""
    what = f'"{c["title"]}"' if c["title"] and not compact else ("Video" if c["kind"] == "video" else "Photo")
    who = f" by {c['author']}" if c["author"] else ""
    licence = c["licence"] or "licence not stated"
    if c["licence_url"] and not compact:
        licence += f" ({c['licence_url']})"
    return f"- {what}{who}, {licence}" + (f": {c['url']}" if c["url"] else "")


def customary_lines(credits: list[dict[str, Any]]) -> list[str]:
    """"Stock media from Pexels: A, B and C." — not required by their licences, but customary."""
    out = []
    for provider in _CUSTOMARY:
        authors = list(dict.fromkeys(c["author"] for c in credits if c["provider"] == provider and c["author"]))
        if not any(c["provider"] == provider for c in credits):
            continue
        names = ", ".join(authors[:8]) + (" and others" if len(authors) > 8 else "")
        out.append(f"Stock media from {_PROVIDERS[provider]}" + (f": {names}." if names else "."))
    return out


def credits_text(credits: list[dict[str, Any]]) -> str:
    """``credits.txt``: every credit in full, whatever the description had room for."""
    required = [credit_line(c) for c in credits if c["required"]]
    lines = (["Credits (the licences ask for these):", *required, ""] if required else []) + customary_lines(credits)
    return "\n".join(lines).strip() + "\n" if lines else ""


def _bytes(s: str) -> int:
    return len(s.encode("utf-8"))


def _cut(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:max(0, limit)].decode("utf-8", "ignore").rstrip()


def fit_description(body: str, hashtags: list[str], credits: list[dict[str, Any]],
                    limit: int = DESCRIPTION_MAX_BYTES) -> tuple[str, int]:
    """(the description, how many required credits it had no room for).

    The credits a licence asks for get room first (in full, else in a short form without the licence
    link), then the hashtags, and the body is cut to what is left; when even the short form of every
    credit does not fit, the description lists as many as fit and says how many more are in
    ``credits.txt``. The hashtags always stay: missing, the upload would append them past the limit.
    """
    tags = " ".join(hashtags)
    required = [c for c in credits if c["required"]]
    customary = customary_lines(credits)

    def block(lines: list[str], more: int = 0) -> str:
        head = ["Credits:", *lines] if lines or more else []
        if more:
            head.append(f"- and {more} more, listed in {CREDITS} beside the video")
        return "\n".join([*head, *customary])

    def join(*parts: str) -> str:
        return "\n\n".join(p for p in parts if p)

    for compact in (False, True):
        tail = join(tags, block([credit_line(c, compact) for c in required]))
        room = limit - _bytes(tail) - (2 if tail else 0)
        if room >= 0:
            return join(_cut(body.strip(), room), tail), 0
    lines = [credit_line(c, compact=True) for c in required]
    for keep in range(len(lines) - 1, -1, -1):
        tail = join(tags, block(lines[:keep], len(lines) - keep))  # hashtags kept: the API would append them
        if _bytes(tail) <= limit:
            return tail, len(lines) - keep
    return _cut(block([], len(lines)), limit), len(lines)


# ---------------------------------------------------------------- the batch ZIP


def _wanted(arc: str, item_dirs: set[str], artifacts: set[str]) -> bool:
    """A member the ZIP keeps: the batch's reports, an item folder's deliverables, a named artifact."""
    p = PurePosixPath(arc)
    if arc in artifacts:
        return True
    if len(p.parts) == 1:
        return p.name in BATCH_FILES
    parent = p.parent.as_posix()
    return parent in item_dirs and not p.name.startswith(".") and any(fnmatch.fnmatch(p.name.lower(), pat)
                                                                      for pat in ITEM_FILES)


def _relative(path: Any, workdir: Path, folder: Path) -> str | None:
    try:
        p = Path(path) if Path(path).is_absolute() else workdir / path
        rel = Path(os.path.relpath(p.resolve(), folder.resolve())).as_posix()
    except (OSError, TypeError, ValueError):
        return None
    return None if rel.startswith("../") or rel == ".." else rel


def zip_plan(items: list[dict[str, Any]], folder: Path, ours: list[Path]) -> list[tuple[Path, str]]:
    """(file, name in the ZIP) for a generate batch: the engine's safe members, filtered to the deliverables."""
    folder = Path(folder)
    item_dirs: set[str] = set()
    artifacts: set[str] = set()
    for it in items:
        if not it.get("workdir"):
            continue
        wd = Path(it["workdir"])
        rel = _relative(wd, wd, folder)
        if rel:
            item_dirs.add(rel)
        for kind in ("video", "srt", "ass", "thumbnail", "metadata", "credits"):
            if (a := (it.get("artifacts") or {}).get(kind)) and (r := _relative(a, wd, folder)):
                artifacts.add(r)
    return [(f, arc) for f, arc in zip_members(folder, ours) if _wanted(arc, item_dirs, artifacts)]


def write_batch_zip(items: list[dict[str, Any]], folder: Path, path: Path, ours: list[Path]) -> Path:
    """Stream the members into a temp name and rename it (a reader never sees half an archive); media is
    stored, text deflated."""
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for file, arc in zip_plan(items, folder, ours):
                zf.write(file, arc, compress_type=zipfile.ZIP_STORED if file.suffix.lower() in _STORED
                         else zipfile.ZIP_DEFLATED)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def outputs(batch: dict[str, Any], items: list[dict[str, Any]], folder: Path,
            written: dict[str, Path]) -> dict[str, Path]:
    """``Recipe.outputs`` for generate: the batch ZIP (after the manifest, errors.md and stats.json, which
    it holds)."""
    folder = Path(folder)
    ours = [p for k, p in written.items() if k != "extra_manifest"]
    path = write_batch_zip(items, folder, folder / f"{batch_slug(batch)}.zip", ours)
    log.info("export: %s written (%d bytes)", path.name, path.stat().st_size)
    return {"zip": path}
