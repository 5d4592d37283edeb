"""Check of the LLM endpoint: reachable, the model listed, the structured-output rung, the Batch API.

Never shows the key; the base URL is shown redacted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.app.doctor.check import WARN, Check


def check_llm(home: Path, settings: Any, timeout: float) -> Check:
    from pipeline.config.secrets import llm_config_for
    from pipeline.config.ytdlp_options import redact_url

    config = llm_config_for(home, settings)
    if not config.configured():
        return Check("llm", True, "offline summarizer (no LLM configured)")
    where = redact_url(config.base_url or "OpenAI (default endpoint)")
    try:
        from pipeline.common import llmcall

        try:
            result = llmcall.probe(config, home, timeout=timeout)
        except TypeError:  # a probe without the timeout keyword: its own bound applies
            result = llmcall.probe(config, home)
    except ImportError:
        result = _probe_models(config, timeout)
    return _llm_row(where, config.model, result)



def _probe_models(config: Any, timeout: float) -> dict[str, Any]:
    """Fallback probe: ``GET {base_url}/models`` (reachable, model listed); rung and Batch API unknown."""
    import openai

    client = openai.OpenAI(base_url=config.base_url, api_key=config.resolved_api_key() or "not-needed",
                           timeout=timeout, max_retries=0)
    out: dict[str, Any] = {"reachable": False, "model": config.model, "model_listed": None, "rung": None,
                           "batch_api": None, "detail": ""}
    try:
        ids = [m.id for m in client.models.list()]
    except openai.AuthenticationError:
        out.update(reachable=True, detail="the server refused the API key (HTTP 401)")
    except openai.NotFoundError:
        out.update(reachable=True, detail="the server has no /models listing")
    except openai.APIStatusError as exc:
        out.update(reachable=True, detail=f"GET /models answered HTTP {exc.status_code}")
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        out.update(detail=f"cannot reach it: {type(exc).__name__}")
    else:
        out.update(reachable=True, model_listed=config.model in ids, detail=f"{len(ids)} model(s) listed")
    return out



def _llm_row(where: str, model: str, r: dict[str, Any]) -> Check:
    from pipeline.config.ytdlp_options import redact_url

    said = redact_url(str(r.get("detail") or ""))
    if not r.get("reachable"):
        return Check("llm", WARN, f"{where}, model {model}: not reachable ({said}); summaries fall back to the "
                                  "offline summarizer", "start the server or fix the base URL / key on the Settings "
                                                        "page; then `tubemill retry-summaries BATCH`")
    facts = [f"model {r.get('model') or model}"]
    listed = r.get("model_listed")
    facts.append("listed" if listed else "not listed" if listed is False else "listing unknown")
    rung = r.get("rung")
    facts.append(f"structured output: {rung}" if rung else "structured output: untested")
    batch = r.get("batch_api")
    facts.append("Batch API: " + ("yes" if batch else "no" if batch is False else "unknown"))
    detail = f"{where}: " + ", ".join(facts) + (f" ({said})" if said else "")
    if "refused" in said.lower() or "401" in said:
        return Check("llm", WARN, detail, "set a valid key on the Settings page (or OPENAI_API_KEY)")
    if listed is False:
        return Check("llm", WARN, detail, f"choose a model the server lists, or check that {model!r} is right "
                                          "(some servers accept any name)")
    return Check("llm", True, detail)
