"""What transcribe adds to every batch's manifest and errors.md: its file columns and its flagged summaries.

A transcript is the item's result; its summary is an enrichment that may fall back to the
offline summarizer or be repaired to fit the rules. The manifest says how each summary came
to be, and errors.md lists the flagged ones with the command that asks only them again.
"""

from __future__ import annotations

from typing import Any

from pipeline.engine.recipe import Report
from pipeline.engine.report import hint_text, md_code

FILE_KINDS = ("txt", "srt", "vtt", "json", "summary")

SUMMARY_HINT = ("The transcripts are complete; only the summary fell back to the offline extractive one. Fix the "
                "cause (start the server, check the key or the model), then run `tubemill retry-summaries {batch}` "
                "(or the Results page's button): only these summaries are asked again.")


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
            title = " ".join(str(it.get("title") or "").split()) or md_code(it.get("source"))
            reason = " ".join(str((it.get("meta") or {}).get("summary_reason") or "unknown").split())
            out.append(f"- {it.get('n')}. {title}: {md_code(reason)}")
        out.append("")
    if fixed:
        out += [f"{len(fixed)} LLM summary(ies) were repaired to fit the rules (kept, not re-asked):", ""]
        for it in fixed:
            title = " ".join(str(it.get("title") or "").split()) or md_code(it.get("source"))
            what = "; ".join((it.get("meta") or {}).get("summary_adjustments") or []) or "adjusted"
            out.append(f"- {it.get('n')}. {title}: {md_code(what)}")
        out.append("")
    return out


REPORT = Report(file_kinds=FILE_KINDS, row=lambda item: {"summary": summary_outcome(item)},
                sections=summaries_markdown)
