"""``errors.md``: every failed item with its error, a hint at the fix and its log; then the recipe's sections.

Written with the other batch outputs; readable in any Markdown viewer, with every text
from the outside world escaped.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from pipeline.engine.manifest import _rel
from pipeline.engine.recipe import Report, report_of

log = logging.getLogger("pipeline")

HINTS: dict[str, str] = {
    "NotFound": "The URL returns 404; check it or remove it from the list.",
    "Unavailable": "The video is private, removed or region-locked; nothing to retry unless that changes.",
    "RateLimited": "The site is throttling us: add cookies for another account, slow down (longer pacing), "
                   "or try later with `tubemill retry-failed {batch}`.",
    "BotCheck": "YouTube asked to confirm you're not a bot: add a signed-in account (`--cookies FILE` or "
                "`--cookies-from-browser BROWSER`), install a PO-token provider (`tubemill doctor` shows it), slow "
                "down, or try later with `tubemill retry-failed {batch}`.",
    "PrivateVideo": "A private video: only an account it was shared with can fetch it; add that account's cookies, "
                    "then `tubemill retry-failed {batch}`.",
    "MembersOnly": "Members-only: add the cookies of an account that is a member of the channel (`--cookies` or "
                   "`--cookies-from-browser`), then `tubemill retry-failed {batch}`.",
    "AgeRestricted": "Age-restricted: add the cookies of a signed-in, age-verified account (`--cookies` or "
                     "`--cookies-from-browser`), then `tubemill retry-failed {batch}`.",
    "GeoBlocked": "Not available from this country: run the batch through a proxy in an allowed country "
                  "(`--proxy URL`, or `proxy` in [accounts.NAME] of settings.toml), then retry.",
    "NotYetLive": "A live stream or premiere that has not started (skipped, not failed): add it to a batch again "
                  "once it has ended, or run with `--wait-for-live` to have it scheduled for its start time.",
    "MissingJsRuntime": "yt-dlp found no JavaScript runtime (or no EJS scripts) for YouTube: run `make` or "
                        "`.venv/bin/pip install deno 'yt-dlp[default]'`, check with `tubemill doctor`, then "
                        "`tubemill retry-failed {batch}`.",
    "NetworkError": "Check the connection, then run `tubemill retry-failed {batch}`.",
    "Unsupported": "No extractor handles this URL; check it points at a video, playlist or media file.",
    "NoAudio": "The media has no audio track to transcribe; check the source.",
    "InvalidInput": "The input line or an option is not usable; fix the line and add it again.",
    "AuthFailed": "The account's cookies were refused: refresh the cookie file (export it again from a "
                  "signed-in browser), then retry.",
    "Cancelled": "The item was cancelled; run `tubemill retry-failed {batch}` to do it again.",
    "TooLarge": "The download passed the per-download cap: raise it with `--set max_download_mb=N` (or "
                "`[downloads]` in settings.toml), then `tubemill retry-failed {batch}`.",
    "NotMedia": "The server sent something that is not audio or video (a web page, an archive): check the URL "
                "points at the media itself or at a page yt-dlp knows.",
    "OutboundRefused": "A redirect pointed into this machine or the private network, which a remote source may "
                       "not do; if you trust it, `--set allow_private_redirects=true`.",
    "Stalled": "The server sent almost nothing for too long; it is retried. For slow links lower "
               "`stall_rate_kbps` or raise `stall_seconds` (`--set` or `[downloads]`).",
    "DiskFull": "The output disk is (nearly) full: free space or move the output folder; items wait and go on "
                "by themselves, or run `tubemill retry-failed {batch}`.",
    "TooManyRedirects": "The server redirects in a loop; check the URL in a browser.",
}
DEFAULT_HINT = "See log.txt in the item folder for the full error and traceback."


def hint_text(hint: str, batch_name: str = "BATCH") -> str:
    """A hint with its ``{batch}`` filled in, quoted for a shell when the name needs it."""
    name = batch_name if re.fullmatch(r"[\w.\-]+", batch_name or "") else json.dumps(batch_name or "BATCH")
    return hint.replace("{batch}", name)


def hint_for(error_type: str | None, batch_name: str = "BATCH") -> str:
    """A next step a user can act on, by error type (unknown types point at the item's log)."""
    return hint_text(HINTS.get(error_type or "", DEFAULT_HINT), batch_name)


def md_code(text: Any) -> str:
    s = " ".join(str(text or "").split()).replace("`", "'")
    return f"`{s}`" if s else "—"


def item_name(item: dict[str, Any]) -> str:
    """How errors.md names an item: its title on one line, else its source as code."""
    return " ".join(str(item.get("title") or "").split()) or md_code(item.get("source"))


def errors_markdown(batch: dict[str, Any], items: list[dict[str, Any]], folder: Path,
                    report: Report | None = None) -> str:
    """Markdown listing each failed item (source, stage, error, attempts, a hint, its log), then the recipe's
    own sections (transcribe: the items whose summary fell back or was repaired)."""
    report = report if report is not None else report_of(batch)
    name = str(batch.get("name") or batch.get("id") or "batch")
    extra = report.sections(items, name) if report.sections else []
    failed = [it for it in items if it.get("status") == "failed"]
    out = [f"# Errors: {' '.join(name.split())}", ""]
    if not failed:
        out += ["No items failed.", ""]
        return "\n".join(out + extra)
    out += [f"{len(failed)} of {len(items)} item(s) failed.", ""]
    for it in failed:
        err = it.get("error") or {}
        etype = err.get("type") or "UnknownError"
        out.append(f"## {it.get('n')}. {item_name(it)}")
        out.append("")
        out.append(f"- **Source:** {md_code(it.get('source'))}")
        out.append(f"- **Stage:** {err.get('stage') or it.get('stage') or '—'}")
        msg = " ".join(str(err.get("message") or "").split())
        out.append(f"- **Error:** {etype}: {msg}" if msg else f"- **Error:** {etype}")
        retry = " (retryable)" if err.get("retryable") else ""
        out.append(f"- **Attempts:** {it.get('attempts', err.get('attempt', 0))}{retry}")
        out.append(f"- **What to do:** {hint_for(etype, name)}")
        log_rel = _rel(Path(it["workdir"]) / "log.txt", folder) if it.get("workdir") else None
        if log_rel:
            out.append(f"- **Log:** `{log_rel}`")
        out.append("")
    return "\n".join(out + extra)


