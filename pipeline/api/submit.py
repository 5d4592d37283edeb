"""A batch from a request body, read the way ``tubemill run`` reads its input file.

The recipe says what the text means: topics for the generate recipe, URLs and files expanded through
yt-dlp for the transcribe recipe, plain lines for the rest. Options start from the recipe's command-line
defaults (the same parser ``tubemill run`` uses, parsed with no flags), then the request's ``options`` are
laid over them and checked by the recipe, so a bad value is one 400 and not one failure per item.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from pipeline import errors
from pipeline.engine.recipe import Recipe


@dataclass
class Parsed:
    sources: list[Any]
    refused: list[str] = field(default_factory=list)  # "line 3: why", as the CLI prints them


def _defaults() -> argparse.Namespace:
    from pipeline.recipes.transcribe import arguments as transcribe_args

    p = argparse.ArgumentParser(add_help=False)
    transcribe_args.add_arguments(p)
    return p.parse_args([])


def read_sources(recipe: Recipe, text: str, settings: Any) -> Parsed:
    """The request's text as the recipe reads it (listing a channel may take a while: runs in a worker thread)."""
    from pipeline.recipes.transcribe.sources import drop_undecodable, expand, parse_lines

    if recipe.topics:
        from pipeline.recipes.generate.topics import parse_topics

        text, bad = drop_undecodable(text)
        parsed = parse_topics(text)
        refused = sorted([*bad, *parsed.invalid], key=lambda b: b.line_no)
        return Parsed(list(parsed.items), [str(b) for b in refused])
    if recipe.expands_sources:
        from pipeline.recipes.transcribe import arguments as transcribe_args
        from pipeline.recipes.transcribe.ytdlp import listing_options

        expansion = expand(text, transcribe_args.filters(_defaults()),
                           ydl_opts=listing_options(settings.ytdlp, None, proxy=None))
        return Parsed([e.to_item() for e in expansion.entries], [str(b) for b in expansion.invalid])
    sources, bad = parse_lines(text)
    return Parsed(list(sources), [str(b) for b in bad])


def batch_options(recipe: Recipe, options: dict[str, Any], settings: Any, n_items: int) -> dict[str, Any]:
    """The stored options: ``tubemill run``'s defaults with the request's options over them, checked."""
    from pipeline.recipes.transcribe import arguments as transcribe_args

    if not isinstance(options, dict):
        raise errors.InvalidInput("options must be a JSON object")
    args = _defaults()
    opts = transcribe_args.batch_options_from_args(args, settings, n_items, retry_limit=options.get("retry_limit"),
                                                   on_error=options.get("on_error"), extra=dict(options))
    if recipe.parse_options is not None:
        recipe.parse_options(opts, settings)
    return opts
