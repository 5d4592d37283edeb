"""The plan simulator: the users' pacing arithmetic, the bottleneck switch, and a real batch predicted."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.engine.core import Engine
from pipeline.engine.ratelimit import PacingSettings
from pipeline.recipes.transcribe.plan import PlanSpec, StageModel, model_from_stats, parse_delay, simulate
from pipeline.recipes.transcribe.sources import expand
from tests.conftest import ROOT, cli_env, fast_settings
from tests.media_server import MediaServer

PLAIN = PacingSettings(queue_aware=False)


def test_cli_reproduces_one_account_arithmetic(home: Path, tmp_path: Path) -> None:
    """7,000 videos, one account at 3-5 min: 7,000 x 240 s = 19.4 days; the JSON is the last line."""
    png = tmp_path / "plan.png"
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "plan", "--videos", "7000", "--accounts", "1", "--delay", "180-300",
         "--transcribe-workers", "2", "--buffer", "off", "--json", "--plot", str(png)],
        cwd=ROOT, env=cli_env(home), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert doc["makespan_days"] == pytest.approx(19.44, rel=0.03)
    assert doc["pacing_arithmetic_days"] == pytest.approx(19.44, rel=0.001)
    assert doc["bottleneck"] == "download" and doc["utilization"]["download"] > 0.95
    assert set(doc["utilization"]) >= {"download", "transcribe", "summarize"}
    assert "bottleneck: download pacing" in res.stdout and "finish" in doc
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize(("accounts", "days"), [(3, 6.48), (5, 3.89)])
def test_more_accounts_divide_the_download_time(accounts: int, days: float) -> None:
    r = simulate(PlanSpec(videos=7000, accounts=accounts, delay=(180, 300), transcribe_workers=2, pacing=PLAIN,
                          model=StageModel(transcribe_rtf=0.01)))
    assert r.downloads_done_s / 86400 == pytest.approx(days, rel=0.03)
    assert r.makespan_s / 86400 == pytest.approx(days, rel=0.03)
    assert r.bottleneck == "download"


def test_transcription_becomes_the_bottleneck() -> None:
    """Five accounts outrun two workers at rtf 0.03 (7,000 h x 0.03 / 2 = 4.4 days > 3.9 days of downloads)."""
    gpu = StageModel(transcribe_rtf=0.03)  # faster-whisper small on a GPU (the default is tiny.en on a CPU)
    r = simulate(PlanSpec(videos=7000, accounts=5, delay=(180, 300), transcribe_workers=2, pacing=PLAIN, model=gpu))
    assert r.bottleneck == "transcribe"
    assert r.makespan_s / 86400 == pytest.approx(7000 * 3600 * 0.03 / 2 / 86400, rel=0.03)
    assert r.downloads_done_s < r.makespan_s * 0.95
    # with the default queue-aware pacing the buffer stays bounded instead of holding ~800 videos of audio
    plain_peak = max(b for _, b in r.buffer)
    q = simulate(PlanSpec(videos=7000, accounts=5, delay=(180, 300), transcribe_workers=2, model=gpu))
    assert plain_peak > 500 and max(b for _, b in q.buffer) <= PacingSettings().max_buffer + 5
    assert q.makespan_s == pytest.approx(r.makespan_s, rel=0.02)  # holding downloads costs no time


def test_queue_aware_pacing_speeds_up_a_starving_transcriber() -> None:
    plain = simulate(PlanSpec(videos=500, accounts=1, delay=(180, 300), pacing=PLAIN))
    aware = simulate(PlanSpec(videos=500, accounts=1, delay=(180, 300)))
    assert aware.makespan_s == pytest.approx(500 * 180, rel=0.02)  # fast end of the range: buffer < min_buffer
    assert plain.makespan_s == pytest.approx(500 * 240, rel=0.05)


def test_model_from_stats_and_delay_parsing(tmp_path: Path) -> None:
    stats = {"stages": {"download": {"count": 4, "busy_s": 8.0}, "transcribe": {"count": 4, "busy_s": 20.0},
                        "summarize": {"count": 4, "busy_s": 2.0}}, "audio_s": 400.0, "audio_items": 4}
    p = tmp_path / "stats.json"
    p.write_text(json.dumps(stats))
    m = model_from_stats([p, tmp_path / "missing.json"])
    assert m.download_s == 2.0 and m.summarize_s == 0.5 and m.transcribe_rtf == pytest.approx(0.05)
    assert model_from_stats([]) == StageModel()
    assert parse_delay("180-300") == (180, 300) and parse_delay("3m-5m") == (180, 300) and parse_delay("10") == (10, 10)
    with pytest.raises(ValueError):
        parse_delay("300-180")


def test_bad_arguments_are_one_line(home: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "plan", "--videos", "10", "--delay", "5-1"],
                         cwd=ROOT, env=cli_env(home), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--delay" in res.stderr


def _serve(media_server: MediaServer, media_files: dict[str, Path], prefix: str, n: int) -> list[dict[str, Any]]:
    data = media_files["mp3"].read_bytes()
    urls = []
    for i in range(n):
        path = f"/{prefix}/talk{i}.mp3"
        media_server.add_bytes(path, data, "audio/mpeg")
        urls.append(media_server.url(path))
    return [x.to_item() for x in expand("\n".join(urls)).entries]


def test_real_batch_is_predicted_within_15_percent(make_engine: Callable[..., Engine], media_server: MediaServer,
                                                   media_files: dict[str, Path]) -> None:
    """Calibrate on a small real batch (its stats.json), predict a 12-item paced batch, then run it."""
    # One item at a time: the paced batch below meets no contention either, so per-item durations match.
    calib = make_engine(settings=fast_settings(pools={"net": 1, "cpu": 1, "gpu": 0, "llm": 1}))
    calib.submit("calibrate", _serve(media_server, media_files, "cal", 4), recipe="transcribe")
    s = calib.wait("calibrate", timeout=120)
    assert s.counts["done"] == 4
    stats_path = Path(s.output_dir) / "stats.json"
    audio_s = sum(float(it["duration"]) for it in calib.items("calibrate")) / 4
    calib.shutdown()

    # Loopback is not paced by default (pacing per site); pace it here like the strict sites the plan models.
    pacing = PacingSettings(anon_delay_min_s=1.5, anon_delay_max_s=1.9, queue_aware=False,
                            sites={"local": {"delay_min_s": 1.5, "delay_max_s": 1.9}})
    settings = fast_settings(pacing=pacing)
    model = StageModel(audio_minutes=audio_s / 60, **{
        k: v for k, v in model_from_stats([stats_path]).__dict__.items() if k != "audio_minutes"})
    pools = settings.pools
    predicted = simulate(PlanSpec(videos=12, accounts=0, transcribe_workers=pools["cpu"],
                                  download_workers=pools["net"], llm_workers=pools["llm"], model=model,
                                  pacing=pacing))
    e = make_engine(settings=settings)
    e.submit("real", _serve(media_server, media_files, "real", 12), recipe="transcribe")
    s = e.wait("real", timeout=180)
    assert s.counts["done"] == 12
    header = e.batch_header("real")
    measured = float(header["finished_at"]) - float(header["created_at"])
    print(f"predicted {predicted.makespan_s:.2f} s, measured {measured:.2f} s, "
          f"ratio {predicted.makespan_s / measured:.3f}")
    assert predicted.makespan_s == pytest.approx(measured, rel=0.15), (predicted.to_dict(), measured)


def test_captioned_videos_skip_the_download_queue() -> None:
    """Half the videos have captions: the real download stage needs no account for them, so pacing halves."""
    r = simulate(PlanSpec(videos=1000, accounts=1, delay=(180, 300), pacing=PLAIN, captions_fraction=0.5))
    assert r.arithmetic_s == pytest.approx(500 * 240)
    assert r.downloads_done_s == pytest.approx(500 * 240, rel=0.05)
