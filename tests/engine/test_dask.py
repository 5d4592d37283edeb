"""The engine's cpu/gpu pools on a Dask cluster (pipeline/distributed.py): real worker processes on 127.0.0.1.

What must hold: stages really run in the workers (the engine process only ships names), a worker killed
mid-stage loses nothing and duplicates nothing, cancel reaches a remote stage, GPU resources are asked for
only when a worker has them, and bad specs fail with one clear line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from distributed import get_task_stream

from pipeline.config.settings import RetryPolicy
from pipeline.engine import stage as stages
from pipeline.engine.core import Engine
from pipeline.engine.distributed import DaskExecutors, DaskPoolExecutor, connect, parse_executor
from pipeline.errors import ConfigError, PermanentError
from pipeline.recipes.transcribe.sources import expand
from tests.conftest import fast_settings

# Every LocalCluster's scheduler serves HTTP routes on 8787 even with dashboard_address=None; later ones move.
pytestmark = pytest.mark.filterwarnings("ignore:Port 8787 is already in use")


@pytest.fixture(scope="module")
def dx() -> Iterator[DaskExecutors]:
    """Two worker processes with one thread each, shared by the tests that do not break the cluster."""
    with connect("local-cluster:2", {"net": 2, "llm": 2}) as d:
        yield d


def dask_engine(make_engine: Callable[..., Engine], d: DaskExecutors, **settings: Any) -> Engine:
    return make_engine(settings=fast_settings(pools=d.pool_sizes, **settings), executors=d.executors)


def journal(path: Path) -> Counter[tuple[int, str, str]]:
    """(item n, stage, start|done) -> count, from the probe stages' journal."""
    return Counter((int(n), st, ev) for n, st, ev, *_ in (line.split() for line in path.read_text().splitlines()))


