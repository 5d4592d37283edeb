"""``tubemill``: the command line on the same engine as the app.

Errors users can cause (a missing file, an unknown batch, a corrupt state file, a
busy home) print one line and exit non-zero; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.app.progress import ProgressView, fmt_duration
from pipeline.config.settings import default_home, load_settings
from pipeline.engine.core import ON_ERROR, Engine
from pipeline.engine.recipe import default_recipe, get_recipe, offered_recipes
from pipeline.errors import BatchExists, CorruptStateFile, UnknownBatch
from pipeline.recipes.transcribe import arguments as transcribe_args
from pipeline.recipes.transcribe.sources import (
    MAX_INPUT_BYTES,
    InvalidLine,
    drop_undecodable,
    expand,
    parse_lines,
    read_input,
    summarize_expansion,
)
from state.lock import describe_owner, read_owner
from state.models import BatchState
from state.reader import find_summary, read_batch, read_summaries
from state.store import BATCHES_DIR

EXIT_OK, EXIT_FAILED_ITEMS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
STATUS_ITEM_FIELDS = ("n", "source", "id", "title", "status", "stage", "attempts", "error", "flags")


class CliError(Exception):
    """One line for the user, then exit ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tubemill", description="Batch video mill: transcribe, summarize, generate.")
    p.add_argument("--home", help="state folder (default: $TUBEMILL_HOME or ~/.tubemill)")
    p.add_argument("-v", "--verbose", action="store_true", help="log engine events to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a batch from a file of sources (one per line), '-' for stdin, or a URL")
    r.add_argument("input")
    r.add_argument("--output", help="output folder (default: <home>/output)")
    r.add_argument("--batch-name", help="name of the batch (default: the input file's name)")
    r.add_argument("--recipe", default=default_recipe(), help=f"one of: {', '.join(sorted(offered_recipes()))}")
    r.add_argument("--max-workers", type=int, help="no pool runs more than N stages at once")
    r.add_argument("--retry-limit", type=int, help="retries of a failed stage before the item fails")
    r.add_argument("--resume", action="store_true", help="continue the batch of the same name")
    r.add_argument("--on-error", choices=ON_ERROR, help="continue (default), stop (pause the batch), retry")
    r.add_argument("--output-manifest", help="also write the manifest JSON here")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a stage option stored with the batch (repeatable)")
    r.add_argument("--dry-run", action="store_true", help="list what would run and stop")
    r.add_argument("--cookies", action="append", default=[], metavar="FILE|FOLDER",
                   help="a Netscape cookies.txt per download account (repeatable; a folder means every .txt in "
                        "it); default: the accounts saved on the Settings page, else anonymous")
    r.add_argument("--executor", metavar="SPEC",
                   help="where cpu/gpu stages run: dask://HOST:PORT, local-cluster:N, or local (default: settings)")
    transcribe_args.add_arguments(r)  # its groups: YouTube and yt-dlp, filters, transcribe recipe

    s = sub.add_parser("status", help="show batches, or one batch's items")
    s.add_argument("batch", nargs="?")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")

    for name, text in (("pause", "start nothing new; running stages finish"), ("resume", "resume a paused batch"),
                       ("cancel", "cancel a batch"), ("retry-failed", "run failed items again"),
                       ("retry-summaries", "ask the LLM again for summaries that fell back to the offline "
                                           "summarizer (transcripts are kept)")):
        c = sub.add_parser(name, help=text)
        if name in ("retry-failed", "retry-summaries"):
            c.add_argument("batch")
        else:
            c.add_argument("batch", nargs="?")
            c.add_argument("--all", action="store_true", help="every batch")

    g = r.add_argument_group("generate recipe (topics, one per line, or a CSV with per-row options)")
    g.add_argument("--voice", help="edge-tts voice (default en-US-AriaNeural)")
    g.add_argument("--style", help="tone of the script, e.g. 'playful', 'for beginners'")
    g.add_argument("--length", type=float, metavar="SECONDS", help="target length of each video (default 60)")
    g.add_argument("--aspect", choices=("9:16", "16:9"), help="vertical (default) or horizontal")
    g.add_argument("--pace", choices=("fast", "normal", "slow"), help="one scene per 3, 4 or 5 s of speech")
    g.add_argument("--tts", choices=("auto", "edge", "espeak"), help="auto: edge-tts, espeak-ng when it fails")
    g.add_argument("--burn-subtitles", action="store_true", help="render the subtitles into the picture")
    g.add_argument("--upload", action="store_true", help="upload to YouTube (see `tubemill youtube-auth`)")
    g.add_argument("--privacy", choices=("private", "unlisted", "public"))
    g.add_argument("--publish-at", metavar="ISO8601", help="scheduled publication (the video stays private)")

    ya = sub.add_parser("youtube-auth", help="authorize uploads once (browser consent); stores a 0600 token")
    ya.add_argument("client_secrets", help="the OAuth client file downloaded from the Google Cloud console")
    ya.add_argument("--no-browser", action="store_true", help="print the URL instead of opening a browser")

    lb = sub.add_parser("llm-batch", help="summaries of finished items through the Batch API, step by step")
    lb.add_argument("action", choices=("prepare", "submit", "status", "ingest"))
    lb.add_argument("batches", nargs="*", help="batches to take finished items from (prepare)")
    lb.add_argument("--all", action="store_true", help="every batch (prepare)")
    lb.add_argument("--job", help="the job to act on (default: the newest)")
    lb.add_argument("--force", action="store_true", help="also items that already have an LLM summary")

    pl = sub.add_parser("plan", help="simulate a batch on virtual time: makespan, bottleneck, finish date")
    pl.add_argument("--videos", type=int, required=True)
    pl.add_argument("--accounts", type=int, help="cookie accounts (0: anonymous; default: the accounts saved here)")
    pl.add_argument("--delay", metavar="MIN-MAX", help="seconds between one account's downloads, e.g. 180-300 "
                                                       "(default: settings)")
    pl.add_argument("--transcribe-workers", type=int, help="default: the cpu pool (gpu pool when there is a GPU)")
    pl.add_argument("--download-workers", type=int)
    pl.add_argument("--llm-workers", type=int)
    pl.add_argument("--audio-minutes", type=float, help="length of each video (default 60)")
    pl.add_argument("--transcribe-rtf", type=float,
                    help="transcription seconds per audio second, per worker (default: measured here, else 0.03)")
    pl.add_argument("--download-seconds", type=float, help="transfer time of one video (default: measured, else 30)")
    pl.add_argument("--summarize-seconds", type=float, help="default: measured, else 15")
    pl.add_argument("--captions-fraction", type=float, default=0.0, help="share of videos with usable captions")
    pl.add_argument("--buffer", metavar="MIN/TARGET/MAX|off", help="queue-aware pacing (default: settings)")
    pl.add_argument("--fast-start", type=int, metavar="N", help="first N downloads per account at a shorter delay")
    pl.add_argument("--stats", action="append", default=[], metavar="FILE",
                    help="stats.json of earlier batches to take stage durations from (default: those in the output "
                         "folder)")
    pl.add_argument("--start", help="start time (ISO 8601; default: now)")
    pl.add_argument("--seed", type=int, default=1)
    pl.add_argument("--json", action="store_true", help="the last line is a JSON object")
    pl.add_argument("--plot", metavar="FILE.png", help="buffer and progress over time")

    d = sub.add_parser("doctor", help="check the setup (yt-dlp, JS runtime, ffmpeg, models, GPU, LLM, accounts, "
                                      "disk) and say how to fix each problem")
    d.add_argument("--json", action="store_true", help="the last line is one JSON object: {check: {ok, detail, fix}}")
    d.add_argument("--cookies", action="append", default=[], metavar="FILE",
                   help="also check this cookie file (repeatable)")
    d.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="bound of each network probe (default 5)")

    a = sub.add_parser("app", help="start the Streamlit app")
    a.add_argument("--address", default="127.0.0.1")
    a.add_argument("--port", type=int, default=8501)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    home = Path(args.home).expanduser() if args.home else default_home()
    try:
        handler = COMMANDS[args.command]
        return handler(args, home)
    except CliError as exc:
        print(f"tubemill: error: {exc}", file=sys.stderr)
        return exc.code
    except (errors.TubemillError, UnknownBatch, BatchExists, ValueError) as exc:
        print(f"tubemill: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CorruptStateFile as exc:
        print(f"tubemill: error: state file {exc.path} is unreadable ({exc.reason})", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `tubemill status | head`: the reader went away. Quiet, as in the Python docs' recipe: point
        # stdout at devnull so the interpreter's final flush does not print a second error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED_ITEMS
    except OSError as exc:
        # The disk said no (an unwritable home or batches folder, a full disk): the environment, not a bug.
        print(f"tubemill: error: {os_error_line(exc, home)}", file=sys.stderr)
        return EXIT_USAGE


def os_error_line(exc: OSError, home: Path) -> str:
    """One line for a failed file operation: what, where, and for the home how to pick another one."""
    import errno

    where = str(exc.filename) if exc.filename is not None else ""
    why = {errno.ENOTDIR: "a file is in the way (a folder is needed there)",
           errno.EEXIST: "a file of that name is in the way (a folder is needed there)"}.get(
        exc.errno or 0, exc.strerror or str(exc))
    text = f"cannot use {where}: {why}" if where else why
    try:
        w, h = Path(where).resolve(), home.resolve()
        in_home = where != "" and (w == h or h in w.parents or w in h.parents)
    except (OSError, RuntimeError, ValueError):
        in_home = False
    if in_home:
        text += f"; the state folder {home} must be a writable folder (pass --home DIR or set TUBEMILL_HOME)"
    return text


# ---------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace, home: Path) -> int:
    recipe = get_recipe(args.recipe)
    if not args.dry_run:
        # Fail before listing (a channel can take minutes), with main()'s one line for an unusable home.
        # 0700 like every first writer of the home: it holds secrets and what was transcribed.
        from state.lock import ensure_home

        (ensure_home(home) / BATCHES_DIR).mkdir(exist_ok=True)
    # Bytes, not sys.stdin.read(): one non-UTF-8 byte on stdin is one reported line, not a traceback.
    stdin_data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1) if args.input == "-" else None
    text = read_input(args.input, stdin_data)
    settings = load_settings(home)
    youtube = transcribe_args.youtube_options(args)  # checked before any listing: it goes out the same way
    refused: list[InvalidLine] = []
    if recipe.topics:
        from pipeline.recipes.generate.topics import parse_topics

        text, refused = drop_undecodable(text)
        parsed = parse_topics(text)
        refused = sorted(refused + list(parsed.invalid), key=lambda bad: bad.line_no)
        for bad in refused:
            print(f"tubemill: skipped invalid input, {bad}", file=sys.stderr)
        sources: list[Any] = parsed.items
    elif recipe.expands_sources:
        from pipeline.recipes.transcribe.ytdlp import listing_options

        expansion = expand(text, transcribe_args.filters(args), on_source=_listing_progress,
                           ydl_opts=listing_options(settings.ytdlp, youtube.get("ytdlp_options"),
                                                    proxy=youtube.get("proxy")))
        _end_listing_progress()
        for line in summarize_expansion(expansion):
            print(f"tubemill: {line}", file=sys.stderr)
        refused = expansion.invalid
        sources = [e.to_item() for e in expansion.entries]
    else:
        sources, refused = parse_lines(text)
        for bad in refused:
            print(f"tubemill: skipped invalid input, {bad}", file=sys.stderr)
    if not sources and not args.resume:
        raise CliError(f"nothing to process in {args.input!r}" + (" (every line was refused)" if refused else ""))
    options = _options(args, settings, len(sources))
    if args.cookies:
        options["cookie_files"] = cookie_accounts(args.cookies)
    options.update(youtube)
    if args.cookies_from_browser:
        options["cookie_browsers"] = browser_accounts(args.cookies_from_browser, set(options.get("cookie_files", ())))
    if recipe.check_options is not None:
        try:
            recipe.check_options(options, settings)
        except errors.TubemillError as exc:
            raise CliError(str(exc)) from None
    name = args.batch_name or _default_name(args.input)
    if args.dry_run:
        return _refused_exit(_preview(home, name, recipe.name, sources), refused)
    if args.max_workers:
        settings = settings.with_max_workers(args.max_workers)
    if args.output:
        settings = replace(settings, output_dir=str(Path(args.output).expanduser().resolve()))
    from pipeline.engine.distributed import engine_executors

    settings, dx = engine_executors(args.executor or settings.executor, settings, settings.output_root(home))
    _say_dask(dx)
    try:
        engine = Engine(home, settings=settings, role="tubemill run", executors=dx.executors if dx else None)
        return _refused_exit(_run_engine(engine, home, name, sources, recipe.name, options, settings, args.resume),
                             refused)
    finally:
        if dx is not None:
            dx.close()


def _refused_exit(code: int, refused: list[InvalidLine]) -> int:
    """Exit 1, not 0, when input lines were refused: "all done" must mean every line the user gave.

    The reasons were printed before the run; this repeats which lines, after the progress
    output that may have scrolled them away.
    """
    if not refused or code != EXIT_OK:
        return code
    nos = sorted({bad.line_no for bad in refused})
    shown = ", ".join(str(n) for n in nos[:20]) + (f" and {len(nos) - 20} more" if len(nos) > 20 else "")
    print(f"tubemill: {len(refused)} input line(s) or folder entries skipped (line {shown}; reasons above); "
          "everything else ran", file=sys.stderr)
    return EXIT_FAILED_ITEMS


def _say_dask(dx: Any) -> None:
    if dx is not None:
        print(f"tubemill: cpu/gpu stages on Dask ({dx.pool_sizes['cpu']} worker thread(s), "
              f"{dx.pool_sizes['gpu']} GPU(s))", file=sys.stderr)


def _run_engine(engine: Engine, home: Path, name: str, sources: list[Any], recipe: str, options: dict[str, Any],
                settings: Any, resume: bool) -> int:
    owner = engine.start()
    for msg in engine.messages:
        print(f"tubemill: warning: {msg}", file=sys.stderr)
    if not owner:
        print(f"tubemill: {home} is held by {describe_owner(read_owner(home))}; handing the batch to it",
              file=sys.stderr)
    try:
        bid = engine.submit(name, sources, recipe=recipe, options=options,
                            output_dir=settings.output_dir or None, resume=resume)
    except BaseException:
        engine.shutdown()
        raise
    return _follow(engine, bid, owner)


def cookie_accounts(specs: list[str]) -> dict[str, str]:
    """``--cookies`` values → {account name: absolute path}; each file checked now, with a one-line error."""
    from pipeline.config.secrets import cookie_problems, validate_cookie_file

    files: list[Path] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".txt")
            if not found:
                raise CliError(f"--cookies {spec}: no .txt cookie files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CliError(f"--cookies {spec}: no such file or folder")
    out: dict[str, str] = {}
    for path in files:
        try:
            data = path.read_bytes()
            validate_cookie_file(data)
        except errors.InvalidInput as exc:
            raise CliError(f"--cookies {path}: {exc}") from None
        for problem in cookie_problems(data):  # line numbers and what is wrong, never a value
            print(f"tubemill: warning: --cookies {path}: {problem} (line left out)", file=sys.stderr)
        name, i = path.stem, 2
        while name in out:
            name, i = f"{path.stem}-{i}", i + 1
        out[name] = str(path.resolve())
    return out


def browser_accounts(specs: list[str], taken: set[str] | None = None) -> dict[str, str]:
    """``--cookies-from-browser`` values → {account name: spec}; each spec checked now, with a one-line error.

    The browser's cookie store is read by yt-dlp at each download (never copied by us)."""
    from pipeline.recipes.transcribe.ytdlp import browser_account_name

    out: dict[str, str] = {}
    taken = set(taken or ())
    for spec in specs:
        try:
            base = browser_account_name(spec)
        except errors.InvalidInput as exc:
            raise CliError(str(exc)) from None
        name, i = base, 2
        while name in out or name in taken:
            name, i = f"{base}-{i}", i + 1
        out[name] = spec.strip()
    return out


def _options(args: argparse.Namespace, settings: Any, n_items: int) -> dict[str, Any]:
    """Batch options: stored with the batch, so a resumed batch keeps its choices. Never secrets."""
    extra: dict[str, Any] = {}
    for kv in args.set:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise CliError(f"--set expects KEY=VALUE, got {kv!r}")
        extra[key.strip()] = value
    if args.output_manifest:
        extra["output_manifest"] = str(Path(args.output_manifest).expanduser().resolve())
    for key, value in (("voice", args.voice), ("style", args.style), ("length_s", args.length),
                       ("aspect", args.aspect), ("pace", args.pace), ("tts", args.tts), ("privacy", args.privacy),
                       ("publish_at", args.publish_at)):
        if value is not None:
            extra[key] = value
    if args.burn_subtitles:
        extra["burn_subtitles"] = True
    if args.upload:
        extra["upload"] = True
    return transcribe_args.batch_options_from_args(args, settings, n_items, retry_limit=args.retry_limit,
                                                   on_error=args.on_error, extra=extra)


def _listing_progress(i: int, n: int, line: str) -> None:
    if n > 1 and sys.stderr.isatty():
        print(f"\rlisting {i}/{n}: {line[:60]:<60}", end="", file=sys.stderr, flush=True)


def _end_listing_progress() -> None:
    """End the "listing i/n" line, so the reports that follow start on a line of their own."""
    if sys.stderr.isatty():
        print("\r\x1b[K", end="", file=sys.stderr, flush=True)


def _preview(home: Path, name: str, recipe: str, sources: list[Any]) -> int:
    """--dry-run: what would run, what is already done here, and nothing started."""
    from pipeline.recipes.transcribe import library

    ids = [s["id"] for s in sources if isinstance(s, dict) and s.get("id")]
    known = library.status_of(home, ids)
    total = sum(float(s.get("duration") or 0) for s in sources if isinstance(s, dict))
    print(f"batch {name!r} ({recipe}): {len(sources)} item(s), {known['already_done']} already done in this home, "
          f"{fmt_duration(total) if total else 'unknown'} of media")
    from types import SimpleNamespace

    from pipeline.app.views import estimate_llm
    from pipeline.config.secrets import llm_config_for

    cfg = llm_config_for(home, load_settings(home))
    est = estimate_llm([SimpleNamespace(duration=s.get("duration") if isinstance(s, dict) else None)
                        for s in sources], cfg.configured(), cfg.model, cfg.prices())
    if est["engine"] == "llm":
        cost = est["cost_usd"]
        price = (f"≈ ${cost:.2f} realtime, ≈ ${est['batch_cost_usd']:.2f} with the Batch API" if cost is not None
                 else "no price known for this model")
        print(f"summaries with {cfg.model}: ≈ {est['input_tokens']:,} input + {est['output_tokens']:,} output "
              f"tokens, {price}")
    else:
        print("summaries: offline extractive summarizer (no LLM configured), no cost")
    for s in sources[:50]:
        if isinstance(s, dict):
            dur = fmt_duration(s["duration"]) if s.get("duration") else "?"
            print(f"  {dur:>8}  {s.get('title') or s['source']}")
        else:
            print(f"  {s}")
    if len(sources) > 50:
        print(f"  … and {len(sources) - 50} more")
    return EXIT_OK


def _default_name(spec: str) -> str:
    if spec == "-" or "://" in spec:
        return "batch-" + time.strftime("%Y%m%d-%H%M%S")
    return Path(spec).stem or "batch"


def _follow(engine: Engine, bid: str, owner: bool) -> int:
    """Show progress until the batch ends; Ctrl-C pauses it (or detaches when another process runs it)."""
    _sigterm_as_interrupt()
    s = engine.summary(bid)
    try:
        with ProgressView() as view:
            while True:
                s = engine.summary(bid)
                view.update(s)
                if s.state in (BatchState.DONE, BatchState.CANCELLED) and not s.counts.get("running"):
                    break
                if s.state == BatchState.PAUSED and not s.counts.get("running"):
                    view.final(s)
                    print(f"batch {s.name!r} is paused; continue with: tubemill resume {_q(s.name)}")
                    engine.shutdown()
                    return EXIT_FAILED_ITEMS if s.counts.get("failed") else EXIT_OK
                time.sleep(0.2)
            view.final(s)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, _hard_exit)
        if not engine.owner:
            print(f"\ndetached; the batch keeps running in {describe_owner(read_owner(engine.home))}. "
                  f"Watch it with: tubemill status {_q(s.name)}", file=sys.stderr)
            engine.shutdown()
            return EXIT_INTERRUPTED
        state = engine.summary(bid).state
        if state in (BatchState.CANCELLED, BatchState.DONE):
            # Say what really happened: a cancelled batch is not paused, and resuming it is a choice.
            print(f"\nbatch {s.name!r} is {state}; stopping running stages…", file=sys.stderr)
            engine.shutdown(interrupt=True, timeout=15)
            print(f"{state}." + (f" To run it again: tubemill resume {_q(s.name)}" if state == BatchState.CANCELLED
                                 else ""), file=sys.stderr)
            return EXIT_INTERRUPTED
        print("\npausing: stopping running stages…", file=sys.stderr)
        engine.pause(bid)
        t0 = time.monotonic()
        engine.shutdown(interrupt=True, timeout=15)
        print(f"paused (running stages stopped in {time.monotonic() - t0:.1f}s). "
              f"Resume with: tubemill resume {_q(s.name)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    engine.shutdown()
    if s.counts.get("failed"):
        print(f"{s.counts['failed']} item(s) failed; see tubemill status {_q(s.name)} "
              f"or {Path(s.output_dir) / 'manifest.json'}", file=sys.stderr)
        return EXIT_FAILED_ITEMS
    return EXIT_OK


def _q(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").replace(".", "").isalnum() else repr(name)


def _hard_exit(signum: int, frame: Any) -> None:
    print("\nstopped hard; interrupted items resume at the next start", file=sys.stderr)
    os._exit(EXIT_INTERRUPTED)


def _sigterm_as_interrupt() -> None:
    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread (tests calling main() from a thread)
        pass


# ---------------------------------------------------------------------- status
def account_lines(rows: list[dict[str, Any]], held: str | None) -> list[str]:
    """Download accounts for ``tubemill status``: state, wait, delay multiplier, downloads, failures."""
    if not rows:
        return []
    out = ["download accounts:"]
    for r in rows:
        state = r["state"] + (f" {fmt_duration(r['wait_s'])}" if r.get("wait_s") else "")
        if r.get("disabled"):
            state += f" ({r['disabled']})"
        out.append(f"  {r['account']:<20} {state:<24} x{r['multiplier']:<5.2f} {r['downloads']:>6} downloaded  "
                   f"{r['failures']} failed ({r['rate_limits']} rate-limited)")
    if held:
        out.append(f"  downloads held: {held}")
    return out


def summary_counts(items: list[dict[str, Any]]) -> dict[str, int]:
    """Items per summary outcome (llm, repaired, offline, fallback)."""
    out: dict[str, int] = {}
    for it in items:
        outcome = (it.get("meta") or {}).get("summary_outcome")
        if outcome:
            out[outcome] = out.get(outcome, 0) + 1
    return out


def summary_lines(name: str, items: list[dict[str, Any]]) -> list[str]:
    """How the batch's summaries came out, and which fell back (why), with the command that asks again."""
    counts = summary_counts(items)
    if not counts:
        return []
    out = ["  summaries: " + ", ".join(f"{counts[k]} {k}" for k in ("llm", "repaired", "offline", "fallback")
                                       if counts.get(k))]
    fell = [it for it in items if (it.get("meta") or {}).get("summary_outcome") == "fallback"]
    for it in fell[:20]:
        reason = (it.get("meta") or {}).get("summary_reason") or ""
        out.append(f"  #{it['n']:<5} summary fell back: {(it.get('title') or it['source'])[:50]}: {reason[:120]}")
    if len(fell) > 20:
        out.append(f"  … and {len(fell) - 20} more")
    if fell:
        out.append(f"  ask the LLM again for these (transcripts are kept): tubemill retry-summaries {_q(name)}")
    return out


def cmd_status(args: argparse.Namespace, home: Path) -> int:
    from pipeline.engine.ratelimit import read_account_rows

    rows, held = read_account_rows(home, time.time())
    if not args.batch:
        summaries = read_summaries(home)
        if args.json:
            print(json.dumps({"batches": [s.to_dict() for s in summaries], "owner": read_owner(home),
                              "accounts": rows, "downloads_held": held}))
            return EXIT_OK
        if not summaries:
            print(f"no batches in {home}")
        for s in summaries:
            c = s.counts
            print(f"{s.name:<30} {s.state:<9} {c.get('done', 0):>6}/{s.total:<6} done  "
                  f"{c.get('failed', 0)} failed  {c.get('running', 0)} running  ETA {fmt_duration(s.eta_s)}")
        for line in account_lines(rows, held):
            print(line)
        return EXIT_OK
    s = find_summary(home, args.batch)
    header, items = read_batch(home, s.id)
    from pipeline.engine.outputs import _redact, summary_outcome

    if args.json:
        batch = _redact({**header, **{k: v for k, v in s.to_dict().items() if k not in ("counts",)},
                         "download_accounts": rows, "downloads_held": held})
        print(json.dumps({
            "batch": batch,
            "counts": s.counts,
            "summaries": summary_counts(items),
            "items": [{**{k: it.get(k) for k in STATUS_ITEM_FIELDS}, "summary": summary_outcome(it)} for it in items],
        }))
        return EXIT_OK
    from pipeline.app.progress import active_lines, summary_line

    print(summary_line(s))
    print(f"  recipe: {' → '.join(s.recipe)}   output: {s.output_dir}")
    for line in active_lines(s):
        print(line)
    for line in summary_lines(s.name, items):
        print(line)
    for it in items:
        if it["status"] in ("failed", "waiting"):
            err = it.get("error") or {}
            print(f"  #{it['n']:<5} {it['status']:<8} {it.get('title') or it['source'][:50]}: "
                  f"{err.get('type', '')}: {err.get('message', '')}")
    for line in account_lines(rows, held):
        print(line)
    return EXIT_OK


# ---------------------------------------------------------------------- control
def cmd_control(args: argparse.Namespace, home: Path) -> int:
    op = args.command.replace("-", "_")
    ref = args.batch
    if not ref and not getattr(args, "all", False):
        raise CliError(f"name a batch or pass --all to {args.command} every batch")
    settings, dx = load_settings(home), None
    if op in ("resume", "retry_failed", "retry_summaries") and settings.executor and not read_owner(home):
        # This process may end up running the batch: on the cluster the settings name, like `run`.
        from pipeline.engine.distributed import engine_executors

        settings, dx = engine_executors(settings.executor, settings, settings.output_root(home))
        _say_dask(dx)
    try:
        engine = Engine(home, settings=settings, role=f"tubemill {args.command}", takeover=False,
                        executors=dx.executors if dx else None)
        return _control(engine, args, op, ref)
    finally:
        if dx is not None:
            dx.close()


def _control(engine: Engine, args: argparse.Namespace, op: str, ref: str | None) -> int:
    owner = engine.start(run_scheduler=False)
    try:
        for msg in engine.messages:
            print(f"tubemill: warning: {msg}", file=sys.stderr)
        name = engine.summary(ref).name if ref else None  # an unknown batch is one clear line
        count = engine.control(op, ref)
    except BaseException:
        engine.shutdown()
        raise
    if op in ("retry_failed", "retry_summaries") and name and not count:
        engine.shutdown()
        print(f"nothing to retry in {name!r}" + (" (no summary fell back)" if op == "retry_summaries" else ""))
        return EXIT_OK
    if owner and op in ("resume", "retry_failed", "retry_summaries") and name:
        # Nobody else runs this home: this process becomes the engine and runs the batch here.
        engine.run_scheduler()
        s = engine.summary(name)
        if op == "retry_summaries":
            print(f"asking the LLM again for {count} summary(ies) of {s.name!r}; transcripts are kept",
                  file=sys.stderr)
        print(f"running {s.name!r} ({s.total - s.finished} item(s) left)", file=sys.stderr)
        return _follow(engine, s.id, True)
    engine.shutdown()
    what = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}.get(op, "reopened")
    target = repr(name) if name else "every batch"
    print(f"{what} {target}" + (f" ({count} item(s))" if op in ("retry_failed", "retry_summaries") else ""))
    if owner and op == "resume":
        print("no engine is running this home; start one with `tubemill app` or `tubemill resume NAME`")
    return EXIT_OK


def cmd_youtube_auth(args: argparse.Namespace, home: Path) -> int:
    from pipeline.recipes.generate import youtube

    youtube.authorize(home, Path(args.client_secrets).expanduser(), open_browser=not args.no_browser)
    print(f"authorized; token stored in {youtube.token_path(home)} (mode 0600)")
    return EXIT_OK


# ---------------------------------------------------------------------- llm-batch
def cmd_llm_batch(args: argparse.Namespace, home: Path) -> int:
    from pipeline.config.secrets import llm_config_for
    from pipeline.recipes.transcribe import llm_batch

    config = llm_config_for(home, load_settings(home))
    if not config.configured():
        raise CliError("no LLM configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for another server)")
    if args.action == "prepare":
        if not args.batches and not args.all:
            raise CliError("name batches or pass --all")
        refs = [s.name for s in read_summaries(home)] if args.all else args.batches
        items = []
        for ref in refs:
            s = find_summary(home, ref)
            items += [{**it, "batch_id": s.id} for it in read_batch(home, s.id)[1] if it["status"] == "done"]
        folder, state = llm_batch.prepare_job(home, items, config, name=args.job, force=args.force)
        total = sum(f["requests"] for f in state["files"])
        print(f"prepared {total} request(s) in {len(state['files'])} file(s): {folder}")
        return EXIT_OK
    folder, state = llm_batch.load_job(home, args.job)
    api = llm_batch.BatchAPI(config)
    if args.action == "submit":
        llm_batch.submit_job(folder, state, api)
        for f in state["files"]:
            print(f"{f['path']}: {f['batch_id']} {f.get('status')}")
    elif args.action == "status":
        llm_batch.refresh_job(folder, state, api)
        for f in state["files"]:
            c = f.get("request_counts") or {}
            print(f"{f['path']}: {f.get('batch_id') or 'not submitted'} {f.get('status', '')} "
                  f"{c.get('completed', 0)}/{c.get('total', f['requests'])} done, {c.get('failed', 0)} failed"
                  + (" (ingested)" if f.get("ingested") else ""))
    else:
        res = llm_batch.ingest_job(folder, state, api)
        waiting = [f["path"] for f in state["files"] if not f.get("ingested")]
        print(f"ingested {res['ingested']} summary(ies), {res['failed']} failed"
              + (f"; still running: {', '.join(waiting)}" if waiting else ""))
    return EXIT_OK


# ---------------------------------------------------------------------- app
def cmd_app(args: argparse.Namespace, home: Path) -> int:
    app = Path(__file__).resolve().parent.parent / "app.py"
    env = {**os.environ, "TUBEMILL_HOME": str(home)}
    cmd = [sys.executable, str(app), "--server.address", args.address, "--server.port", str(args.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    # exec, not a child: signals reach the server and no orphan keeps the port or the home.
    os.execve(sys.executable, cmd, env)
    return EXIT_OK  # not reached


# ---------------------------------------------------------------------- plan
def cmd_plan(args: argparse.Namespace, home: Path) -> int:
    from datetime import UTC, datetime

    from pipeline.config.secrets import list_cookie_files
    from pipeline.recipes.transcribe import plan

    settings = load_settings(home)
    pacing = settings.pacing
    if args.buffer:
        if args.buffer.lower() == "off":
            pacing = replace(pacing, queue_aware=False)
        else:
            try:
                lo, mid, hi = (int(x) for x in args.buffer.split("/"))
                pacing = replace(pacing, queue_aware=True, min_buffer=lo, target_buffer=mid, max_buffer=hi)
            except ValueError as exc:
                raise CliError(f"--buffer expects MIN/TARGET/MAX (e.g. 20/50/100) or off: {exc}") from None
    if args.fast_start is not None:
        pacing = replace(pacing, fast_start_items=max(0, args.fast_start))
    stats = [Path(p) for p in args.stats] or plan.find_stats(settings.output_root(home))
    model = plan.model_from_stats(stats)
    overrides = {"audio_minutes": args.audio_minutes, "transcribe_rtf": args.transcribe_rtf,
                 "download_s": args.download_seconds, "summarize_s": args.summarize_seconds}
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        model = replace(model, **given, source=model.source + " + command line")
    pools = settings.pools
    try:
        delay = plan.parse_delay(args.delay) if args.delay else None
        start = datetime.fromisoformat(args.start) if args.start else datetime.now(UTC)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    spec = plan.PlanSpec(
        videos=args.videos,
        accounts=args.accounts if args.accounts is not None else len(list_cookie_files(home, count=False)),
        delay=delay,
        transcribe_workers=args.transcribe_workers or (pools.get("gpu") or pools.get("cpu") or 1),
        download_workers=args.download_workers or pools.get("net") or 4,
        llm_workers=args.llm_workers or pools.get("llm") or 4,
        model=model, pacing=pacing, captions_fraction=args.captions_fraction, seed=args.seed, start=start,
    )
    try:
        result = plan.simulate(spec)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for line in plan.format_report(result):
        print(line)
    doc = result.to_dict()
    if args.plot:
        doc["plot"] = str(plan.plot(result, Path(args.plot)))
        print(f"plot: {doc['plot']}")
    if args.json:
        print(json.dumps(doc))
    return EXIT_OK


# ---------------------------------------------------------------------- doctor
def cmd_doctor(args: argparse.Namespace, home: Path) -> int:
    """Check the setup; exit 0 when all is well, 1 with warnings, 2 with errors."""
    from pipeline.app import doctor

    checks = doctor.run_checks(home, extra_cookies=[Path(p).expanduser() for p in args.cookies],
                               timeout=args.timeout)
    for line in doctor.format_table(checks):
        print(line)
    if args.json:
        print(json.dumps(doctor.to_json(checks)))
    return doctor.exit_code(checks)


COMMANDS = {
    "doctor": cmd_doctor,
    "plan": cmd_plan,
    "run": cmd_run,
    "status": cmd_status,
    "pause": cmd_control,
    "resume": cmd_control,
    "cancel": cmd_control,
    "retry-failed": cmd_control,
    "retry-summaries": cmd_control,
    "llm-batch": cmd_llm_batch,
    "youtube-auth": cmd_youtube_auth,
    "app": cmd_app,
}


if __name__ == "__main__":
    sys.exit(main())
