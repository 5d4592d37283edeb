"""``tubemill run``: read the sources, make the batch's options, then dry-run it or run it here.

The sources are a file, ``-`` for stdin or a URL; what they mean is the recipe's: topics for the
generate recipe, URLs and files expanded through yt-dlp for the transcribe recipe, plain lines
otherwise. Lines refused on the way are reported and turn "all done" into exit 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.cli.accounts import browser_accounts, cookie_accounts
from pipeline.cli.base import EXIT_FAILED_ITEMS, EXIT_OK, CliError, say_dask
from pipeline.cli.follow import follow
from pipeline.cli.preview import preview
from pipeline.config.settings import load_settings
from pipeline.engine.core import ON_ERROR, Engine
from pipeline.engine.recipe import Recipe, default_recipe, get_recipe, offered_recipes
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
from state.store import BATCHES_DIR


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``run`` command: its own flags, the transcribe recipe's groups, then the generate recipe's group."""
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
    r.add_argument("--dry-run", action="store_true", help="list what would run, estimate its time and stop")
    r.add_argument("--json", action="store_true",
                   help="with --dry-run: the last line is one JSON object (estimate_s, items, per-stage breakdown)")
    r.add_argument("--cookies", action="append", default=[], metavar="FILE|FOLDER",
                   help="a Netscape cookies.txt per download account (repeatable; a folder means every .txt in "
                        "it); default: the accounts saved on the Settings page, else anonymous")
    r.add_argument("--executor", metavar="SPEC",
                   help="where cpu/gpu stages run: dask://HOST:PORT, local-cluster:N, or local (default: settings)")
    transcribe_args.add_arguments(r)  # its groups: YouTube and yt-dlp, filters, transcribe recipe
    _add_generate_group(r)


def _add_generate_group(r: argparse.ArgumentParser) -> None:
    """The generate recipe's flags, read back by :func:`_options` into the batch options."""
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
    g.add_argument("--media-provider", choices=("none", "openverse", "pexels", "pixabay"),
                   help="stock pictures/footage per scene (pexels, pixabay: a key in Settings or "
                        "PEXELS_API_KEY / PIXABAY_API_KEY)")
    g.add_argument("--media-kind", choices=("photo", "video", "any"), help="stills, footage or both (default photo)")
    g.add_argument("--motion", action="store_true", help="a slow zoom/pan on stills")
    g.add_argument("--music-dir", metavar="PATH", help="a folder of music tracks (or one file), ducked under the voice")
    g.add_argument("--caption-style", choices=("classic", "boxed", "bold", "karaoke"),
                   help="subtitle look; karaoke lights each word as it is spoken (see README for caption_* keys)")
    g.add_argument("--embed-subtitles", action="store_true", help="a soft subtitle track inside the MP4")
    g.add_argument("--thumbnail", choices=("title", "frame", "none"), help="custom thumbnail on upload (default title)")
    g.add_argument("--playlist-id", metavar="ID", help="add each uploaded video to this playlist")
    g.add_argument("--made-for-kids", action="store_true", help="declare the videos made for kids (default: not)")


def cmd_run(args: argparse.Namespace, home: Path) -> int:
    """Run (or with ``--dry-run`` preview) one batch; exit 1 when items failed or input lines were refused."""
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
    sources, refused = _read_sources(recipe, text, args, settings, youtube)
    if not sources and not args.resume:
        raise CliError(f"nothing to process in {args.input!r}" + (" (every line was refused)" if refused else ""))
    options = _batch_options(recipe, args, settings, youtube, len(sources))
    name = args.batch_name or _default_name(args.input)
    if args.dry_run:
        return _refused_exit(preview(home, name, recipe.name, sources, as_json=args.json), refused)
    return _run_here(args, home, name, recipe.name, sources, options, settings, refused)


def _read_sources(recipe: Recipe, text: str, args: argparse.Namespace, settings: Any,
                  youtube: dict[str, Any]) -> tuple[list[Any], list[InvalidLine]]:
    """The input as the recipe reads it, and the lines refused (each reported on stderr already)."""
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

        expansion = expand(text, transcribe_args.filters(args), on_source=_listing_progress, probe=args.dry_run,
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
    return sources, refused


def _batch_options(recipe: Recipe, args: argparse.Namespace, settings: Any, youtube: dict[str, Any],
                   n_items: int) -> dict[str, Any]:
    """The options stored with the batch, download accounts included, checked by the recipe."""
    options = _options(args, settings, n_items)
    if args.cookies:
        options["cookie_files"] = cookie_accounts(args.cookies)
    options.update(youtube)
    if args.cookies_from_browser:
        options["cookie_browsers"] = browser_accounts(args.cookies_from_browser, set(options.get("cookie_files", ())))
    if recipe.parse_options is not None:  # refuse a bad value now, not once per item
        try:
            recipe.parse_options(options, settings)
        except errors.TubemillError as exc:
            raise CliError(str(exc)) from None
    return options


def _run_here(args: argparse.Namespace, home: Path, name: str, recipe: str, sources: list[Any],
              options: dict[str, Any], settings: Any, refused: list[InvalidLine]) -> int:
    """Start (or hand to the home's owner) the batch on the settings' executors and follow it to the end."""
    if args.max_workers:
        settings = settings.with_max_workers(args.max_workers)
    if args.output:
        settings = replace(settings, output_dir=str(Path(args.output).expanduser().resolve()))
    from pipeline.engine.distributed import engine_executors

    settings, dx = engine_executors(args.executor or settings.executor, settings, settings.output_root(home))
    say_dask(dx)
    try:
        engine = Engine(home, settings=settings, role="tubemill run", executors=dx.executors if dx else None)
        return _refused_exit(_run_engine(engine, home, name, sources, recipe, options, settings, args.resume),
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
    return follow(engine, bid, owner)


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
                       ("publish_at", args.publish_at), ("media_provider", args.media_provider),
                       ("media_kind", args.media_kind), ("music_dir", args.music_dir),
                       ("caption_style", args.caption_style), ("thumbnail", args.thumbnail),
                       ("playlist_id", args.playlist_id)):
        if value is not None:
            extra[key] = value
    for key in ("burn_subtitles", "upload", "motion", "embed_subtitles", "made_for_kids"):
        if getattr(args, key):
            extra[key] = True
    if extra.get("music_dir"):  # the batch runs from any folder: keep where the music is
        from pipeline.recipes.generate.music import music_path

        extra["music_dir"] = music_path(extra["music_dir"])
    return transcribe_args.batch_options_from_args(args, settings, n_items, retry_limit=args.retry_limit,
                                                   on_error=args.on_error, extra=extra)


def _listing_progress(i: int, n: int, line: str) -> None:
    if n > 1 and sys.stderr.isatty():
        print(f"\rlisting {i}/{n}: {line[:60]:<60}", end="", file=sys.stderr, flush=True)


def _end_listing_progress() -> None:
    """End the "listing i/n" line, so the reports that follow start on a line of their own."""
    if sys.stderr.isatty():
        print("\r\x1b[K", end="", file=sys.stderr, flush=True)


def _default_name(spec: str) -> str:
    if spec == "-" or "://" in spec:
        return "batch-" + time.strftime("%Y%m%d-%H%M%S")
    return Path(spec).stem or "batch"
