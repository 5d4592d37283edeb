"""Summaries and translations through the OpenAI Batch API: prepare → submit → poll → ingest, at half the price.

The summarize stage, in batch mode, writes its request (``.llm_request.json``) into the
item folder and parks the item (status ``parked``, by this service). ``LLMBatchManager`` (a
service of the transcribe recipe: one thread per engine) gathers parked items into JSONL
files, uploads them, creates the batches, polls them (backing off while nothing changes) and ingests the results by
``custom_id``: the same pydantic schema as realtime, the same ``summary.json``/``.md``.
Every job's file and batch ids are in the batch's state before the next step runs, so a
restarted engine resumes polling and never submits the same requests twice.

This module is the service and its loop; its parts are beside it: the API client
(``llm_batch_api``), the request lines and their split into files (``llm_batch_lines``), reading
results (``llm_batch_results``), the moves of one parked item (``llm_batch_items``), the translate stage's
chunks (``llm_batch_translate``) and the by-hand ``tubemill llm-batch`` flow (``llm_batch_manual``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from pipeline import errors
from pipeline.common.llm import LLMConfig
from pipeline.recipes.transcribe.llm_batch_api import ACTIVE, ENDPOINT, TERMINAL, BatchAPI, NoBatchAPI
from pipeline.recipes.transcribe.llm_batch_items import (
    REALTIME_MARKER,
    REQUEST_FILE,
    save_jobs,
    to_realtime,
    upstream,
    write_results,
)
from pipeline.recipes.transcribe.llm_batch_lines import (
    BatchLimits,
    build_body,
    custom_id,
    line_tokens,
    request_line,
    split_lines,
    to_jsonl,
    validate_line,
)
from pipeline.recipes.transcribe.llm_batch_manual import (
    JOBS_DIR,
    ingest_job,
    load_job,
    prepare_job,
    refresh_job,
    submit_job,
)
from pipeline.recipes.transcribe.llm_batch_results import BATCH_DISCOUNT, LineResult, batch_cost, parse_results
from pipeline.recipes.transcribe.llm_batch_translate import (
    batch_stage_index,
    requests_of,
    without_llm,
    write_translations,
)

if TYPE_CHECKING:
    from pipeline.engine.core import Engine

__all__ = [
    "ACTIVE", "BATCH_DISCOUNT", "ENDPOINT", "JOBS_DIR", "REALTIME_MARKER", "REQUEST_FILE", "SERVICE", "TERMINAL",
    "AwaitLLMBatch", "BatchAPI", "BatchLimits", "LLMBatchManager", "LineResult", "NoBatchAPI", "batch_cost",
    "build_body", "custom_id", "ingest_job", "line_tokens", "load_job", "parse_results", "prepare_job",
    "refresh_job", "request_line", "resolve_mode", "service", "split_lines", "submit_job", "to_jsonl",
    "validate_line",
]

log = logging.getLogger("tubemill.llm_batch")

SERVICE = "llm_batch"


class AwaitLLMBatch(errors.Park):
    """Control signal from the summarize stage: park this item until its Batch API result is in."""

    def __init__(self, reason: str = "waiting for the Batch API") -> None:
        super().__init__(reason, SERVICE)


def resolve_mode(mode: str, n_items: int, min_items: int, deadline: str | None = None) -> str:
    """``auto``: the Batch API for big batches without a deadline (half price, within 24 h), else realtime."""
    if mode not in ("realtime", "batch", "auto"):
        raise errors.ConfigError(f"llm mode must be realtime, batch or auto, not {mode!r}")
    if mode == "auto":
        return "batch" if n_items > min_items and not deadline else "realtime"
    return mode


class LLMBatchManager:
    """One thread per engine: submit parked items, poll jobs, ingest results, fall back when needed."""

    name = SERVICE

    def __init__(self, engine: Engine, *, interval_s: float = 5.0, max_interval_s: float = 60.0,
                 limits: BatchLimits | None = None, retries: int = 1, max_failures: int = 5,
                 stuck_after_s: float = 25 * 3600.0) -> None:
        self.engine = engine
        self.max_failures = max_failures  # consecutive failed passes over one batch before its items go realtime
        self.stuck_after_s = stuck_after_s  # a job still open this long after creation is cancelled, then abandoned
        self._failures: dict[str, int] = {}
        self._hold: dict[str, float] = {}
        self.interval_s = interval_s
        self.max_interval_s = max_interval_s
        self.limits = limits or BatchLimits()
        self.retries = retries
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._delay: dict[str, float] = {}
        self._next_poll: dict[str, float] = {}
        self._api: dict[str, BatchAPI] = {}
        self.last_error: str | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tubemill-llm-batch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def kick(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                self.last_error = None
            except Exception as exc:  # a network hiccup must not end the poller; it retries next tick
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("LLM batch manager: %s", self.last_error)
            self._wake.wait(min(self.interval_s, 1.0))
            self._wake.clear()

    # -- one pass -----------------------------------------------------------------------------------
    def tick(self) -> None:
        """One pass over every batch with parked items or open jobs.

        A batch whose Batch API calls keep failing (endpoint down, key refused, the job
        gone) is not retried forever: after ``max_failures`` passes (backing off between
        them) its jobs are abandoned and its items summarized realtime, where the usual
        fallbacks apply. Nothing stays parked for good.
        """
        store = self.engine.store
        if store is None:
            return
        for bid in store.batch_ids():
            header = store.header(bid)
            jobs = list(header.get("llm_jobs") or [])
            parked = store.item_numbers(bid, ["parked"])
            open_jobs = [j for j in jobs if not j.get("ingested")]
            if not open_jobs and not parked:
                continue
            if time.monotonic() < self._hold.get(bid, 0.0):
                continue
            try:
                self._submit_ready(bid, header, jobs, parked)
                self._poll_jobs(bid, header)
                self._check_stuck(bid)
                self._failures.pop(bid, None)
            except errors.AuthFailed as exc:
                self._give_up(bid, f"the Batch API refused the key ({exc})")
            except (errors.TubemillError, OSError) as exc:
                self._failed_pass(bid, header, exc)

    def _failed_pass(self, bid: str, header: dict[str, Any], exc: Exception) -> None:
        """Back off before the batch's next pass; after ``max_failures`` in a row, give up on its jobs."""
        k = self._failures[bid] = self._failures.get(bid, 0) + 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("Batch API pass %d of %d for %s failed: %s", k, self.max_failures, header.get("name"),
                    self.last_error)
        if k >= self.max_failures:
            self._give_up(bid, f"the Batch API kept failing ({self.last_error})")
        else:
            self._hold[bid] = time.monotonic() + min(self.max_interval_s, self.interval_s * 2 ** (k - 1))

    def _give_up(self, bid: str, note: str) -> None:
        """Abandon the batch's open jobs (cancelled best-effort) and summarize its parked items realtime."""
        store = self.engine.store
        assert store is not None
        self._failures.pop(bid, None)
        self._hold.pop(bid, None)
        jobs = list(store.header(bid).get("llm_jobs") or [])
        for job in jobs:
            if job.get("ingested"):
                continue
            if job.get("batch_id") and job.get("status") in ACTIVE | {"validating"}:
                try:
                    self.api(bid).cancel(job["batch_id"])
                except errors.TubemillError as exc:
                    log.info("could not cancel %s: %s", job["batch_id"], exc)
            job.update(ingested=True, abandoned=note, ingested_at=time.time())
        log.warning("%s; summaries run realtime instead", note)
        store.set_batch(bid, llm_mode_effective="realtime", llm_note=f"{note}; summaries ran realtime instead")
        save_jobs(self.engine, bid, jobs)
        for n in store.item_numbers(bid, ["parked"]):
            to_realtime(self.engine, bid, n)

    def _check_stuck(self, bid: str) -> None:
        """A job past its 24 h window (plus grace) is cancelled; one still open twice as long is abandoned."""
        store = self.engine.store
        assert store is not None
        jobs = list(store.header(bid).get("llm_jobs") or [])
        now, changed = time.time(), False
        for job in jobs:
            if job.get("ingested") or not job.get("batch_id") or job.get("status") in TERMINAL:
                continue
            age = now - float(job.get("created_at") or now)
            if age > 2 * self.stuck_after_s:
                self._give_up(bid, f"Batch API job {job['batch_id']} still {job.get('status')} after "
                                   f"{age / 3600:.0f} h")
                return
            if age > self.stuck_after_s and not job.get("cancel_requested"):
                try:
                    self.api(bid).cancel(job["batch_id"])
                except errors.TubemillError as exc:
                    log.info("could not cancel stuck job %s: %s", job["batch_id"], exc)
                job["cancel_requested"] = time.time()
                changed = True
        if changed:
            save_jobs(self.engine, bid, jobs)

    def _config(self, bid: str) -> LLMConfig:
        from pipeline.config.secrets import llm_config_for

        opts = self.engine.store.header(bid).get("options", {})  # type: ignore[union-attr]
        return llm_config_for(self.engine.home, settings=self.engine.settings, options=opts)

    def api(self, bid: str) -> BatchAPI:
        """The batch's API client (its own LLM options: model, server), made once."""
        if bid not in self._api:
            self._api[bid] = BatchAPI(self._config(bid))
        return self._api[bid]

    # -- submit -------------------------------------------------------------------------------------
    def _submit_ready(self, bid: str, header: dict[str, Any], jobs: list[dict[str, Any]], parked: list[int]) -> None:
        """Parked items not yet in an open job go out in new jobs, once the rest of the batch has caught up."""
        self._resume_uploaded(bid, jobs)
        taken = {n for job in jobs if not job.get("ingested") for n in job.get("items", {}).values()}
        todo = [n for n in parked if n not in taken]
        if not todo:
            return
        k = batch_stage_index(header)  # summarize, or translate when the batch translates
        if upstream(self.engine, bid, k) and len(todo) < self.limits.max_requests:
            return  # wait for the rest of the batch to reach that stage: one job, not hundreds
        lines, ends, ns = [], {}, {}
        for n in todo:
            for req in requests_of(self.engine, bid, n):  # a summary's one line, a translation's chunks
                lines.append(request_line(req["custom_id"], req["body"]))
                ends[req["custom_id"]] = req.get("end", 1e12)
                ns[req["custom_id"]] = n
        if not lines:
            return
        try:
            files = split_lines(lines, self.limits)
        except ValueError as exc:
            for n in set(ns.values()):
                without_llm(self.engine, bid, n, f"invalid Batch API request: {exc}")
            return
        for part in files:
            if not self._submit_part(bid, header, jobs, part, ends, ns):
                return

    def _resume_uploaded(self, bid: str, jobs: list[dict[str, Any]]) -> None:
        """Resume a job whose file was uploaded but whose batch id was lost in a crash."""
        for job in jobs:
            if job.get("file_id") and not job.get("batch_id") and job.get("status") == "uploaded":
                found = self.api(bid).find_by_job(job["id"])
                if found is None:
                    found = self.api(bid).create(job["file_id"], {"tubemill_job": job["id"], "tubemill_batch": bid})
                job.update(batch_id=found.id, status=found.status)
                save_jobs(self.engine, bid, jobs)

    def _submit_part(self, bid: str, header: dict[str, Any], jobs: list[dict[str, Any]], part: list[dict[str, Any]],
                     ends: dict[str, float], ns: dict[str, int]) -> bool:
        """Upload one file and create its job, saving the ids after each call; False: no Batch API here."""
        job = {"id": uuid.uuid4().hex[:12], "status": "preparing", "items": {ln["custom_id"]: ns[ln["custom_id"]]
                                                                               for ln in part},
               "ends": {ln["custom_id"]: ends[ln["custom_id"]] for ln in part}, "created_at": time.time(),
               "request_counts": {"total": len(part), "completed": 0, "failed": 0}, "ingested": False}
        try:
            job["file_id"] = self.api(bid).upload(f"tubemill-{bid}-{job['id']}.jsonl", to_jsonl(part))
            job["status"] = "uploaded"
            jobs.append(job)
            save_jobs(self.engine, bid, jobs)
            created = self.api(bid).create(job["file_id"], {"tubemill_job": job["id"], "tubemill_batch": bid})
        except NoBatchAPI as exc:
            self._fallback_all(bid, jobs, job, f"{exc}; summaries run realtime instead")
            return False
        job.update(batch_id=created.id, status=created.status)
        save_jobs(self.engine, bid, jobs)
        log.info("batch %s: submitted %d LLM request(s) as %s", header["name"], len(part), created.id)
        return True

    def _fallback_all(self, bid: str, jobs: list[dict[str, Any]], job: dict[str, Any], note: str) -> None:
        """No Batch API at this endpoint: the batch goes realtime, every parked item with it."""
        log.warning("%s", note)
        jobs = [j for j in jobs if j is not job]
        self.engine.store.set_batch(bid, llm_mode_effective="realtime", llm_note=note)  # type: ignore[union-attr]
        save_jobs(self.engine, bid, jobs)
        for n in self.engine.store.item_numbers(bid, ["parked"]):  # type: ignore[union-attr]
            to_realtime(self.engine, bid, n)

    # -- poll and ingest ----------------------------------------------------------------------------
    def _poll_jobs(self, bid: str, header: dict[str, Any]) -> None:
        """Every open job whose next poll is due; one that ended is ingested. Saved once, when any changed."""
        jobs = list(self.engine.store.header(bid).get("llm_jobs") or [])  # type: ignore[union-attr]
        now = time.monotonic()
        changed = False
        for job in jobs:
            if job.get("ingested") or not job.get("batch_id"):
                continue
            if now < self._next_poll.get(job["batch_id"], 0):
                continue
            changed = self._poll_one(bid, job, now) or changed
        if changed:
            save_jobs(self.engine, bid, jobs)

    def _poll_one(self, bid: str, job: dict[str, Any], now: float) -> bool:
        """One job's status (backing off while it does not move); True when the job's record changed."""
        key = job["batch_id"]
        changed = False
        try:
            b = self.api(bid).retrieve(key)
        except NoBatchAPI:  # the job is gone (server restarted, another account): its items go realtime
            job.update(ingested=True, abandoned="the Batch API no longer knows this job", ingested_at=time.time())
            for n in job.get("items", {}).values():
                if self.engine.store.item(bid, n)["status"] == "parked":  # type: ignore[union-attr]
                    to_realtime(self.engine, bid, n)
            return True
        counts = b.request_counts.model_dump() if b.request_counts else job.get("request_counts")
        moved = b.status != job.get("status") or counts != job.get("request_counts")
        self._delay[key] = self.interval_s if moved else min(self.max_interval_s,
                                                             self._delay.get(key, self.interval_s) * 1.5)
        self._next_poll[key] = now + self._delay[key]
        if moved:
            job.update(status=b.status, request_counts=counts)
            changed = True
        if b.status == "failed" and not job.get("failure"):
            errs = getattr(b, "errors", None)
            data = getattr(errs, "data", None) or []
            job["failure"] = "; ".join(f"{e.code}: {e.message}" for e in data)[:500] or "failed"
            changed = True
        if b.status in TERMINAL:
            self._ingest(bid, job, b)
            changed = True
        return changed

    def _ingest(self, bid: str, job: dict[str, Any], b: Any) -> None:
        """A job that ended: its output and error files read, each parked item given its line's outcome."""
        api = self.api(bid)
        config = api.config
        out_text = api.content(b.output_file_id) if b.output_file_id else ""
        err_text = api.content(b.error_file_id) if b.error_file_id else ""
        results = parse_results(out_text, err_text, job.get("ends", {}), config.model)
        write_translations(self.engine, bid, job, b, results, config, self.retries)
        write_results(self.engine, bid, job, b, results, config, self.retries)
        job["ingested"] = True
        job["ingested_at"] = time.time()

    # -- cancel -------------------------------------------------------------------------------------
    def cancel_batch(self, bid: str) -> None:
        """The engine's cancel hook (the Service protocol)."""
        self.cancel_jobs(bid)

    def cancel_jobs(self, bid: str) -> None:
        """Cancelling a Tubemill batch cancels its Batch API jobs (best effort; results already in are kept)."""
        store = self.engine.store
        if store is None:
            return
        for job in store.header(bid).get("llm_jobs") or []:
            if job.get("batch_id") and job.get("status") in ACTIVE:
                try:
                    self.api(bid).cancel(job["batch_id"])
                except errors.TubemillError as exc:
                    log.warning("could not cancel %s: %s", job["batch_id"], exc)


def service(engine: Engine) -> LLMBatchManager:
    """The transcribe recipe's service factory: one Batch API manager per engine."""
    return LLMBatchManager(engine, interval_s=engine.settings.llm_batch_poll_s)
