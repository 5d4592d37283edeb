"""What transcribe adds to every batch's manifest and errors.md: its file columns, its flagged summaries and
what the hallucination guard found.

A transcript is the item's result; its summary is an enrichment that may fall back to the
offline summarizer or be repaired to fit the rules. The manifest says how each summary came
to be, and errors.md lists the flagged ones with the command that asks only them again. The
guard (:mod:`.quality`) records per item how many segments looked made up, how many of those
a re-decode replaced or dropped and how many are still suspect: the manifest carries the
counts (``quality_found``/``quality_repaired``/``quality_flagged``), errors.md a "Quality"
section naming each window, so a reader knows which moments to check by ear.
"""

from __future__ import annotations

from typing import Any

from pipeline.common.formats import fmt_timestamp
from pipeline.engine.recipe import Report
from pipeline.engine.report import hint_text, item_name, md_code

FILE_KINDS = ("txt", "srt", "vtt", "json", "summary", "notes", "docx", "words_srt", "words_vtt", "ass")

SUMMARY_HINT = ("The transcripts are complete; only the summary fell back to the offline extractive one. Fix the "
                "cause (start the server, check the key or the model), then run `tubemill retry-summaries {batch}` "
                "(or the Results page's button): only these summaries are asked again.")


TRANSLATION_HINT = ("The transcripts are complete; only their translation is missing or partial. Fix the cause (set "
                    "an API key or server, start it, check the model), then run "
                    "`tubemill retry-translations {batch}`: only these translations are asked again, and only the "
                    "segments still missing.")


def translation_outcome(item: dict[str, Any]) -> dict[str, Any] | None:
    """How the item's --translate-to came out: llm, repaired, partial, failed, offline or same (why)."""
    meta = item.get("meta") or {}
    if not meta.get("translation_outcome"):
        return None
    return {"lang": meta.get("translation_lang"), "outcome": meta["translation_outcome"],
            "reason": meta.get("translation_reason"), "cost_usd": meta.get("translation_cost_usd")}


def translations_markdown(items: list[dict[str, Any]], batch_name: str) -> list[str]:
    """The "Translations" section: items whose translation failed, was partial or had no LLM (why)."""
    bad = [it for it in items if (it.get("meta") or {}).get("translation_outcome") in ("failed", "partial", "offline")]
    if not bad:
        return []
    out = ["## Translations", "", f"{len(bad)} translation(s) are missing or partial.", "",
           f"**What to do:** {hint_text(TRANSLATION_HINT, batch_name)}", ""]
    for it in bad:
        title = item_name(it)
        meta = it.get("meta") or {}
        reason = " ".join(str(meta.get("translation_reason") or meta.get("translation_outcome")).split())
        out.append(f"- {it.get('n')}. {title}: {md_code(reason)}")
    out.append("")
    return out


def summary_outcome(item: dict[str, Any]) -> dict[str, Any] | None:
    """How the item's summary came to be: llm, repaired (what was adjusted), offline, or fallback (why)."""
    meta = item.get("meta") or {}
    if not meta.get("summary_outcome"):
        return None
    return {"outcome": meta["summary_outcome"], "reason": meta.get("summary_reason"),
            "adjustments": list(meta.get("summary_adjustments") or [])}


def summaries_markdown(items: list[dict[str, Any]], batch_name: str) -> list[str]:
    """The "Summaries" section: items whose LLM summary fell back (why) or was repaired (what changed)."""
    fell = [it for it in items if (it.get("meta") or {}).get("summary_outcome") == "fallback"]
    fixed = [it for it in items if (it.get("meta") or {}).get("summary_outcome") == "repaired"]
    if not fell and not fixed:
        return []
    out = ["## Summaries", ""]
    if fell:
        out += [f"{len(fell)} summary(ies) fell back to the offline summarizer.", "",
                f"**What to do:** {hint_text(SUMMARY_HINT, batch_name)}", ""]
        for it in fell:
            title = item_name(it)
            reason = " ".join(str((it.get("meta") or {}).get("summary_reason") or "unknown").split())
            out.append(f"- {it.get('n')}. {title}: {md_code(reason)}")
        out.append("")
    if fixed:
        out += [f"{len(fixed)} LLM summary(ies) were repaired to fit the rules (kept, not re-asked):", ""]
        for it in fixed:
            title = item_name(it)
            what = "; ".join((it.get("meta") or {}).get("summary_adjustments") or []) or "adjusted"
            out.append(f"- {it.get('n')}. {title}: {md_code(what)}")
        out.append("")
    return out


