"""What the pages read of a running batch, published by the scheduler about once a second: the items
running now, why nothing starts (a held pool, accounts waiting, and until when), and the ETA."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.common.units import fmt_duration
from pipeline.engine.estimator import estimate_eta
from pipeline.engine.pacing import PACED

if TYPE_CHECKING:
    from pipeline.engine.scheduler import Scheduler


def publish_runtime(sched: Scheduler) -> None:
    """Each running batch's active items, hold reason and ETA into the store (pages read them there)."""
    e = sched.e
    assert e.store is not None
    accounts = e.pacing.accounts
    for run in list(sched.runs.values()):
        s = e.store.summary(run.batch_id)
        active = []
        for n, stage in sorted(run.running.items())[:50]:
            it = e.store.item(run.batch_id, n)
            active.append({"n": n, "title": it.get("title") or it["source"][:80], "stage": stage,
                           "progress": it.get("progress", 0.0)})
        held = next((f"{p}: {r}" for p, r in sched.held.items() if r), None)
        if held is None and accounts.held and run.ready[PACED]:
            held = f"downloads: {accounts.held}"
        eta = estimate_eta([st.name for st in run.stages], [sched.pool_for(st) for st in run.stages],
                           e.store.remaining_by_stage(run.batch_id), s.stage_stats, e.pool_sizes, run.costs)
        waiting = accounts.wait_reason(e.pacing.of(run.accounts), e.clock.now()) if (
            run.ready[PACED] and not run.running) else None
        if waiting is not None:
            # Nothing runs because every account of the batch waits: say who, why and until when, and count
            # the wait in the ETA (a cooled account once showed "ETA 10s" for a 30-minute wait).
            secs, why = waiting
            held = held or f"downloads wait {fmt_duration(secs)}: {why}"
            eta = (eta or 0.0) + secs
        e.store.set_runtime(run.batch_id, active=active, eta_s=eta, held=held)
    e.pacing.save(e.clock.now(), only_if_changed=True)
