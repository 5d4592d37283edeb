"""Transcribe recipe figures, each measured side by side in one run.

    python bench/transcribe.py [--items 8] [--long-seconds 180]

1. stage_vs_raw_ratio: our transcribe stage ÷ raw faster-whisper on the same file, same
   loaded model, same settings (beam 5, VAD on), median of 3 alternating runs.
2. makespan_vs_bottleneck: a batch of N items served over loopback HTTP, downloads and
   transcription overlapping: wall time ÷ the busiest pool's busy time (its stage-seconds
   ÷ its size); also wall ÷ the sequential sum of every stage.
3. captions_vs_whisper: a long captioned page through the captions path ÷ the same item
   through download + Whisper (--captions never).

Speech is made with espeak-ng, served by the test suite's loopback media server.
The last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config.settings import Settings  # noqa: E402
from pipeline.engine.core import Engine  # noqa: E402
from pipeline.engine.ratelimit import PacingSettings  # noqa: E402
from pipeline.engine.stage import StageContext  # noqa: E402
from pipeline.recipes.transcribe.sources import expand  # noqa: E402
from pipeline.recipes.transcribe.stages.transcribe import get_model  # noqa: E402
from pipeline.recipes.transcribe.stages.transcribe import run as transcribe_stage
from tests.media import SPEECH, make_speech, make_vtt, media_duration  # noqa: E402
from tests.media_server import MediaServer, html_page  # noqa: E402

NO_PACING = PacingSettings(anon_delay_min_s=0, anon_delay_max_s=0)  # loopback downloads: nothing to pace


def long_text(seconds: float) -> str:
    """Enough distinct sentences for about ``seconds`` of espeak speech (≈ 2.7 words/s)."""
    words_needed = int(seconds * 2.7)
    out, i = [], 0
    while sum(len(s.split()) for s in out) < words_needed:
        out.append(SPEECH[i % len(SPEECH)])
        i += 1
    return " ".join(out)


def bench_stage_vs_raw(audio: Path, work: Path) -> dict[str, float]:
    loaded = get_model("tiny.en", "auto", 1)
    model = loaded.model

    def raw() -> float:
        t0 = time.perf_counter()
        segments, _info = model.transcribe(str(audio), beam_size=5, vad_filter=True, word_timestamps=True)
        for _ in segments:
            pass
        return time.perf_counter() - t0

    def ours(k: int) -> float:
        wd = work / f"stage-{k}"
        wd.mkdir(parents=True, exist_ok=True)
        ctx = StageContext(batch_id="b", batch_name="bench", item_n=1, stage="transcribe", workdir=wd,
                           options={"model": "tiny.en"}, attempt=1, account=None, _progress=lambda f: None,
                           _cancelled=lambda: False, home=work, pool_size=1)
        t0 = time.perf_counter()
        transcribe_stage({"n": 1, "source": str(audio), "artifacts": {"audio": str(audio)}}, ctx)
        return time.perf_counter() - t0

    raw()  # warm-up: first call pays one-off allocations
    raws, stages = [], []
    for k in range(3):
        raws.append(raw())
        stages.append(ours(k))
    r, s = statistics.median(raws), statistics.median(stages)
    return {"raw_s": r, "stage_s": s, "ratio": s / r}


def run_batch(home: Path, name: str, text: str, settings: Settings, **options: object) -> tuple[float, list[dict]]:
    engine = Engine(home, settings=settings)
    engine.start()
    try:
        x = expand(text)
        t0 = time.perf_counter()
        engine.submit(name, [e.to_item() for e in x.entries], recipe="transcribe", options=options)
        s = engine.wait(name, timeout=1800)
        wall = time.perf_counter() - t0
        assert s.counts["done"] == s.total, s.counts
        return wall, engine.items(name)
    finally:
        engine.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--long-seconds", type=float, default=180.0)
    ap.add_argument("--item-seconds", type=float, default=60.0)
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="tubemill-bench-") as tmp, MediaServer() as srv:
        tmpd = Path(tmp)
        media = tmpd / "media"
        media.mkdir()
        # 1. stage vs raw on one ~45 s clip
        clip = make_speech(long_text(45), media / "clip.wav")
        clip_s = media_duration(clip)
        one = bench_stage_vs_raw(clip, tmpd / "stagework")

        # 2. a batch of N distinct items over HTTP
        urls = []
        for i in range(args.items):
            text = " ".join(SPEECH[(i + k) % len(SPEECH)] for k in range(max(1, int(args.item_seconds / 8))))
            f = make_speech(text, media / f"item-{i:02d}.mp3")
            srv.add_file(f"/media/{f.name}", f)
            urls.append(srv.url(f"/media/{f.name}"))
        pools = {"net": 4, "cpu": cpus, "gpu": 0, "llm": 2}
        # This measures overlap of downloads with transcription, not account pacing: pacing off.
        settings = Settings(pools=pools, pacing=NO_PACING)
        wall, items = run_batch(tmpd / "home-batch", "batch", "\n".join(urls), settings, captions="never")
        busy: dict[str, float] = {}
        stage_pool = {"captions": "net", "download": "net", "transcribe": "cpu", "summarize": "llm", "translate": "llm",
                      "export": "cpu"}
        for it in items:
            for st, secs in it["timings"].items():
                busy[stage_pool[st]] = busy.get(stage_pool[st], 0.0) + secs
        per_pool = {p: busy[p] / pools[p] for p in busy}
        bottleneck = max(per_pool, key=lambda p: per_pool[p])
        sequential = sum(busy.values())

        # 3. captions vs whisper on one long captioned page
        long_text_ = long_text(args.long_seconds)
        long_mp4 = make_speech(long_text_, media / "lecture.mp4")
        long_vtt = make_vtt(long_text_, media / "lecture.vtt", media_duration(long_mp4))
        srv.add_file("/media/lecture.mp4", long_mp4)
        srv.add_file("/captions/lecture.vtt", long_vtt)
        srv.add_text("/lecture.html", html_page("A long lecture", (
            '<video controls><source src="/media/lecture.mp4" type="video/mp4">'
            '<track kind="subtitles" srclang="en" src="/captions/lecture.vtt" default></video>')))
        page = srv.url("/lecture.html")
        settings1 = Settings(pools={"net": 2, "cpu": cpus, "gpu": 0, "llm": 1}, pacing=NO_PACING)
        _, cap_items = run_batch(tmpd / "home-captions", "captions", page, settings1)
        _, wh_items = run_batch(tmpd / "home-whisper", "whisper", page, settings1, captions="never")
        path_stages = ("captions", "download", "transcribe")
        cap_s = sum(cap_items[0]["timings"].get(s, 0) for s in path_stages)
        wh_s = sum(wh_items[0]["timings"].get(s, 0) for s in path_stages)
        assert cap_items[0]["meta"]["transcript_source"] == "captions"

    result = {
        "stage_vs_raw_ratio": round(one["ratio"], 3),
        "stage_s": round(one["stage_s"], 3),
        "raw_faster_whisper_s": round(one["raw_s"], 3),
        "clip_s": round(clip_s, 1),
        "items": args.items,
        "batch_wall_s": round(wall, 2),
        "busiest_pool": bottleneck,
        "busiest_pool_busy_s": round(per_pool[bottleneck], 2),
        "makespan_vs_bottleneck": round(wall / per_pool[bottleneck], 3),
        "makespan_vs_sequential": round(wall / sequential, 3),
        "sequential_sum_s": round(sequential, 2),
        "pool_busy_s": {p: round(v, 2) for p, v in per_pool.items()},
        "captions_path_s": round(cap_s, 3),
        "whisper_path_s": round(wh_s, 3),
        "captions_vs_whisper": round(cap_s / wh_s, 4),
        "long_item_s": args.long_seconds,
        "cpus": cpus,
    }
    print(f"transcribe stage vs raw faster-whisper on a {result['clip_s']} s clip: {result['stage_s']} s vs "
          f"{result['raw_faster_whisper_s']} s = {result['stage_vs_raw_ratio']}x")
    print(f"batch of {args.items} items over HTTP: wall {result['batch_wall_s']} s; busiest pool {bottleneck} "
          f"busy {result['busiest_pool_busy_s']} s per worker -> makespan/bottleneck "
          f"{result['makespan_vs_bottleneck']}; "
          f"makespan/sequential {result['makespan_vs_sequential']} (sequential sum {result['sequential_sum_s']} s)")
    print(f"captions path {result['captions_path_s']} s vs Whisper path {result['whisper_path_s']} s on a "
          f"{args.long_seconds:.0f} s lecture = {result['captions_vs_whisper']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
