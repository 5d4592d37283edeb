"""What the pages read of a running batch, published by the scheduler about once a second: the items
running now, why nothing starts (a held pool, accounts waiting, and until when), the ETA, and why each
queued item waits (:mod:`~pipeline.engine.waits`, in ``<home>/waits.json`` for followers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import notify
from pipeline.common.units import fmt_duration
from pipeline.engine import waits
from pipeline.engine.estimator import estimate_eta
from pipeline.engine.pacing import on_site
from state.models import BatchState

if TYPE_CHECKING:
    from pipeline.engine.scheduler import Scheduler


def publish_runtime(sched: Scheduler) -> None:
    """Each running batch's active items, hold reason, ETA and wait reasons into the store (pages read them
    there) and the home's wait file (followers read it)."""
    e = sched.e
    assert e.store is not None
    accounts = e.pacing.accounts
    now = e.clock.now()
    snapshot: dict[str, waits.Groups] = {}
    for run in list(sched.runs.values()):
        s = e.store.summary(run.batch_id)
        active = []
        for n, stage in sorted(run.running.items())[:50]:
            it = e.store.item(run.batch_id, n)
            active.append({"n": n, "title": it.get("title") or it["source"][:80], "stage": stage,
                           "progress": it.get("progress", 0.0)})
        held = next((f"{p}: {r}" for p, r in sched.held.items() if r), None)
        if held is None and accounts.held and run.paced:
            held = f"downloads: {accounts.held}"
        eta = estimate_eta([st.name for st in run.stages], [sched.pool_for(st) for st in run.stages],
                           e.store.remaining_by_stage(run.batch_id), s.stage_stats, e.pool_sizes, run.costs)
        names = e.pacing.of(run.accounts)
        queues = [site for site, q in run.paced.items() if q] if not run.running else []
        site_waits = [accounts.wait_reason(on_site(names, site), now) for site in queues]
        if queues and all(w is not None for w in site_waits):
            # Nothing runs because every account of the batch waits on every site it needs: say who, why and
            # until when, and count the wait in the ETA (a cooled account once showed "ETA 10s" for 30 minutes).
            secs, why = min(w for w in site_waits if w is not None)
            held = held or f"downloads wait {fmt_duration(secs)}: {why}"
            eta = (eta or 0.0) + secs
        groups = waits.queue_groups(sched, run, now)
        snapshot[run.batch_id] = groups
        if held is None and not run.running and s.state == BatchState.ACTIVE:
            held = waits.batch_held(groups)  # "0 running" never stands without a reason
        e.store.set_runtime(run.batch_id, active=active, eta_s=eta, held=held)
        if e.durable:  # "held for long" is a notification; a simulation (the plan) sends none
            notify.note_held(e.home, run.batch_id, s.name, held if s.state == BatchState.ACTIVE else None, now)
    sched.waits_published = waits.publish(e.home, snapshot, now, sched.waits_published)
    e.pacing.save(now, only_if_changed=True)
