"""The hallucination guard: find the segments Whisper made up, re-decode just those windows, keep the better text.

Whisper's failure modes on long audio are text repeated over and over, an n-gram looping inside one segment,
stock phrases ("thanks for watching", "♪") over silence or noise, and made-up words on audio that is not
speech in its language. Each leaves a trace a cheap check sees: the same text again within seconds, a zlib
compression ratio over 2.4 (Whisper's own measure), a low log-probability (of the segment's own words
when it has word times), or a segment in a span the Silero VAD calls silence. :func:`detect` returns one
:class:`Finding` per suspect segment; :func:`repair` cuts each suspect window out of the audio, decodes it
again without the previous text as prompt (what feeds a loop), with temperature fallback and a stricter
VAD, and keeps whichever text scores better on the same checks. Nothing here writes a file: the stage does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.recipes.transcribe.quality_text import compression_ratio, loop_in, normalize, stock_phrase

SR = 16000  # Whisper's sampling rate: faster-whisper decodes every file to 16 kHz mono
COMPRESSION_MAX = 2.4  # Whisper's compression_ratio_threshold: above it, the text repeats itself
LOGPROB_MIN = -1.0  # Whisper's log_prob_threshold: below it, the decoder was guessing
SPEECH_MIN = 0.15  # a segment whose span is under this share of VAD speech was written over silence
PHRASE_QUIET = 0.5  # a stock phrase is suspect when under half its span is speech
NO_SPEECH_QUIET = 0.4  # without audio: Whisper's own no-speech probability stands in for the VAD
REPEAT_WINDOW_S = 30.0
REPEAT_WINDOW_N = 8
MARGIN_S = 1.0  # audio kept each side of a suspect window, never into a neighbour's segment
MAX_WINDOWS = 40  # re-decodes per item; the rest stay flagged (a file that is all junk is not re-run whole)
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
DETECT_VAD = {"threshold": 0.5, "min_silence_duration_ms": 500, "speech_pad_ms": 200}
REPAIR_VAD = {"threshold": 0.6, "min_speech_duration_ms": 250, "min_silence_duration_ms": 500, "speech_pad_ms": 200}
REASONS = ("repeat", "loop", "compression", "logprob", "silence", "phrase")
JUNK = frozenset(REASONS) - {"logprob"}  # reasons that say the text is not speech: an empty re-decode wins
@dataclass(frozen=True)
class Finding:
    """One suspect segment: its index in the transcript, why, and the scores that said so."""

    index: int
    reasons: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "reasons": list(self.reasons), "scores": dict(self.scores)}


Speech = Sequence[tuple[float, float]]  # VAD speech spans in seconds, sorted


def speech_share(start: float, end: float, speech: Speech) -> float:
    """How much of [start, end] the VAD calls speech (0..1); a zero-length segment counts at its instant."""
    if end <= start:
        return 1.0 if any(a <= start <= b for a, b in speech) else 0.0
    covered = sum(max(0.0, min(end, b) - max(start, a)) for a, b in speech)
    return min(1.0, covered / (end - start))


def detect(segments: Sequence[dict[str, Any]], speech: Speech | None = None) -> list[Finding]:
    """Every suspect segment of a transcript, in order. ``speech`` (VAD spans) enables the silence checks;
    without it a stock phrase is suspect when Whisper itself thought the span had no speech."""
    norms = [normalize(s.get("text", "")) for s in segments]
    out: list[Finding] = []
    for i, seg in enumerate(segments):
        raw, norm = str(seg.get("text", "")), norms[i]
        if not raw.strip():
            continue
        reasons: list[str] = []
        scores: dict[str, float] = {}
        start, end = float(seg.get("start", 0.0)), float(seg.get("end", 0.0))
        near = [j for j in range(max(0, i - REPEAT_WINDOW_N), min(len(segments), i + REPEAT_WINDOW_N + 1))
                if j != i and norms[j] == norm and abs(float(segments[j].get("start", 0.0)) - start) <= REPEAT_WINDOW_S]
        if norm and any(j < i for j in near) and (len(norm.split()) >= 3 or len(near) >= 2):
            reasons.append("repeat")
            scores["repeats"] = len(near) + 1
        loop = loop_in(raw)
        if loop:
            reasons.append("loop")
            scores["loop_n"], scores["loop_times"] = loop
        ratio = compression_ratio(raw)
        scores["compression_ratio"] = round(ratio, 3)
        if ratio > COMPRESSION_MAX:
            reasons.append("compression")
        logprob = segment_logprob(seg)
        if logprob is not None:
            scores["avg_logprob"] = float(logprob)
            if logprob < LOGPROB_MIN:
                reasons.append("logprob")
        no_speech = seg.get("no_speech_prob")
        if isinstance(no_speech, int | float):
            scores["no_speech_prob"] = float(no_speech)
        if speech is not None:
            share = speech_share(start, end, speech)
            scores["speech"] = round(share, 3)
            if share < SPEECH_MIN:
                reasons.append("silence")
            quiet = share < PHRASE_QUIET
        else:
            quiet = isinstance(no_speech, int | float) and no_speech >= NO_SPEECH_QUIET
        if quiet and stock_phrase(raw, norm):
            reasons.append("phrase")
        if reasons:
            out.append(Finding(i, tuple(reasons), scores))
    return out


# ---------------------------------------------------------------- audio, VAD and decoding
def load_audio(path: str | Path) -> Any:
    """The file as 16 kHz mono float32 samples (faster-whisper's own decoder), for Whisper, the VAD and repair."""
    from faster_whisper.audio import decode_audio

    return decode_audio(str(path), sampling_rate=SR)


def speech_spans(audio: Any, options: dict[str, Any] | None = None) -> list[tuple[float, float]]:
    """The VAD's speech spans in seconds (Silero, shipped inside faster-whisper; ~0.3 s per 2 min on a CPU)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if len(audio) == 0:
        return []
    spans = get_speech_timestamps(audio, VadOptions(**(options or DETECT_VAD)))
    return [(s["start"] / SR, s["end"] / SR) for s in spans]


def segment_entry(seg: Any, offset: float = 0.0, words: bool = False) -> dict[str, Any]:
    """A faster-whisper ``Segment`` as a transcript entry, times shifted by ``offset`` (a cut window's start),
    with the scores the guard reads later (the names Whisper's own JSON output uses)."""
    entry: dict[str, Any] = {"start": round(seg.start + offset, 3), "end": round(seg.end + offset, 3),
                             "text": seg.text.strip(), "avg_logprob": round(float(seg.avg_logprob), 3),
                             "no_speech_prob": round(float(seg.no_speech_prob), 3),
                             "compression_ratio": round(float(seg.compression_ratio), 3)}
    if words and seg.words:
        entry["words"] = [{"start": round(w.start + offset, 3), "end": round(w.end + offset, 3), "word": w.word,
                           "probability": round(w.probability, 3)} for w in seg.words]
    return entry


def decode_window(model: Any, audio: Any, start: float, end: float, *, language: str | None = None,
                  task: str = "transcribe", beam_size: int = 5, word_timestamps: bool = False) -> list[dict[str, Any]]:
    """Decode ``audio[start:end]`` afresh: no previous text as prompt (what keeps a loop going), the whole
    temperature ladder, a stricter VAD. Entries come back on the file's timeline, clamped to the window."""
    clip = audio[int(start * SR):int(end * SR)]
    segments, _info = model.transcribe(
        clip, language=language, task=task, beam_size=beam_size, temperature=list(TEMPERATURES),
        condition_on_previous_text=False, compression_ratio_threshold=COMPRESSION_MAX,
        log_prob_threshold=LOGPROB_MIN, no_speech_threshold=0.6, vad_filter=True, vad_parameters=REPAIR_VAD,
        word_timestamps=word_timestamps)
    out = []
    for seg in segments:
        entry = segment_entry(seg, start, word_timestamps)
        entry["start"], entry["end"] = max(start, entry["start"]), min(end, entry["end"])
        if entry["text"]:
            out.append(entry)
    return out


# ---------------------------------------------------------------- repair
@dataclass(frozen=True)
class Window:
    """Suspect segments ``first..last`` (indexes) and the audio span cut for them."""

    first: int
    last: int
    start: float
    end: float


def windows(segments: Sequence[dict[str, Any]], findings: Sequence[Finding], duration: float,
            margin: float = MARGIN_S) -> list[Window]:
    """Adjacent suspect segments make one window; its cut reaches ``margin`` beyond them, never into the
    neighbouring good segments (their words would come back twice)."""
    flagged = sorted({f.index for f in findings})
    groups: list[list[int]] = []
    for i in flagged:
        if groups and i == groups[-1][-1] + 1:
            groups[-1].append(i)
        else:
            groups.append([i])
    out = []
    for g in groups:
        first, last = g[0], g[-1]
        lo = float(segments[first - 1]["end"]) if first > 0 else 0.0
        hi = float(segments[last + 1]["start"]) if last + 1 < len(segments) else (duration or float("inf"))
        start = max(lo, float(segments[first]["start"]) - margin, 0.0)
        end = min(hi, float(segments[last]["end"]) + margin)
        if duration:
            end = min(end, duration)
        out.append(Window(first, last, start, max(start, end)))
    return out


def segment_logprob(seg: dict[str, Any]) -> float | None:
    """The segment's own log-probability: the mean log of its words' probabilities when it has words, else
    ``avg_logprob``. faster-whisper's ``avg_logprob`` is one figure for the whole 30-s window it decoded, so
    a sentence of junk between two clear ones shares their score; its words' probabilities do not."""
    words = [w.get("probability") for w in seg.get("words") or ()]
    if words and all(isinstance(p, int | float) for p in words):
        return round(sum(math.log(max(float(p), 1e-6)) for p in words) / len(words), 3)
    value = seg.get("avg_logprob")
    return float(value) if isinstance(value, int | float) else None


def _logprob(segments: Sequence[dict[str, Any]]) -> float:
    """Mean log-probability weighted by text length (a segment without one counts at the threshold)."""
    weights = [max(1, len(s.get("text", ""))) for s in segments]
    values = [LOGPROB_MIN if (v := segment_logprob(s)) is None else v for s in segments]
    return sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights) if segments else 0.0


def _badness(found: Sequence[Finding], segments: Sequence[dict[str, Any]]) -> tuple[int, int, float]:
    return sum(1 for f in found if set(f.reasons) & JUNK), len(found), -_logprob(segments)


def suspects(candidate: Sequence[dict[str, Any]], before: Sequence[dict[str, Any]],
             after: Sequence[dict[str, Any]], speech: Speech | None) -> list[Finding]:
    """The findings inside ``candidate`` when it stands between its neighbours (a repeat needs them)."""
    context = [*before, *candidate, *after]
    lo, hi = len(before), len(before) + len(candidate)
    return [f for f in detect(context, speech) if lo <= f.index < hi]


def choose(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]], before: Sequence[dict[str, Any]],
           after: Sequence[dict[str, Any]], speech: Speech | None, silent: bool = False) -> str:
    """Which text a window keeps: "replaced" (the new decode), "dropped" (nothing: junk on silence) or "kept".

    Fewer junk segments (a repeat, a loop, a stock phrase, text on silence) wins, then fewer suspect ones
    (a low probability alone), then the higher log-probability; a tie keeps the old text. An empty
    re-decode wins only when the window is silence or the old text was junk (a repeat, a loop, a stock
    phrase), never over text whose only fault is a low probability: real but unclear speech stays.
    """
    old_found = suspects(old, before, after, speech)
    if not new:
        junk = any(set(f.reasons) & JUNK for f in old_found)
        return "dropped" if (silent or junk) and old_found else "kept"
    new_found = suspects(new, before, after, speech)
    if _badness(new_found, new) < _badness(old_found, old):
        return "replaced"
    return "kept"


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    """Reason -> how many segments carry it."""
    return dict(sorted(Counter(r for f in findings for r in f.reasons).items()))