def wait_for_starts(path: Path, stage: str, n: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or sum(k[1] == stage and k[2] == "start" for k in journal(path).elements()) < n:
        assert time.monotonic() < deadline, f"{stage} did not start {n} time(s)"
        time.sleep(0.05)


def log_count(item: dict[str, Any], needle: str) -> int:
    return (Path(item["workdir"]) / "log.txt").read_text().count(needle)


@pytest.mark.timeout(120)
def test_transcribe_batch_runs_on_workers(make_engine: Callable[..., Engine], dx: DaskExecutors,
                                          media_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A transcribe batch of local speech files finishes; transcription and export ran in worker processes.

    The engine process's registry entry for ``transcribe`` is a trap that fails the item: the engine can
    only succeed if the stage is looked up by name and run on a worker, which has its own registry.
    """
    real = stages.get_stage("transcribe")
    local_calls: list[int] = []

    def trap(item: dict[str, Any], ctx: stages.StageContext) -> stages.StageResult:
        local_calls.append(ctx.item_n)
        raise PermanentError("transcribe ran in the engine process")

    monkeypatch.setitem(stages._REGISTRY, "transcribe", replace(real, run=trap))
    files = [media_files[k] for k in ("m4a", "mp3", "webm", "wav")]
    e = dask_engine(make_engine, dx)
    with get_task_stream(client=dx.client) as stream:
        e.submit("remote", [x.to_item() for x in expand("\n".join(map(str, files))).entries], recipe="transcribe",
                 options={"summarizer": "offline"})
        s = e.wait("remote", timeout=100)
    assert s.state == "done", s
    items = e.items("remote")
    assert len(items) == 4 and [it["status"] for it in items] == ["done"] * 4, [it.get("error") for it in items]
    assert local_calls == []
    for it in items:
        tr = json.loads(Path(it["artifacts"]["json"]).read_text())
        assert " ".join(seg["text"] for seg in tr["segments"]).strip(), it["source"]
        assert it["meta"]["transcript_source"] == "whisper"
        assert Path(it["artifacts"]["txt"]).read_text().strip()  # export ran remotely too (cpu pool)
        assert log_count(it, "transcribe: done") == 1
    workers = set(dx.client.run(os.getpid))
    ran = Counter((t["key"].split("-", 1)[0], t["worker"]) for t in stream.data)
    transcribed = {w: n for (stage, w), n in ran.items() if stage == "transcribe"}
    assert sum(transcribed.values()) == 4 and set(transcribed) <= workers
    assert sum(n for (stage, _), n in ran.items() if stage == "export") == 4
    mod = "pipeline.recipes.transcribe.stages.transcribe"
    loaded = dx.client.run(lambda: len(__import__(mod, fromlist=["_models"])._models))
    assert all(loaded[w] >= 1 for w in transcribed)  # the Whisper model lives in those worker processes


@pytest.mark.timeout(60)
def test_worker_killed_mid_stage_loses_and_repeats_nothing(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    """SIGKILL a worker while it runs a stage: Dask reruns that stage elsewhere; every stage finishes exactly once."""

    def executing(dask_worker: Any) -> list[str]:
        return [str(ts.key) for ts in dask_worker.state.executing]

    with connect("local-cluster:2", {"net": 2, "llm": 2}) as d:
        pids = d.client.run(os.getpid)
        fast_retry = RetryPolicy(limit=3, base_s=0.2, cap_s=1.0, jitter=0.0, rate_limit_wait_s=1.0)
        e = dask_engine(make_engine, d, retry=fast_retry)
        jpath = tmp_path / "journal.txt"
        e.submit("kill", [f"k{i} sleep=2@probe_cpu" for i in range(4)], recipe="probe",
                 options={"journal": str(jpath)})
        deadline = time.monotonic() + 20
        victim = None
        while victim is None:
            assert time.monotonic() < deadline, "no probe_cpu stage ever ran on a worker"
            running = d.client.run(executing)
            victim = next(((w, k) for w, keys in running.items() for k in keys if k.startswith("probe_cpu-")), None)
            time.sleep(0.05)
        addr, key = victim
        time.sleep(0.3)  # anything that worker finished before is fetched and released by now
        assert key in d.client.run(executing, workers=[addr])[addr]  # 2 s stage: still running
        os.kill(pids[addr], signal.SIGKILL)
        s = e.wait("kill", timeout=40)
        assert s.state == "done", s
        items = e.items("kill")
        assert [it["status"] for it in items] == ["done"] * 4
        assert all(not it.get("error") and not it.get("attempts") for it in items)  # rescheduled by Dask, no retry
        j = journal(jpath)
        victim_n = int(key.rsplit("-", 2)[1])  # key: stage-batch_id-n-uuid
        for it in items:
            n = it["n"]
            for st in ("probe_net", "probe_cpu", "probe_gpu", "probe_llm"):
                assert j[(n, st, "done")] == 1, (n, st, j)
            for st in ("probe_cpu", "probe_gpu"):  # written by _execute in the worker
                assert log_count(it, f"{st}: done") == 1, (n, st)
        assert j[(victim_n, "probe_cpu", "start")] == 2  # killed mid-sleep, run again from the start
        assert sum(v for (n, st, ev), v in j.items() if ev == "start" and st == "probe_cpu") == 5
        restarted = d.client.run(os.getpid)
        assert len(restarted) == 2 and pids[addr] not in restarted.values()  # the nanny replaced it


@pytest.mark.timeout(60)
def test_cancel_reaches_a_remote_stage(make_engine: Callable[..., Engine], dx: DaskExecutors, tmp_path: Path) -> None:
    """A 30 s remote stage stops at its next check after cancel; the scheduler forgets the task's Event."""
    e = dask_engine(make_engine, dx)
    jpath = tmp_path / "journal.txt"
    e.submit("long", ["a sleep=30@probe_cpu", "b sleep=30@probe_cpu"], recipe="probe", options={"journal": str(jpath)})
    wait_for_starts(jpath, "probe_cpu", 2)
    t0 = time.monotonic()
    e.cancel("long")
    s = e.wait("long", timeout=10)
    assert s.state == "cancelled" and s.counts["cancelled"] == 2, s
    assert time.monotonic() - t0 < 3
    assert not any(ev == "done" and st == "probe_cpu" for (_, st, ev) in journal(jpath))
    cpu = dx.executors["cpu"]
    assert isinstance(cpu, DaskPoolExecutor)
    deadline = time.monotonic() + 5
    while cpu.in_flight or dx.client.run_on_scheduler(lambda dask_scheduler: len(
            dask_scheduler.extensions["events"]._events)):
        assert time.monotonic() < deadline, "cancel Events left on the scheduler"
        time.sleep(0.05)

    # An interrupting shutdown stops remote stages too, and they go back to pending for the next start.
    e.submit("again", ["c sleep=30@probe_cpu"], recipe="probe", options={"journal": str(jpath)})
    wait_for_starts(jpath, "probe_cpu", 3)
    t0 = time.monotonic()
    e.shutdown(interrupt=True, timeout=10)
    assert time.monotonic() - t0 < 3
    assert [it["status"] for it in e.items("again")] == ["pending"]


@pytest.mark.timeout(60)
def test_external_scheduler_gpu_resource_and_ownership(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    """dask://: gpu pool sized by GPU resources and asked for; shared path checked; close() spares others' cluster."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      resources={"GPU": 1}) as cluster:
        spec = "dask://" + cluster.scheduler_address.removeprefix("tcp://")
        with pytest.raises(ConfigError, match="do not see"):
            connect(spec, {}, shared_path=tmp_path / "not-mounted")
        d = connect(spec, {"net": 3, "llm": 1}, shared_path=tmp_path)
        assert d.cluster is None and d.pool_sizes == {"net": 3, "cpu": 1, "gpu": 1, "llm": 1}
        gpu = d.executors["gpu"]
        assert isinstance(gpu, DaskPoolExecutor) and gpu.resources == {"GPU": 1}
        e = dask_engine(make_engine, d)
        with get_task_stream(client=d.client) as stream:
            e.submit("gpu", ["g1", "g2"], recipe="probe")
            assert e.wait("gpu", timeout=30).state == "done"
        assert sum(1 for t in stream.data if t["key"].startswith("probe_gpu-")) == 2
        e.shutdown()
        DaskPoolExecutor(d.client, "cpu").shutdown()
        assert d.client.status == "running"  # an executor never closes a client it was given
        d.close()
        with Client(cluster, timeout=10) as c:  # the cluster we did not start is still up
            assert len(c.scheduler_info()["workers"]) == 1


def test_parse_executor_forms() -> None:
    for local in ("", "  ", "local", "threads", None):
        assert parse_executor(local) is None  # type: ignore[arg-type]
    assert parse_executor("dask://10.0.0.5:8786") == ("dask", "10.0.0.5:8786")
    assert parse_executor("dask://sched.lan:8786/") == ("dask", "sched.lan:8786")
    assert parse_executor("local-cluster:3") == ("local-cluster", 3)
    assert parse_executor("local-cluster") == ("local-cluster", os.cpu_count() or 1)
    for bad in ("dask://host", "dask://:8786", "dask://h:99999", "local-cluster:0", "local-cluster:x", "ray://h:1",
                "tcp://h:8786"):
        with pytest.raises(ConfigError) as info:
            parse_executor(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="local-cluster:N"):
        parse_executor("slurm")


@pytest.mark.timeout(20)
def test_unreachable_scheduler_is_one_clear_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nobody listens there
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as info:
        connect(f"dask://127.0.0.1:{port}", {}, timeout=1)
    assert time.monotonic() - t0 < 8
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "dask scheduler" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="needs a Dask executor"):
        connect("local", {})


@pytest.mark.timeout(120)
def test_cli_run_on_a_local_cluster(home: Path, tmp_path: Path) -> None:
    """``tubemill run --executor local-cluster:2``: the cpu stages run in worker processes, the batch completes."""
    import subprocess
    import sys

    from tests.conftest import ROOT, cli_env

    src = tmp_path / "src.txt"
    src.write_text("".join(f"v{i} sleep=0.1@probe_cpu\n" for i in range(4)))
    journal_file = tmp_path / "journal.txt"
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(src), "--recipe", "probe",
                          "--executor", "local-cluster:2", "--set", f"journal={journal_file}"],
                         cwd=ROOT, env=cli_env(home), capture_output=True, text=True, timeout=110)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "cpu/gpu stages on Dask (2 worker thread(s)" in res.stderr
    assert "distributed.scheduler" not in res.stderr  # the cluster's INFO chatter stays quiet without -v
    done = journal(journal_file)
    assert all(done[(n, "probe_cpu", "done")] == 1 for n in range(1, 5))


@pytest.mark.timeout(120)
def test_foreground_retry_failed_uses_the_executor_in_settings(home: Path, tmp_path: Path) -> None:
    """With ``executor`` in settings.toml, a batch resumed in the foreground runs on the cluster like ``run``."""
    import subprocess
    import sys

    from tests.conftest import ROOT, cli_env

    env = cli_env(home)  # writes settings.toml with pacing off
    settings = home / "settings.toml"
    settings.write_text('executor = "local-cluster:2"\n' + settings.read_text())
    flag = tmp_path / "flag"
    flag.touch()
    src = tmp_path / "src.txt"
    src.write_text(f"a failif={flag}@probe_cpu\nb\n")

    def tm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=110)

    first = tm("run", str(src), "--recipe", "probe")
    assert first.returncode == 1 and "cpu/gpu stages on Dask" in first.stderr
    flag.unlink()
    again = tm("retry-failed", "src")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "cpu/gpu stages on Dask (2 worker thread(s)" in again.stderr
    assert json.loads(tm("status", "src", "--json").stdout)["counts"]["done"] == 2
