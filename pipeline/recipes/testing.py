"""Test stand-ins, never offered in the app. Probe stages: deterministic stand-ins for real work,
driven by the item's source line.

They exercise every path of the engine (sleeping, cancelling, transient and permanent
failures, rate limits, crashes) through the same contract as real stages, and they
are what ``bench/engine.py`` and the crash tests run. A source line is a label plus
directives, each optionally limited to one stage with ``@stage``::

    ep1 sleep=0.2 fail=2@probe_cpu perm@probe_llm ratelimit=1 crash@probe_net failif=/tmp/flag
    ep2 throttle=alice refuse=bob      (429 whenever account alice runs it; bob's cookies refused)

``noop_*`` stages do nothing at all: they measure the engine's own overhead.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pipeline.engine.recipe import Recipe
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.errors import AuthFailed, Cancelled, PermanentError, RateLimited, RetryableError


def parse_directives(source: str) -> dict[str, tuple[str, str | None]]:
    """``{"fail": ("2", "probe_cpu"), ...}`` from a probe source line."""
    out: dict[str, tuple[str, str | None]] = {}
    for token in source.split()[1:]:
        key, _, rest = token.partition("=")
        if "@" in (rest or key):
            if rest:
                value, _, stage = rest.partition("@")
            else:
                key, _, stage = key.partition("@")
                value = ""
        else:
            value, stage = rest, ""
        out[key] = (value, stage or None)
    return out


def _applies(d: dict[str, tuple[str, str | None]], key: str, stage: str) -> str | None:
    if key not in d:
        return None
    value, only = d[key]
    return value if only in (None, stage) else None


def _journal(ctx: StageContext, event: str) -> None:
    """Append one line per stage invocation to ``options["journal"]``: crash tests read it back."""
    path = ctx.options.get("journal")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{ctx.item_n} {ctx.stage} {event} {ctx.account or '-'} {time.monotonic():.4f}\n".encode())
        finally:
            os.close(fd)


def probe(item: dict[str, Any], ctx: StageContext) -> StageResult:
    _journal(ctx, "start")
    out = ctx.path(f"{ctx.stage}.txt")
    if out.exists():  # idempotent: a finished stage is never redone
        return StageResult(artifacts={ctx.stage: str(out)})
    d = parse_directives(item["source"])
    flag = _applies(d, "failif", ctx.stage)
    if flag and os.path.exists(flag):
        raise PermanentError(f"{ctx.stage}: failing while {flag} exists")
    if _applies(d, "perm", ctx.stage) is not None:
        raise PermanentError(f"{ctx.stage}: permanent failure requested by the source line")
    if ctx.account and ctx.account in (_applies(d, "refuse", ctx.stage) or "").split(","):
        raise AuthFailed(f"HTTP 403: cookies of {ctx.account} refused", account=ctx.account)
    if ctx.account and ctx.account in (_applies(d, "throttle", ctx.stage) or "").split(","):
        raise RateLimited("HTTP Error 429: Too Many Requests", account=ctx.account)
    fails = _applies(d, "fail", ctx.stage)
    if fails is not None and ctx.attempt <= int(fails or 1):
        raise RetryableError(f"{ctx.stage}: transient failure {ctx.attempt} of {fails}")
    limited = _applies(d, "ratelimit", ctx.stage)
    if limited is not None:
        marker = ctx.path(f".{ctx.stage}.ratelimited")
        seen = int(marker.read_text()) if marker.exists() else 0
        if seen < int(limited or 1):
            marker.write_text(str(seen + 1))
            raise RateLimited("HTTP Error 429: Too Many Requests", account=ctx.account, retry_after=30)
    if _applies(d, "crash", ctx.stage) is not None:
        raise RuntimeError(f"{ctx.stage}: unexpected crash requested by the source line")
    seconds = float(_applies(d, "sleep", ctx.stage) or 0)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if ctx.cancelled():
            raise Cancelled(f"{ctx.stage} cancelled")
        left = end - time.monotonic()
        ctx.progress(1 - max(0.0, left) / seconds)
        time.sleep(min(0.02, max(0.0, left)))
    _journal(ctx, "done")
    tmp = ctx.path(f"{ctx.stage}.txt.part")
    tmp.write_text(f"{item['source']}\n")
    os.replace(tmp, out)
    return StageResult(artifacts={ctx.stage: str(out)}, meta={"title": item["source"].split()[0]})


def noop(item: dict[str, Any], ctx: StageContext) -> StageResult:
    return StageResult()


for _res in ("net", "cpu", "gpu", "llm"):
    register(Stage(f"probe_{_res}", probe, resource=_res, account_bound=_res == "net",  # type: ignore[arg-type]
                   doc="test stand-in driven by the source line"))
    register(Stage(f"noop_{_res}", noop, resource=_res, doc="does nothing: engine overhead"))  # type: ignore[arg-type]


PROBE = Recipe("probe", ("probe_net", "probe_cpu", "probe_gpu", "probe_llm"), False, "engine test stand-in",
               offered=False)
NOOP = Recipe("noop", ("noop_net", "noop_cpu", "noop_gpu", "noop_llm"), False, "engine overhead benchmark",
              offered=False)
