"""``metadata.json`` → the ``videos.insert`` request body, within YouTube's limits on titles, descriptions,
tags, privacy and scheduled publishing: refused values are fixed here (and noted) rather than by a failed upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline import errors

PRIVACY = ("private", "unlisted", "public")
TITLE_MAX = 100
DESCRIPTION_MAX_BYTES = 5000
TAGS_MAX_CHARS = 500


def _clean(text: Any) -> str:
    """YouTube refuses '<' and '>' in titles and descriptions (invalidTitle / invalidDescription)."""
    return str(text or "").replace("<", "").replace(">", "").strip()


def truncate_bytes(text: str, limit: int) -> str:
    """At most ``limit`` UTF-8 bytes, never cutting a character in half."""
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore").rstrip()


def fit_tags(tags: Any) -> list[str]:
    """Tags within YouTube's 500-character budget (a tag with a space counts its quotes too)."""
    out: list[str] = []
    used = 0
    for tag in tags if isinstance(tags, list) else []:
        t = _clean(tag).lstrip("#").replace(",", " ").strip()
        if not t or t.lower() in (o.lower() for o in out):
            continue
        cost = len(t) + (2 if " " in t else 0) + (1 if out else 0)
        if used + cost > TAGS_MAX_CHARS:
            break
        out.append(t)
        used += cost
    return out


def parse_publish_at(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601 (``Z`` or an offset; a naive time is taken as UTC)."""
    if value in (None, ""):
        return None
    try:
        dt = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise errors.InvalidInput(f"publish_at {value!r} is not an ISO 8601 date-time") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def rfc3339(dt: datetime) -> str:
    """The form the API takes for ``publishAt``: UTC, whole seconds, ``Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class VideoRequest:
    """The request body and what was changed to make it fit (the stage logs the notes and keeps them)."""

    body: dict[str, Any]
    notes: tuple[str, ...] = ()


def request_body(meta: dict[str, Any], *, now: float, privacy: str | None = None, fallback_title: str = "",
                 made_for_kids: bool = False, synthetic_media: bool | None = None, language: str | None = None,
                 category_id: str | None = None) -> VideoRequest:
    """The ``videos.insert`` body from ``metadata.json`` at the instant ``now`` (epoch seconds).

    ``privacy`` (the batch option) wins over the metadata's; a ``publish_at`` forces
    ``private`` (the API requires it) and one already past is dropped, leaving the video
    private rather than publishing it at once. Callers reach it through
    :func:`pipeline.recipes.generate.youtube.video_body`, which reads the clock hook.

    The declarations and defaults the batch options give (``made_for_kids``, ``synthetic_media``,
    ``language``, ``category_id``) fill in what ``metadata.json`` does not say itself: the file is
    per video and may have been edited, so its own ``made_for_kids``, ``contains_synthetic_media``,
    ``language`` and ``category_id`` win. ``selfDeclaredMadeForKids`` is always sent: left out, the
    channel's default applies, and YouTube may then ask in Studio before the video can go public.
    ``containsSyntheticMedia`` (the altered-or-synthetic-content declaration, in the bundled discovery
    document's ``VideoStatus``) is sent whenever either side sets it.
    """
    notes: list[str] = []
    title = _clean(meta.get("title")) or _clean(fallback_title)
    if not title:
        raise errors.InvalidInput("metadata.json has no title")
    if len(title) > TITLE_MAX:
        title = title[:TITLE_MAX].rstrip()
        notes.append(f"title cut to {TITLE_MAX} characters")
    description = _clean(meta.get("description"))
    hashtags = [h if h.startswith("#") else f"#{h}"
                for h in (str(x).strip().replace(" ", "") for x in (meta.get("hashtags") or [])) if h.strip("#")]
    missing = [h for h in hashtags if h.lower() not in description.lower()]
    if missing:
        description = f"{description}\n\n{' '.join(missing)}".strip()
    description = truncate_bytes(description, DESCRIPTION_MAX_BYTES)
    snippet: dict[str, Any] = {"title": title, "description": description, "tags": fit_tags(meta.get("tags")),
                               "categoryId": str(meta.get("category_id") or category_id or "22")}
    lang = str(meta.get("language") or language or "").strip()
    if lang:
        snippet["defaultLanguage"] = snippet["defaultAudioLanguage"] = lang
    chosen = str(privacy or meta.get("privacy") or "private").lower()
    if chosen not in PRIVACY:
        raise errors.InvalidInput(f"privacy must be one of {', '.join(PRIVACY)}, not {chosen!r}")
    kids = meta.get("made_for_kids")
    status: dict[str, Any] = {"privacyStatus": chosen,
                              "selfDeclaredMadeForKids": kids if isinstance(kids, bool) else bool(made_for_kids)}
    when = parse_publish_at(meta.get("publish_at"))
    if when is not None:
        if when.timestamp() <= now + 60:
            notes.append(f"publish_at {rfc3339(when)} is past; uploaded {chosen} without a schedule")
        else:
            if chosen != "private":
                notes.append(f"scheduled publishing requires private; {chosen} ignored")
            status.update(privacyStatus="private", publishAt=rfc3339(when))
    synthetic = meta.get("contains_synthetic_media")
    if isinstance(synthetic, bool):
        status["containsSyntheticMedia"] = synthetic
    elif synthetic_media is not None:
        status["containsSyntheticMedia"] = bool(synthetic_media)
    return VideoRequest({"snippet": snippet, "status": status}, tuple(notes))