def trusted_speech(segments: Sequence[dict[str, Any]], audio: Any,
                   spans: Speech | None = None) -> list[tuple[float, float]] | None:
    """The VAD's speech spans (``spans`` when the caller has them), or None where the VAD is blind to this
    file (music, odd audio): it hears almost nothing under half a minute or more of text. Then no silence
    check runs and nothing is dropped for being silence: lyrics are not junk because Silero hears no voice."""
    spans = list(speech_spans(audio) if spans is None else spans)
    text_s = sum(max(0.0, float(s["end"]) - float(s["start"])) for s in segments if s.get("text", "").strip())
    heard = sum(b - a for a, b in spans)
    return None if text_s >= 30.0 and heard < 0.05 * text_s else spans


def repair(transcript: dict[str, Any], audio: Any, model: Any, findings: Sequence[Finding] | None = None,
           speech: Speech | None = None, *, vad: bool = True, language: str | None = None,
           task: str = "transcribe", beam_size: int = 5, word_timestamps: bool = False,
           max_windows: int = MAX_WINDOWS,
           cancelled: Callable[[], bool] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Re-decode the suspect windows of ``transcript`` and keep the better text of each.

    ``speech`` (VAD spans) is computed from ``audio`` when not given, unless ``vad`` is False (then no
    silence check runs and no window is dropped as silence). Returns the repaired transcript (a new
    dict; the old one is untouched) and a report: ``found`` (suspect segments before), ``repaired`` (of
    those, how many were replaced or dropped), ``flagged`` (suspect segments after), ``reasons`` (reason ->
    segments, before), ``windows`` (each re-decoded span: its outcome, old and new text, cut short) and
    ``still`` (the suspects left, up to 20).
    """
    segments = list(transcript.get("segments") or [])
    duration = float(transcript.get("duration") or len(audio) / SR)
    if vad and speech is None:
        speech = trusted_speech(segments, audio)
    findings = detect(segments, speech) if findings is None else list(findings)
    language = language or transcript.get("language") or None
    done: list[dict[str, Any]] = []
    replacement: dict[int, tuple[Window, list[dict[str, Any]]]] = {}
    for w in windows(segments, findings, duration)[:max_windows]:
        if cancelled is not None and cancelled():
            raise errors.Cancelled("transcription cancelled")
        old = segments[w.first:w.last + 1]
        before, after = segments[max(0, w.first - REPEAT_WINDOW_N):w.first], segments[w.last + 1:w.last + 1 + 4]
        cut = audio[int(w.start * SR):int(w.end * SR)]
        silent = speech is not None and not speech_spans(cut, REPAIR_VAD)
        new = [] if silent else decode_window(model, audio, w.start, w.end, language=language, task=task,
                                              beam_size=beam_size, word_timestamps=word_timestamps)
        outcome = choose(old, new, before, after, speech, silent)
        if outcome != "kept":
            replacement[w.first] = (w, new if outcome == "replaced" else [])
        done.append({"start": round(w.start, 3), "end": round(w.end, 3), "segments": len(old), "outcome": outcome,
                     "reasons": sorted({r for f in findings if w.first <= f.index <= w.last for r in f.reasons}),
                     "old": " ".join(s["text"] for s in old)[:120], "new": " ".join(s["text"] for s in new)[:120]})
    repaired: list[dict[str, Any]] = []
    i = 0
    while i < len(segments):
        if i in replacement:
            w, new = replacement[i]
            repaired.extend(new)
            i = w.last + 1
        else:
            repaired.append(segments[i])
            i += 1
    fixed = {f.index for f in findings if any(w.first <= f.index <= w.last for w, _ in replacement.values())}
    after_findings = detect(repaired, speech)
    report = {"found": len(findings), "repaired": len(fixed), "flagged": len(after_findings),
              "reasons": summary(findings), "windows": done,
              "still": [f.as_dict() for f in after_findings[:20]]}
    return {**transcript, "segments": repaired}, report


def still_spans(segments: Sequence[dict[str, Any]], still: Sequence[dict[str, Any]],
                n: int = 10) -> list[dict[str, Any]]:
    """The report's ``still`` findings as times and text (indices mean nothing outside this transcript)."""
    return [{"start": round(float(seg.get("start", 0.0)), 2), "end": round(float(seg.get("end", 0.0)), 2),
             "reasons": list(f["reasons"]), "text": str(seg.get("text", ""))[:120]}
            for f in still[:n] if 0 <= f["index"] < len(segments) and (seg := segments[f["index"]])]


def report_only(findings: Sequence[Finding]) -> dict[str, Any]:
    """The report of a transcript that was checked but not repaired (``--no-repair``, or repair failed)."""
    return {"found": len(findings), "repaired": 0, "flagged": len(findings), "reasons": summary(findings),
            "windows": [], "still": [f.as_dict() for f in findings[:20]]}