QUALITY_NOTE = ("Whisper sometimes writes text that was never said: one line over and over, a phrase looping, "
                "\"thanks for watching\" over silence. These windows were decoded again; a replaced or dropped "
                "window is already fixed in the transcript, a window still flagged is worth a listen. Run with "
                "`--no-repair` to keep Whisper's first text (the findings are still listed).")


def quality_row(item: dict[str, Any]) -> dict[str, Any]:
    """The manifest keys of the guard: counts (null where no guard ran: captions, a reused transcript)."""
    q = (item.get("meta") or {}).get("quality")
    if not isinstance(q, dict):
        return {"quality_found": None, "quality_repaired": None, "quality_flagged": None, "quality_reasons": None}
    return {"quality_found": q.get("found"), "quality_repaired": q.get("repaired"),
            "quality_flagged": q.get("flagged"), "quality_reasons": q.get("reasons") or {},
            **({"quality_error": q["error"]} if q.get("error") else {})}


def _window_line(w: dict[str, Any]) -> str:
    span = f"{fmt_timestamp(w.get('start'))}–{fmt_timestamp(w.get('end'))}"
    why = ", ".join(w.get("reasons") or []) or "suspect"
    old = md_code(w.get("old"))
    if w.get("outcome") == "replaced":
        return f"  - {span} ({why}): {old} → {md_code(w.get('new'))}"
    if w.get("outcome") == "dropped":
        return f"  - {span} ({why}): {old} dropped (silence)"
    return f"  - {span} ({why}): {old} kept (the re-decode was no better)"


def quality_markdown(items: list[dict[str, Any]]) -> list[str]:
    """The "Quality" section: items whose transcript had suspect segments (or whose guard failed), with each
    re-decoded window and what became of it."""
    listed = [it for it in items if isinstance(q := (it.get("meta") or {}).get("quality"), dict)
              and (q.get("found") or q.get("error"))]
    if not listed:
        return []
    found = sum(int(it["meta"]["quality"].get("found") or 0) for it in listed)
    fixed = sum(int(it["meta"]["quality"].get("repaired") or 0) for it in listed)
    left = sum(int(it["meta"]["quality"].get("flagged") or 0) for it in listed)
    out = ["## Quality", "", f"{found} suspect segment(s) in {len(listed)} transcript(s): {fixed} repaired, "
           f"{left} still flagged.", "", QUALITY_NOTE, ""]
    for it in listed:
        q = it["meta"]["quality"]
        title = item_name(it)
        if q.get("error"):
            out.append(f"- {it.get('n')}. {title}: the guard failed ({md_code(q['error'])}); the transcript is "
                       "Whisper's first text")
            continue
        reasons = ", ".join(f"{k} {v}" for k, v in (q.get("reasons") or {}).items())
        out.append(f"- {it.get('n')}. {title}: {q.get('found')} suspect ({reasons}); {q.get('repaired')} "
                   f"repaired, {q.get('flagged')} still flagged")
        out += [_window_line(w) for w in (q.get("windows") or [])[:5]]
        out += [f"  - still flagged at {fmt_timestamp(x.get('start'))}–{fmt_timestamp(x.get('end'))} "
                f"({', '.join(x.get('reasons') or [])}): {md_code(x.get('text'))}" for x in (q.get("still") or [])[:5]]
    out.append("")
    return out


def exports_markdown(items: list[dict[str, Any]]) -> list[str]:
    """The "Exports" section: items where a --formats file could not be written (the item itself is done)."""
    failed = [it for it in items if (it.get("meta") or {}).get("export_errors")]
    if not failed:
        return []
    out = ["## Exports", "", f"{len(failed)} item(s) are missing a --formats file; their transcripts and other "
           "files are complete:", ""]
    for it in failed:
        title = item_name(it)
        errs = "; ".join(f"{fmt}: {why}" for fmt, why in it["meta"]["export_errors"].items())
        out.append(f"- {it.get('n')}. {title}: {md_code(errs)}")
    out.append("")
    return out


def sections(items: list[dict[str, Any]], batch_name: str) -> list[str]:
    """errors.md's transcribe sections: summaries, translations, the transcripts' quality, failed exports."""
    return (summaries_markdown(items, batch_name) + translations_markdown(items, batch_name)
            + quality_markdown(items) + exports_markdown(items))


def _row(item: dict[str, Any]) -> dict[str, Any]:
    errs = (item.get("meta") or {}).get("export_errors")
    return {"summary": summary_outcome(item), "translation": translation_outcome(item), **quality_row(item),
            **({"export_errors": errs} if errs else {})}


REPORT = Report(file_kinds=FILE_KINDS, row=_row, sections=sections)
