"""script, plan and metadata: the words of a generated video, how they split into scenes, and how
it is described on YouTube.

script: an LLM (the same OpenAI-compatible client as summarize) returns JSON checked against a
pydantic schema and is asked again with the validation errors; offline (no endpoint) an honest
template that says what it is and states no facts, so the recipe always runs. Markdown and emoji are
stripped before narration.
plan: scene count from the speaking pace (about one scene per 3 s fast, 4 s normal, 5 s slow) and
scene lengths from narration length; the narrate stage later scales them to the real audio.
metadata: YouTube's limits — title ≤ 100 characters, description ≤ 5,000 bytes, tags ≤ 500 characters;
the credits stock media's licences ask for come first in the description (see generate/outputs.py).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from pipeline import errors
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate.options import options_of
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


# Words that start a question ("why is the sky blue") or a wh-clause ("how tides work"), and the small words a
# topic may begin with that are lower case mid-sentence ("the 1929 crash"); a proper noun keeps its capital.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WH = _words("how why what when where who whom whose which whether")
_AUX = _words("is are was were do does did can could will would should has have had may might must shall")
_LOWER_FIRST = _WH | _AUX | _words("the a an this that these those my your our its their some all every")
_STOP = _LOWER_FIRST | _words("of to in on at by for with and or but from into about it they we you i be been being "
                              "not so as than then there here")
TEMPLATE_NOTE = "This narration is a template written without a language model, so it states no facts."


@dataclass(frozen=True)
class TopicForms:
    """A topic as the template says it: a question is asked as one, anything else is "about" its mid-sentence
    form; ``keywords`` (small words dropped) feed the hashtags and the scenes' picture queries."""

    question: bool
    title: str  # "Why is the sky blue?", "The 1929 crash"
    mention: str  # "how tides work", "the 1929 crash" (the question itself for a question)
    keywords: list[str]


def topic_forms(topic: str) -> TopicForms:
    t = " ".join(topic.split()).strip(" \"'“”‘’").rstrip(".:;!,").strip()
    words = t.split()
    low = [w.lower().strip(",;:\"'") for w in words]
    question = t.endswith("?") or (len(low) > 1 and (low[0] in _AUX or (low[0] in _WH and low[1] in _AUX)))
    t = t.rstrip("?").rstrip() if question else t
    if words and low[0] in _LOWER_FIRST and not words[0].isupper():
        t = words[0].lower() + t[len(words[0]):]
    title = (t[:1].upper() + t[1:]) if t else ""
    if question and title:
        title += "?"
    keywords = [w for w in re.findall(r"[\w'’-]+", t.lower()) if w not in _STOP and len(w) > 1]
    return TopicForms(question=question, title=title, mention=title if question else t, keywords=keywords)


def offline_script(topic: str, style: str = "", target_s: float = 60.0) -> VideoScript:
    """An honest template: it names the topic, says it was written without a language model, and frames
    the topic (what a good explanation covers) without stating a fact; it reads as English whatever the
    topic's grammar ("how tides work", "Why is the sky blue?", "the 1929 crash"). ``style`` needs an LLM.

    Parts are added in order while they fit the target length (20% over at most); the first two always
    run, so even a 10-second video says what its narration is. A long target gets a short video: a
    template has nothing more to say.
    """
    f = topic_forms(topic)
    if not f.title:
        f = TopicForms(False, "Untitled", "this topic", [])
    intro = f"{f.title} That is the question this video is about." if f.question else f"Today's topic: {f.mention}."
    parts = [
        intro,
        TEMPLATE_NOTE,
        "A good explanation covers three things. First, the core idea, in one plain sentence. "
        "Second, why it matters, and to whom. Third, something you can see or try for yourself.",
        "Two more are worth adding: what people often get wrong about it, and what is still unknown or argued about.",
        "Then look it up in a trusted reference, and see how well it covers each of these.",
    ]
    budget = target_s * WORDS_PER_S * 1.2
    chosen = parts[:2]
    for part in parts[2:]:
        if sum(len(p.split()) for p in chosen) + len(part.split()) > budget:
            break
        chosen.append(part)
    if sum(len(p.split()) for p in chosen) + 3 <= budget:
        chosen.append("Thanks for watching.")
    query = " ".join(f.keywords[:4]) or f.mention
    tags = [w for w in f.keywords if re.fullmatch(r"[a-z][a-z0-9]{2,}", w)][:5]
    return VideoScript(
        title=f.title[:100],
        hook=intro,
        script=" ".join(chosen),
        scenes=[Scene(narration=p, visual=query) for p in chosen],
        hashtags=[*dict.fromkeys([*tags, "explainer"])],
        description=f"{intro} {TEMPLATE_NOTE}",
    )


SCRIPT_SYSTEM = ("You write scripts for short narrated explainer videos. Plain spoken language, no Markdown, no emoji, "
                 "no stage directions in the narration. Reply with one JSON object only.")


