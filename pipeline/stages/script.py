"""script, plan and metadata: the words of a generated video, how they split into scenes, and how
it is described on YouTube.

script: an LLM (the same OpenAI-compatible client as summarize) returns JSON checked against a
pydantic schema and is asked again with the validation errors; offline (no endpoint) a template
built from the topic, so the recipe always runs. Markdown and emoji are stripped before narration.
plan: scene count from the speaking pace (about one scene per 3 s fast, 4 s normal, 5 s slow) and
scene lengths from narration length; the narrate stage later scales them to the real audio.
metadata: YouTube's limits — title ≤ 100 characters, description ≤ 5,000 bytes, tags ≤ 500 characters.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from pipeline import errors
from pipeline.stages import register
from pipeline.stages.base import Stage, StageContext, StageResult
from state.storage import atomic_write_bytes

SCRIPT = "script.json"
PLAN = "plan.json"
METADATA = "metadata.json"
WORDS_PER_S = 2.6  # ~155 wpm: edge-tts and espeak-ng at their default rates
SECONDS_PER_SCENE = {"fast": 3.0, "normal": 4.0, "slow": 5.0}
SIZES = {"9:16": (1080, 1920), "16:9": (1920, 1080)}


class Scene(BaseModel):
    narration: str = Field(min_length=1)
    visual: str = ""


class VideoScript(BaseModel):
    title: str = Field(min_length=1)
    hook: str = ""
    script: str = Field(min_length=1)
    scenes: list[Scene] = Field(min_length=1)
    hashtags: list[str] = []
    description: str = ""

    @field_validator("hashtags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        return [re.sub(r"[^\w]", "", t.lstrip("#")) for t in v if re.sub(r"[^\w]", "", t.lstrip("#"))]


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["title", "hook", "script", "scenes", "hashtags", "description"],
    "properties": {
        "title": {"type": "string"},
        "hook": {"type": "string"},
        "script": {"type": "string"},
        "scenes": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["narration", "visual"],
            "properties": {"narration": {"type": "string"}, "visual": {"type": "string"}}}},
        "hashtags": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"},
    },
}

_MD = re.compile(r"(\*\*|__|\*|_|`|~~|^#+\s*|^>\s*|^\s*[-*+]\s+|\[([^\]]*)\]\([^)]*\))", re.MULTILINE)


def clean_for_speech(text: str) -> str:
    """No Markdown marks or emoji reach the voice (a TTS reads "asterisk" or skips oddly)."""
    text = _MD.sub(lambda m: m.group(2) or "", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("So", "Sk", "Cs", "Co")
                   and ch not in "\u200d\ufe0f")
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([.,!?;:])", r"\1", text)


def offline_script(topic: str, style: str = "", target_s: float = 60.0) -> VideoScript:
    """A plain, honest template: always runs, says what it is about, never invents facts."""
    t = topic.strip().rstrip(".")
    first = t.split()[0] if t.split() else ""
    m = t[:1].lower() + t[1:] if first[:1].isupper() and not first.isupper() else t  # mid-sentence form
    lines = [
        f"Let's talk about {m}.",
        f"{t[:1].upper() + t[1:]} comes up more often than you might think, so it is worth a closer look.",
        f"First, what is {m}? Put simply, it is the idea at the center of this video.",
        f"Second, why does {m} matter? Because understanding it helps you make better decisions.",
        f"Third, how can you start? Pick one small step related to {m} and try it this week.",
        f"A common mistake is to treat {m} as all or nothing. Small, steady progress works better.",
        f"To recap: {m} is worth understanding, it matters in everyday life, and you can start small.",
        "Thanks for watching. Follow for more short explainers like this one.",
    ]
    words_needed = target_s * WORDS_PER_S
    chosen, words = [], 0
    for ln in lines:
        if words >= words_needed and len(chosen) >= 3:
            break
        chosen.append(ln)
        words += len(ln.split())
    tags = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9]{2,}", t)][:5] or ["explainer"]
    return VideoScript(
        title=t[:1].upper() + t[1:] if t else "Untitled",
        hook=chosen[0],
        script=" ".join(chosen),
        scenes=[Scene(narration=ln, visual=t) for ln in chosen],
        hashtags=[*tags, "explainer"],
        description=f"A short explainer about {t}." + (f" Style: {style}." if style else ""),
    )


def llm_script(topic: str, style: str, target_s: float, config: Any) -> tuple[VideoScript, dict[str, int]]:
    """Ask the model for a script in the schema; feed validation errors back, at most three tries."""
    import openai

    from pipeline import llm

    client = llm.make_client(config)
    words = int(target_s * WORDS_PER_S)
    messages = [
        {"role": "system", "content": "You write scripts for short narrated explainer videos. Plain spoken "
                                      "language, no Markdown, no emoji, no stage directions in the narration. "
                                      "Reply with one JSON object only."},
        {"role": "user", "content": f"Topic: {topic}\nStyle: {style or 'clear and friendly'}\n"
                                    f"Length: about {target_s:.0f} seconds ({words} words).\n"
                                    "Give a title (under 90 characters), a one-sentence hook, the full script, "
                                    "the script split into scenes (narration + a short visual description), "
                                    "3 to 8 hashtags and a description of 2 or 3 sentences."},
    ]
    usage = {"input_tokens": 0, "output_tokens": 0}
    error = ""
    for _ in range(3):
        try:
            resp = client.chat.completions.create(
                model=config.model, messages=messages,
                response_format={"type": "json_schema", "json_schema": {"name": "video_script", "strict": True,
                                                                        "schema": SCHEMA}})
        except openai.OpenAIError as exc:
            raise llm.map_error(exc, config) from exc
        if resp.usage:
            usage["input_tokens"] += resp.usage.prompt_tokens or 0
            usage["output_tokens"] += resp.usage.completion_tokens or 0
        content = resp.choices[0].message.content if resp.choices else ""
        try:
            return VideoScript.model_validate(json.loads(content or "")), usage
        except (ValueError, ValidationError) as exc:
            error = str(exc)[:800]
            messages += [{"role": "assistant", "content": content or ""},
                         {"role": "user", "content": f"That was not valid: {error}\nReply with the corrected JSON."}]
    raise errors.PermanentError(f"the model's script stayed invalid after 3 tries: {error}")


def _opt(item: dict[str, Any], ctx: StageContext, key: str, default: Any = None) -> Any:
    """Per-row option (CSV), else the batch option, else the default."""
    return (item.get("meta") or {}).get(key) or ctx.options.get(key) or default


def run_script(item: dict[str, Any], ctx: StageContext) -> StageResult:
    from pipeline.secrets import llm_config_for

    out = ctx.path(SCRIPT)
    if out.exists():
        return StageResult(artifacts={"script": str(out)})
    topic, style = item["source"], _opt(item, ctx, "style", "")
    target = float(_opt(item, ctx, "length_s", 60))
    config = llm_config_for(ctx.home, options=ctx.options)
    usage = {"input_tokens": 0, "output_tokens": 0}
    if ctx.options.get("script_engine", "auto") != "offline" and config.configured():
        script, usage = llm_script(topic, style, target, config)
        engine = "llm"
    else:
        script, engine = offline_script(topic, style, target), "template"
    doc = script.model_dump()
    for sc in doc["scenes"]:
        sc["narration"] = clean_for_speech(sc["narration"])
    doc["scenes"] = [sc for sc in doc["scenes"] if sc["narration"]]
    if not doc["scenes"]:
        raise errors.PermanentError("the script has no speakable narration")
    doc.update(script_engine=engine, usage=usage)
    atomic_write_bytes(out, json.dumps(doc, ensure_ascii=False, indent=1).encode())
    return StageResult(artifacts={"script": str(out)}, meta={"title": doc["title"][:100], "script_engine": engine})


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def plan_scenes(scenes: list[dict[str, str]], target_s: float, pace: str) -> list[dict[str, Any]]:
    """Regroup the narration into about target/seconds-per-scene scenes, never splitting a sentence."""
    per = SECONDS_PER_SCENE.get(pace, 4.0)
    sentences = [(s, sc.get("visual", "")) for sc in scenes for s in _sentences(sc["narration"])]
    total_words = sum(len(s.split()) for s, _ in sentences) or 1
    speech_s = total_words / WORDS_PER_S
    want = max(1, min(len(sentences), round(speech_s / per)))
    words_per_scene = total_words / want
    out: list[dict[str, Any]] = []
    cur: list[str] = []
    visual = ""
    acc = 0
    for s, vis in sentences:
        cur.append(s)
        visual = visual or vis
        acc += len(s.split())
        if acc >= words_per_scene * (len(out) + 1) and len(out) < want - 1:
            out.append({"narration": " ".join(cur), "visual": visual})
            cur, visual = [], ""
    if cur:
        out.append({"narration": " ".join(cur), "visual": visual})
    for i, sc in enumerate(out, start=1):
        sc["index"] = i
        sc["est_s"] = round(len(sc["narration"].split()) / WORDS_PER_S, 2)
    return out


def run_plan(item: dict[str, Any], ctx: StageContext) -> StageResult:
    out = ctx.path(PLAN)
    if out.exists():
        return StageResult(artifacts={"plan": str(out)})
    script = json.loads(ctx.path(SCRIPT).read_text(encoding="utf-8"))
    aspect = _opt(item, ctx, "aspect", "9:16")
    if aspect not in SIZES:
        raise errors.InvalidInput(f"aspect must be 9:16 or 16:9, not {aspect!r}")
    w, h = SIZES[aspect]
    size = ctx.options.get("size")  # "WxH": quick drafts and tests; the aspect's full size otherwise
    if size:
        try:
            w, h = (int(x) for x in str(size).lower().split("x"))
        except ValueError:
            raise errors.InvalidInput(f"size must look like 540x960, not {size!r}") from None
    pace = _opt(item, ctx, "pace", "normal")
    scenes = plan_scenes(script["scenes"], float(_opt(item, ctx, "length_s", 60)), pace)
    plan = {"title": script["title"], "aspect": aspect, "width": w, "height": h, "fps": 30,
            "theme": _opt(item, ctx, "theme", "dark"), "background_dir": _opt(item, ctx, "background_dir"),
            "voice": _opt(item, ctx, "voice", "en-US-AriaNeural"), "rate": _opt(item, ctx, "rate", "+0%"),
            "pace": pace, "scenes": scenes}
    atomic_write_bytes(out, json.dumps(plan, ensure_ascii=False, indent=1).encode())
    return StageResult(artifacts={"plan": str(out)}, meta={"scenes": len(scenes)})


def run_metadata(item: dict[str, Any], ctx: StageContext) -> StageResult:
    from pipeline.youtube import fit_tags, truncate_bytes

    out = ctx.path(METADATA)
    if out.exists():
        return StageResult(artifacts={"metadata": str(out)})
    script = json.loads(ctx.path(SCRIPT).read_text(encoding="utf-8"))
    title = clean_for_speech(script["title"])[:100].rstrip() or item["source"][:100]
    hashtags = ["#" + h for h in script.get("hashtags", [])][:15]
    body = (script.get("description") or script.get("hook") or "").strip()
    description = truncate_bytes(body + ("\n\n" + " ".join(hashtags) if hashtags else ""), 5000)
    privacy = _opt(item, ctx, "privacy", "private")
    publish_at = _opt(item, ctx, "publish_at")
    if publish_at:
        privacy = "private"  # YouTube publishes scheduled videos from private
    meta = {"title": title, "description": description, "tags": fit_tags(script.get("hashtags", [])),
            "hashtags": hashtags, "category_id": str(_opt(item, ctx, "category_id", "27")), "privacy": privacy,
            "publish_at": publish_at}
    atomic_write_bytes(out, json.dumps(meta, ensure_ascii=False, indent=1).encode())
    return StageResult(artifacts={"metadata": str(out)}, meta={"title": title})


register(Stage("script", run_script, resource="llm", doc="LLM script (schema-checked) or offline template"))
register(Stage("plan", run_plan, resource="cpu", doc="scenes from speaking pace"))
register(Stage("metadata", run_metadata, resource="cpu", doc="YouTube title/description/tags within limits"))
