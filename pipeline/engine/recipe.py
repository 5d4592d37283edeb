"""What the engine knows of a recipe: a named list of stages plus hooks, found without importing recipes.

A batch stores its recipe's stage names, so a recipe changed later never rewrites the
plan of a batch already running. The engine never imports a recipe module: recipes are
found through the ``tubemill.recipes`` entry-point group (``pyproject.toml``), the way
pytest finds plugins, and everything recipe-specific reaches the engine through the
:class:`Recipe` object — its batch outputs, its long-lived services, its options parser.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from pipeline import errors
from pipeline.engine.estimator import Cost
from pipeline.engine.stage import Stage, get_stage, set_loader
from pipeline.errors import ConfigError

log = logging.getLogger("tubemill.engine")

ENTRY_POINTS = "tubemill.recipes"

# outputs(batch header, items, batch folder, files the engine wrote) -> the recipe's own files (name -> path)
Outputs = Callable[[dict[str, Any], list[dict[str, Any]], Path, dict[str, Path]], dict[str, Path]]


@dataclass(frozen=True)
class Report:
    """What a recipe adds to the manifest and ``errors.md`` every batch gets."""

    # Artifacts every manifest entry names, null where missing (the CSV's ``file_<kind>`` columns), before
    # whatever else an item made.
    file_kinds: tuple[str, ...] = ()
    # row(item) -> extra keys of the item's manifest entry (transcribe: how its summary came to be).
    row: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # sections(items, batch name) -> Markdown lines appended to errors.md (transcribe: flagged summaries).
    sections: Callable[[list[dict[str, Any]], str], list[str]] | None = None


NO_REPORT = Report()


@dataclass(frozen=True)
class Reopen:
    """A recipe's way to run finished items again from one stage (``tubemill retry-summaries``): items
    carrying ``flag`` reopen at ``stage``; every stage before it stays done."""

    flag: str
    stage: str
    remove: tuple[str, ...] = ()  # files in the item folder removed first (the stage's old output)
    before: Callable[[], None] | None = None  # owner-side preparation (forget a remembered endpoint failure)
    note: str = ""  # the line in the item's log


class Service(Protocol):
    """A long-lived helper a recipe runs next to the scheduler (the Batch API poller).

    A stage parks an item by raising :class:`pipeline.errors.Park` naming the service; the
    service brings it back with ``Engine.release`` or ``Engine.fail_parked``. The engine
    starts it with the scheduler, kicks it when an item is parked, tells it when a batch is
    cancelled and stops it on shutdown.
    """

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def kick(self) -> None: ...
    def cancel_batch(self, batch_id: str) -> None: ...


@dataclass(frozen=True)
class Recipe:
    name: str
    stages: tuple[str, ...]
    expands_sources: bool  # URLs/playlists/folders are listed into one item per video before the batch starts
    doc: str = ""
    topics: bool = False  # input is topics (lines or CSV with per-row options), not sources
    offered: bool = True  # shown in the app and the CLI's choices (test stand-ins are not)
    default: bool = False  # the recipe a batch gets when none is named
    # Batch outputs beyond the manifest, error report and stats every batch gets (a PDF, a ZIP).
    outputs: Outputs | None = None
    # What the batch's manifest entries and errors.md add for this recipe (file columns, sections).
    report: Report = NO_REPORT
    # calibrate(home, settings) -> {stage: seconds per media second} measured on this machine (cached by the
    # recipe), for a home that has not measured those stages yet: a fresh home's estimate.
    calibrate: Callable[[Path, Any], Mapping[str, float]] | None = None
    # Long-lived helpers started with the scheduler: factory(engine) -> Service.
    services: tuple[Callable[[Any], Service], ...] = ()
    # parse_options(batch options, live settings) -> the recipe's frozen options object, handed to stages
    # as ``ctx.opts``; called when a batch is activated and again when settings change. It raises a
    # TubemillError naming the first bad value: the CLI and the app refuse such a batch before it starts,
    # the engine (frozen_options) takes None and lets each stage fail its item with the reason.
    parse_options: Callable[[Mapping[str, Any], Any], Any] | None = None
    # The DAG: stage -> the stages it needs (default: the stage before it). Independent stages of one item
    # run at once (generate: narration beside frames and metadata); resume is unchanged, since an item's
    # finished stages are recorded whatever order they finished in.
    needs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # What each stage costs before it is measured here (the estimator's defaults; see engine.estimator).
    costs: Mapping[str, Cost] = field(default_factory=dict)
    # Named reopen actions (``Engine.reopen(batch, name)``).
    actions: Mapping[str, Reopen] = field(default_factory=dict)

    def stage_objects(self) -> list[Stage]:
        return [get_stage(n) for n in self.stages]


_RECIPES: dict[str, Recipe] = {}
_loaded = False
_load_lock = threading.Lock()


def register_recipe(recipe: Recipe) -> Recipe:
    """Add a recipe (the entry points do this for the built-in ones; a test may add its own)."""
    _RECIPES[recipe.name] = recipe
    return recipe


def load_recipes() -> dict[str, Recipe]:
    """Every recipe installed, by name (entry points loaded once; a broken one is logged, not fatal)."""
    global _loaded
    if not _loaded:
        with _load_lock:
            if not _loaded:
                for ep in sorted(metadata.entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
                    try:
                        recipe = ep.load()
                    except Exception:  # one broken plugin must not take the others down
                        log.exception("cannot load recipe %s (%s)", ep.name, ep.value)
                        continue
                    _RECIPES.setdefault(recipe.name, recipe)
                _loaded = True
    return dict(_RECIPES)


def get_recipe(name: str) -> Recipe:
    recipes = load_recipes()
    if name not in recipes:
        raise ConfigError(f"unknown recipe {name!r} (known: {', '.join(sorted(recipes))})")
    return recipes[name]


def offered_recipes() -> dict[str, Recipe]:
    return {n: r for n, r in load_recipes().items() if r.offered}


def default_recipe() -> str:
    recipes = load_recipes()
    return next((n for n, r in recipes.items() if r.default), next(iter(recipes), ""))


def recipe_stages(name_or_stages: str | list[str]) -> list[Stage]:
    """Stage objects for a recipe name or an explicit list of stage names."""
    names = get_recipe(name_or_stages).stages if isinstance(name_or_stages, str) else name_or_stages
    return [get_stage(n) for n in names]


def recipe_of(options: Mapping[str, Any]) -> Recipe | None:
    """The recipe a batch was made from (stored as ``recipe_name``); None for an explicit stage list."""
    name = options.get("recipe_name")
    if not name:
        return None
    try:
        return get_recipe(str(name))
    except ConfigError:
        return None


def frozen_options(options: Mapping[str, Any], settings: Any) -> Any:
    """The recipe's frozen options for a batch; None for an explicit stage list, a recipe without them, or
    stored options that do not parse.

    None keeps a batch with a bad stored value from stopping the engine when it activates the
    batch; each stage then parses the options itself and fails its item with the error that
    names the key (the CLI and the app refuse such a batch up front with the same parser).
    """
    recipe = recipe_of(options)
    if recipe is None or recipe.parse_options is None:
        return None
    try:
        return recipe.parse_options(options, settings)
    except errors.TubemillError as exc:
        log.warning("batch options do not parse (%s); stages will report it", exc)
        return None


def report_of(batch: Mapping[str, Any]) -> Report:
    """The report parts of a batch's recipe; a header naming none (an older batch, a hand-made one) gets the
    default recipe's, as a batch submitted without a recipe does; an explicit stage list gets none."""
    options = batch.get("options") or {}
    if options.get("recipe_name"):
        recipe = recipe_of(options)
        return recipe.report if recipe is not None else NO_REPORT
    name = default_recipe()
    return get_recipe(name).report if name else NO_REPORT


def companions(stages: list[str], needs: dict[str, tuple[str, ...]]) -> list[tuple[int, ...]]:
    """For each stage k, the later stages whose needs all come before k: they can run beside it.

    A stage the recipe says nothing about needs the stage before it, so a plain list of
    stages runs one after another, as it always did.
    """
    index = {s: i for i, s in enumerate(stages)}
    need = [frozenset(index[x] for x in needs.get(s, (stages[i - 1],) if i else ()) if x in index)
            for i, s in enumerate(stages)]
    return [tuple(j for j in range(k + 1, len(stages)) if all(d < k for d in need[j])) for k in range(len(stages))]


set_loader(load_recipes)
