"""The stage contract shared by every recipe: ``run(item, ctx) -> StageResult``, and the stage registry.

A batch stores its stages by name, so stages register here under their names when their
recipe module is imported (``pipeline.engine.recipe`` loads the recipes it finds).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pipeline.errors import ConfigError

Resource = Literal["net", "cpu", "gpu", "llm"]
RESOURCES: tuple[Resource, ...] = ("net", "cpu", "gpu", "llm")


@dataclass(frozen=True)
class StageResult:
    """Files a stage produced (name -> path inside the workdir) and facts it learned (title, duration…)."""

    artifacts: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # False when the stage found its work already done (captions made the transcription, an earlier run's
    # file): its seconds say nothing about the stage's speed, so estimates leave them out.
    measured: bool = True


@dataclass
class StageContext:
    """What a running stage may use. Built by the runner per attempt; never shared between items."""

    batch_id: str
    batch_name: str
    item_n: int
    stage: str
    workdir: Path
    options: dict[str, Any]
    attempt: int
    account: str | None
    _progress: Callable[[float], None]
    _cancelled: Callable[[], bool]
    home: Path = Path(".")
    pool_size: int = 1
    cookiefile: str | None = field(default=None, repr=False)  # the account's cookies.txt, for yt-dlp only
    browser: str | None = field(default=None, repr=False)  # or the browser whose cookies it uses ("chrome:Profile 1")
    proxy: str | None = field(default=None, repr=False)  # the account's own proxy (a secret: never logged)
    ytdlp: dict[str, Any] = field(default_factory=dict, repr=False)  # [ytdlp] of settings.toml, for every yt-dlp call
    min_free_disk_mb: float | None = None  # the engine's governor floor: a download never eats into it
    # The recipe's frozen options object (``Recipe.parse_options`` of the batch's stored options and the live
    # settings, parsed once per batch), and the live settings themselves: no stage reads settings.toml.
    # None when a caller (a test, a benchmark) built the context by hand: recipes then parse ``options``.
    opts: Any = field(default=None, repr=False)
    settings: Any = field(default=None, repr=False)

    @property
    def tmpdir(self) -> Path:
        """Scratch space removed when the item finishes."""
        path = self.workdir / ".tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def progress(self, fraction: float) -> None:
        self._progress(min(1.0, max(0.0, float(fraction))))

    def cancelled(self) -> bool:
        return self._cancelled()

    def path(self, name: str) -> Path:
        """A file inside the workdir; refuses names that would escape it."""
        p = (self.workdir / name).resolve()
        if not p.is_relative_to(self.workdir.resolve()):
            raise ValueError(f"{name!r} escapes the item folder")
        return p


StageFn = Callable[[dict[str, Any], StageContext], StageResult]


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFn
    resource: Resource = "cpu"
    account_bound: bool = False
    doc: str = ""
    # For an account-bound stage: will this item really send a request? (A download that captions or an
    # earlier result made unnecessary must not wait minutes for an account, nor spend its pacing.)
    needs_account: Callable[[dict[str, Any], Path], bool] | None = None


def flag(value: Any) -> bool:
    """A yes/no option as a CSV row, a form or ``--set KEY=VALUE`` gives it: true only for 1/true/yes/on."""
    return str(value).strip().lower() in ("1", "true", "yes", "on")


_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)


def safe_name(text: str, max_len: int = 60, default: str = "untitled") -> str:
    """A file-name fragment that cannot traverse directories or upset any filesystem."""
    text = unicodedata.normalize("NFKC", str(text or ""))
    text = _UNSAFE.sub("-", text).strip(" .-_")
    text = re.sub(r"[-\s]+", "-", text)
    text = text.replace("..", ".")
    return (text[:max_len].rstrip(" .-_") or default)


_REGISTRY: dict[str, Stage] = {}
# Loads the installed recipes (their stages register on import); set by pipeline.engine.recipe, which
# imports this module — so the lookup below reaches the recipes without importing upward.
_loader: Callable[[], object] | None = None


def set_loader(fn: Callable[[], object]) -> None:
    global _loader
    _loader = fn


def register(stage: Stage) -> Stage:
    if stage.resource not in RESOURCES:
        raise ConfigError(f"stage {stage.name!r}: unknown resource {stage.resource!r}")
    _REGISTRY[stage.name] = stage
    return stage


def get_stage(name: str) -> Stage:
    if name not in _REGISTRY and _loader is not None:
        _loader()  # a stage of a recipe not loaded yet registers with it
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown stage {name!r}") from None


def all_stages() -> dict[str, Stage]:
    if _loader is not None:
        _loader()
    return dict(_REGISTRY)


T = TypeVar("T")


def typed_options(ctx: StageContext, kind: type[T], parse: Callable[[Any, Any], T]) -> T:
    """The batch's options for a stage as the recipe's type: ``ctx.opts`` from the engine, else parsed and kept.

    A context built by hand (tests, benchmarks) has no ``opts``; an engine context has None when
    the stored options did not parse, and the error ``parse`` raises here fails the item with the
    reason, naming the key. ``parse`` gets ``(ctx.options, ctx.settings)``.
    """
    if not isinstance(ctx.opts, kind):
        ctx.opts = parse(ctx.options, ctx.settings)
    return ctx.opts
