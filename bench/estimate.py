"""Estimate vs measured: two transcribe batches over loopback, the first on a fresh home, the second after it.

    python bench/estimate.py

Media is espeak-ng speech (``tests.media``) plus longer clips joined from its sentences,
served on 127.0.0.1 by ``tests.media_server.MediaServer`` (feeds, pages, direct files). For
each batch the sources are listed with real yt-dlp, the estimate is the one ``tubemill run
--dry-run --json`` prints (``pipeline.cli.preview.batch_estimate``: the recipe's stage costs,
this home's measured rates once it has some, the engine's pool sizes), and the batch then
runs through the real engine on the home's own settings (bundled tiny.en, offline
summarizer, default pools and pacing) from submit to done.

1. fresh: a podcast feed (3 episodes), a captioned page and two long direct files;
2. warm, on the same home: a page with two media, three other long direct files.

Targets: estimate ÷ measured within 2× on the fresh home, within 1.5× on the warm one.
The last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.cli.preview import batch_estimate  # noqa: E402
from pipeline.config.settings import load_settings  # noqa: E402
from pipeline.engine.core import Engine  # noqa: E402
from pipeline.recipes.transcribe.sources import expand  # noqa: E402
from pipeline.recipes.transcribe.ytdlp import listing_options  # noqa: E402
from tests.media import SPEECH, build_media, espeak_exe, ffmpeg_exe  # noqa: E402
from tests.media_server import MediaServer, install_default_routes  # noqa: E402

LONG = {"lecture-one.mp3": 3, "lecture-two.mp3": 5, "lecture-three.mp3": 2, "lecture-four.mp3": 4,
        "lecture-five.mp3": 6}  # name -> how many times the four sentences are spoken (≈ 33 s each time)


def long_clip(folder: Path, name: str, rounds: int) -> Path:
    out = folder / name
    if not out.exists():
        wav = folder / (name + ".wav")
        subprocess.run([espeak_exe(), "-w", str(wav), " ".join(SPEECH * rounds)], check=True, timeout=120)
        subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(wav), "-ac", "1", "-b:a", "64k",
                        str(out)], check=True, timeout=120)
        wav.unlink()
    return out


def run_batch(home: Path, name: str, text: str) -> dict[str, float]:
    settings = load_settings(home)
    x = expand(text, ydl_opts=listing_options(settings.ytdlp), probe=True)  # as run --dry-run lists
    sources = [e.to_item() for e in x.entries]
    est = batch_estimate(home, "transcribe", sources, settings)
    with Engine(home, settings=settings) as engine:
        t0 = time.perf_counter()
        bid = engine.submit(name, sources, recipe="transcribe")
        s = engine.wait(bid, timeout=1800)
        wall = time.perf_counter() - t0
    figures = {"items": len(sources), "estimate_s": round(est.seconds, 2), "measured_s": round(wall, 2),
               "estimate_vs_measured": round(est.seconds / wall, 3) if wall else None,
               "done": s.counts.get("done", 0), "bottleneck": est.bottleneck,
               "media_s": round(sum(float(it.get("duration") or 0) for it in sources), 1)}
    print(f"{name}: {figures['items']} items, estimate {est.seconds:.1f} s, measured {wall:.1f} s "
          f"-> {figures['estimate_vs_measured']} (bottleneck by the estimate: {est.bottleneck})", flush=True)
    return figures


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tubemill-bench-estimate-") as tmp:
        media_dir = Path(tmp) / "media"
        media_dir.mkdir()
        files = build_media(media_dir)
        with MediaServer() as server:
            install_default_routes(server, files)
            for name, rounds in LONG.items():
                server.add_file(f"/long/{name}", long_clip(media_dir, name, rounds))
            home = Path(tmp) / "home"
            fresh = run_batch(home, "fresh", "\n".join([
                server.url("/feed.xml"), server.url("/captioned.html"),
                server.url("/long/lecture-one.mp3"), server.url("/long/lecture-two.mp3")]))
            warm = run_batch(home, "warm", "\n".join([
                server.url("/page.html"), server.url("/long/lecture-three.mp3"),
                server.url("/long/lecture-four.mp3"), server.url("/long/lecture-five.mp3")]))
    print(json.dumps({"fresh": fresh, "warm": warm, "targets": {"fresh": 2.0, "warm": 1.5},
                      "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