def _as_script(data: dict[str, Any], topic: str) -> VideoScript:
    """The model's script, with what it left out filled in (a script without scenes is split into sentences)."""
    from pipeline.common.llmcall import SoftMiss

    def text(v: Any) -> str:
        return " ".join(str(v).split()) if isinstance(v, str | int | float) and not isinstance(v, bool) else ""

    script = text(data.get("script"))
    scenes = []
    for sc in data.get("scenes") if isinstance(data.get("scenes"), list) else []:
        narration = text(sc.get("narration") or sc.get("text")) if isinstance(sc, dict) else text(sc)
        if narration:
            scenes.append(Scene(narration=narration, visual=text(sc.get("visual")) if isinstance(sc, dict) else ""))
    if not script and not scenes:
        raise ValueError("script and scenes are empty: write the narration of the video")
    adjusted: list[str] = []
    if not scenes:
        scenes = [Scene(narration=s, visual=topic) for s in _sentences(script)] or [Scene(narration=script)]
        adjusted.append("no scenes: split the script into sentences")
    if not script:
        script = " ".join(sc.narration for sc in scenes)
        adjusted.append("no script: joined the scenes' narration")
    title = text(data.get("title"))
    if not title:
        title = topic[:90]
        adjusted.append("no title: used the topic")
    tags = data.get("hashtags") if isinstance(data.get("hashtags"), list) else []
    value = VideoScript(title=title, hook=text(data.get("hook")) or scenes[0].narration, script=script,
                        scenes=scenes, hashtags=[text(t) for t in tags if text(t)],
                        description=text(data.get("description")))
    if adjusted:
        raise SoftMiss("; ".join(adjusted), value, adjusted)
    return value


def llm_script(topic: str, style: str, target_s: float, config: Any, home: Any = None
               ) -> tuple[VideoScript, dict[str, int], list[str]]:
    """Ask the model for a script in the schema through the shared JSON caller (the capability ladder,
    re-asks with the errors, repairs). Returns the script, the usage and what was adjusted."""
    from pipeline.common import llm
    from pipeline.common.llmcall import JSONCaller

    words = int(target_s * WORDS_PER_S)
    prompt = (f"Topic: {topic}\nStyle: {style or 'clear and friendly'}\n"
              f"Length: about {target_s:.0f} seconds ({words} words).\n"
              "Give a title (under 90 characters), a one-sentence hook, the full script, "
              "the script split into scenes (narration + a short visual description), "
              "3 to 8 hashtags and a description of 2 or 3 sentences.")
    call = JSONCaller(config, llm.make_client(config), schema=SCHEMA, name="video_script", system=SCRIPT_SYSTEM,
                      home=home, max_tokens=max(1500, words * 4))
    answer = call.ask(prompt, lambda d: _as_script(d, topic))
    return answer.value, {"input_tokens": call.input_tokens, "output_tokens": call.output_tokens}, answer.adjustments


LLM_ADDS = ("An LLM (an API key, or any OpenAI-compatible server such as llama.cpp or Ollama, set on the Settings "
            "page) writes each script for its topic, in the style and length asked: the explanation itself, a hook, "
            "a picture description per scene (what stock media is searched for), a title, hashtags and a "
            "description, checked against a schema and asked again when it does not fit.")


def script_notice(home: Any, settings: Any, options: dict[str, Any] | None = None) -> tuple[bool, str]:
    """(template?, what the Generate page says) for a batch with these options here now, decided as
    :func:`run_script` decides it: a template video must never pass for an explained one. The LLM is
    named by model and server (host and path: a URL may carry user:password or a ?key=), never the key."""
    from pipeline.config.secrets import llm_config_for
    from pipeline.recipes.generate.options import GenerateOptions

    opts = GenerateOptions.parse(options or {})
    config = llm_config_for(home, settings=settings, options=opts.llm_options())
    why = "script_engine=offline" if opts.script_engine == "offline" else (
        None if config.configured() else "no LLM is set: no API key and no server")
    if why:
        return True, (f"Scripts: offline template ({why}). Each video says its topic, says that its narration is "
                      f"a template written without a language model, and lists what a good explanation covers; it "
                      f"states no facts. {LLM_ADDS}")
    u = urlsplit(config.base_url or "")
    server = f"{u.scheme}://{u.hostname or ''}{f':{u.port}' if u.port else ''}{u.path}" if u.scheme else "OpenAI"
    return False, (f"Scripts: written by the LLM ({config.model} at {server}), schema-checked; a script the model "
                   "cannot get right falls back to the template and is flagged `script-fallback`.")


def run_script(item: dict[str, Any], ctx: StageContext) -> StageResult:
    from pipeline.config.secrets import llm_config_for

    out = ctx.path(SCRIPT)
    if out.exists():
        return StageResult(artifacts={"script": str(out)})
    opts = options_of(ctx).for_item(item)
    topic, style, target = item["source"], opts.style, opts.length_s
    config = llm_config_for(ctx.home, settings=ctx.settings, options=opts.llm_options())
    usage = {"input_tokens": 0, "output_tokens": 0}
    adjusted: list[str] = []
    reason = None
    flags = [f for f in item.get("flags") or [] if f not in ("script-repaired", "script-fallback")]
    if opts.script_engine != "offline" and config.configured():
        try:
            script, usage, adjusted = llm_script(topic, style, target, config, home=ctx.home)
            engine = "llm"
        except errors.Cancelled:
            raise
        except (errors.NetworkError, errors.RateLimited) as exc:
            if ctx.attempt <= 2:
                raise
            script, engine, reason = offline_script(topic, style, target), "template", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - the template keeps the video; the reason is recorded
            script, engine, reason = offline_script(topic, style, target), "template", f"{type(exc).__name__}: {exc}"
        if reason:
            flags.append("script-fallback")
        elif adjusted:
            flags.append("script-repaired")
    else:
        script, engine = offline_script(topic, style, target), "template"
    doc = script.model_dump()
    for sc in doc["scenes"]:
        sc["narration"] = clean_for_speech(sc["narration"])
    doc["scenes"] = [sc for sc in doc["scenes"] if sc["narration"]]
    if not doc["scenes"]:
        raise errors.PermanentError("the script has no speakable narration")
    doc.update(script_engine=engine, usage=usage, adjustments=adjusted, fallback_reason=reason)
    atomic_write_bytes(out, json.dumps(doc, ensure_ascii=False, indent=1).encode())
    meta: dict[str, Any] = {"title": doc["title"][:100], "script_engine": engine, "flags": sorted(set(flags))}
    if reason:
        meta["script_fallback"] = reason[:300]
    if adjusted:
        meta["script_adjustments"] = adjusted
    return StageResult(artifacts={"script": str(out)}, meta=meta)


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
    opts = options_of(ctx).for_item(item)
    script = json.loads(ctx.path(SCRIPT).read_text(encoding="utf-8"))
    w, h = opts.size or SIZES[opts.aspect]  # a size: quick drafts and tests; the aspect's full size otherwise
    scenes = plan_scenes(script["scenes"], opts.length_s, opts.pace)
    plan = {"title": script["title"], "aspect": opts.aspect, "width": w, "height": h, "fps": 30,
            "theme": opts.theme, "background_dir": opts.background_dir, "voice": opts.voice, "rate": opts.rate,
            "pace": opts.pace, "scenes": scenes}
    atomic_write_bytes(out, json.dumps(plan, ensure_ascii=False, indent=1).encode())
    return StageResult(artifacts={"plan": str(out)}, meta={"scenes": len(scenes)})


def run_metadata(item: dict[str, Any], ctx: StageContext) -> StageResult:
    """metadata.json within YouTube's limits; with stock media, the credits its licences ask for go into the
    description first (and all of them into credits.txt). Unreadable credits are flagged, never fatal."""
    from pipeline.recipes.generate import outputs
    from pipeline.recipes.generate.youtube import fit_tags

    out = ctx.path(METADATA)
    if out.exists():
        return StageResult(artifacts={"metadata": str(out)})
    script = json.loads(ctx.path(SCRIPT).read_text(encoding="utf-8"))
    title = clean_for_speech(script["title"])[:100].rstrip() or item["source"][:100]
    hashtags = ["#" + h for h in script.get("hashtags", [])][:15]
    body = (script.get("description") or script.get("hook") or "").strip()
    flags = [f for f in item.get("flags") or [] if f not in ("credits-failed", "credits-truncated")]
    result: dict[str, Any] = {}
    artifacts = {"metadata": str(out)}
    try:
        credits = outputs.credits_of(outputs.read_visuals(ctx.path(outputs.VISUALS)))
    except (OSError, ValueError) as exc:
        credits = []
        flags.append("credits-failed")
        result["credits_error"] = f"{type(exc).__name__}: {exc}"[:300]
    description, left_out = outputs.fit_description(body, hashtags, credits)
    if credits:
        atomic_write_bytes(ctx.path(outputs.CREDITS), outputs.credits_text(credits).encode())
        artifacts["credits"] = str(ctx.path(outputs.CREDITS))
        result["credits"] = sum(1 for c in credits if c["required"])
    if left_out:
        flags.append("credits-truncated")
        result["credits_left_out"] = left_out
    opts = options_of(ctx).for_item(item)
    publish_at = opts.publish_at
    privacy = "private" if publish_at else opts.privacy or "private"  # YouTube publishes scheduled videos from private
    meta = {"title": title, "description": description, "tags": fit_tags(script.get("hashtags", [])),
            "hashtags": hashtags, "category_id": opts.category_id, "privacy": privacy, "publish_at": publish_at,
            "credits": credits}
    atomic_write_bytes(out, json.dumps(meta, ensure_ascii=False, indent=1).encode())
    if flags != list(item.get("flags") or []):
        result["flags"] = sorted(set(flags))
    return StageResult(artifacts=artifacts, meta={"title": title, **result})


register(Stage("script", run_script, resource="llm", doc="LLM script (schema-checked) or offline template"))
register(Stage("plan", run_plan, resource="cpu", doc="scenes from speaking pace"))
register(Stage("metadata", run_metadata, resource="cpu", doc="YouTube title/description/tags within limits"))
