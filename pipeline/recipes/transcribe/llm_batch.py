"""Summaries through the OpenAI Batch API: prepare → submit → poll → ingest, at about half the price.

The summarize stage, in batch mode, writes its request (``.llm_request.json``) into the
item folder and parks the item (status ``parked``, by this service). ``LLMBatchManager`` (a
service of the transcribe recipe: one thread per engine) gathers parked items into JSONL
files, uploads them, creates the batches, polls them (backing off while nothing changes) and ingests the results by
``custom_id``: the same pydantic schema as realtime, the same ``summary.json``/``.md``.
Every job's file and batch ids are in the batch's state before the next step runs, so a
restarted engine resumes polling and never submits the same requests twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import errors
from pipeline.common.llm import LLMConfig, cost_usd, count_tokens, make_client, map_error
from pipeline.common.llmcall import SoftMiss
from pipeline.engine.stage import flag
from pipeline.recipes.transcribe.summary import SYSTEM_PROMPT, chunk_transcript, single_prompt, transcript_end
from pipeline.recipes.transcribe.summary_model import WIRE_SCHEMA
from pipeline.recipes.transcribe.summary_repair import as_summary, parse_json

if TYPE_CHECKING:
    from pipeline.engine.core import Engine

log = logging.getLogger("tubemill.llm_batch")

ENDPOINT = "/v1/chat/completions"
REQUEST_FILE = ".llm_request.json"
REALTIME_MARKER = ".llm_realtime"
BATCH_DISCOUNT = 0.5
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
ACTIVE = frozenset({"validating", "in_progress", "finalizing", "cancelling"})


SERVICE = "llm_batch"


class AwaitLLMBatch(errors.Park):
    """Control signal from the summarize stage: park this item until its Batch API result is in."""

    def __init__(self, reason: str = "waiting for the Batch API") -> None:
        super().__init__(reason, SERVICE)


class NoBatchAPI(errors.TubemillError):
    """The endpoint answers chat completions but has no /v1/files or /v1/batches (most local servers)."""


@dataclass(frozen=True)
class BatchLimits:
    """Where a job's requests are split into several files (the API's limits, or a configured token cap)."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 2**20
    max_enqueued_tokens: int | None = None


def resolve_mode(mode: str, n_items: int, min_items: int, deadline: str | None = None) -> str:
    """``auto``: the Batch API for big batches without a deadline (half price, within 24 h), else realtime."""
    if mode not in ("realtime", "batch", "auto"):
        raise errors.ConfigError(f"llm mode must be realtime, batch or auto, not {mode!r}")
    if mode == "auto":
        return "batch" if n_items > min_items and not deadline else "realtime"
    return mode


# ---------------------------------------------------------------------- prepare
def custom_id(batch_id: str, n: int, stage: str, body: Mapping[str, Any]) -> str:
    """Unique and stable: the same request for the same item always gets the same id."""
    digest = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    return f"tm-{batch_id}-{n}-{stage}-{digest}"


def build_body(transcript: Mapping[str, Any], title: str, config: LLMConfig, max_tokens: int = 100_000,
               home: Path | None = None) -> dict[str, Any] | None:
    """One chat-completions body summarizing the whole transcript, or None when it does not fit one request.

    The request format is the server's learned rung of the capability ladder (json_schema
    unless the server is known to refuse it), like a realtime call.
    """
    from pipeline.common.llmcall import capability, response_format, system_prompt

    chunks = chunk_transcript(transcript, max_tokens, config.model)
    if len(chunks) != 1:
        return None
    cap = capability(home, config.base_url, config.model)
    body: dict[str, Any] = {
        "model": config.model,
        "messages": [{"role": "system", "content": system_prompt(cap.rung, SYSTEM_PROMPT, WIRE_SCHEMA)},
                     {"role": "user", "content": single_prompt(title, transcript_end(transcript), chunks[0])}],
    }
    fmt = response_format(cap.rung, "summary", WIRE_SCHEMA)
    if fmt is not None:
        body["response_format"] = fmt
    if config.temperature is not None and "temperature" not in cap.drop_params:
        body["temperature"] = config.temperature
    return body


def request_line(cid: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": dict(body)}


def validate_line(line: Mapping[str, Any]) -> None:
    """What the API would refuse, refused here before anything is uploaded."""
    if set(line) != {"custom_id", "method", "url", "body"}:
        raise ValueError(f"request line has keys {sorted(line)}, expected custom_id, method, url, body")
    if not isinstance(line["custom_id"], str) or not line["custom_id"] or len(line["custom_id"]) > 512:
        raise ValueError("custom_id must be a non-empty string of at most 512 characters")
    if line["method"] != "POST" or line["url"] != ENDPOINT:
        raise ValueError(f"{line['custom_id']}: method must be POST and url {ENDPOINT}")
    body = line["body"]
    if not isinstance(body, Mapping) or not body.get("model") or not body.get("messages"):
        raise ValueError(f"{line['custom_id']}: body needs model and messages")
    json.dumps(body)


def line_tokens(line: Mapping[str, Any]) -> int:
    return sum(count_tokens(str(m.get("content", "")), line["body"]["model"]) for m in line["body"]["messages"])


def split_lines(lines: list[dict[str, Any]], limits: BatchLimits) -> list[list[dict[str, Any]]]:
    """Files of at most max_requests lines, max_bytes bytes and (when set) max_enqueued_tokens tokens."""
    ids = [ln["custom_id"] for ln in lines]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate custom_id in one job")
    files: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    size = tokens = 0
    for ln in lines:
        validate_line(ln)
        b = len(json.dumps(ln, ensure_ascii=False).encode()) + 1
        t = line_tokens(ln) if limits.max_enqueued_tokens else 0
        if cur and (len(cur) >= limits.max_requests or size + b > limits.max_bytes
                    or (limits.max_enqueued_tokens and tokens + t > limits.max_enqueued_tokens)):
            files.append(cur)
            cur, size, tokens = [], 0, 0
        cur.append(ln)
        size += b
        tokens += t
    if cur:
        files.append(cur)
    return files


def to_jsonl(lines: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(ln, ensure_ascii=False) + "\n" for ln in lines).encode("utf-8")


# ---------------------------------------------------------------------- the API
class BatchAPI:
    """The few Files/Batches calls we make, with errors mapped onto our tree."""

    def __init__(self, config: LLMConfig, client: Any | None = None) -> None:
        self.config = config
        self.client = client or make_client(config)

    def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        import openai

        try:
            return fn(*args, **kw)
        except openai.NotFoundError as exc:
            raise NoBatchAPI(f"this endpoint has no Batch API ({exc.status_code})") from exc
        except openai.OpenAIError as exc:
            raise map_error(exc, self.config) from exc

    def upload(self, name: str, data: bytes) -> str:
        return self._call(self.client.files.create, file=(name, data), purpose="batch").id

    def create(self, file_id: str, metadata: dict[str, str]) -> Any:
        return self._call(self.client.batches.create, input_file_id=file_id, endpoint=ENDPOINT,
                          completion_window="24h", metadata=metadata)

    def retrieve(self, batch_id: str) -> Any:
        return self._call(self.client.batches.retrieve, batch_id)

    def content(self, file_id: str) -> str:
        return self._call(self.client.files.content, file_id).text

    def cancel(self, batch_id: str) -> Any:
        return self._call(self.client.batches.cancel, batch_id)

    def find_by_job(self, job_id: str) -> Any | None:
        """A batch created for this job before a crash lost its id (metadata carries our job id)."""
        page = self._call(self.client.batches.list, limit=100)
        for b in page.data:
            if (b.metadata or {}).get("tubemill_job") == job_id:
                return b
        return None


# ---------------------------------------------------------------------- ingest
@dataclass
class LineResult:
    custom_id: str
    ok: bool
    summary: Any = None
    usage: dict[str, int] | None = None
    error: str = ""
    adjustments: list[str] | None = None  # soft rules the answer missed, repaired (as realtime does)


def parse_results(output_text: str, error_text: str, ends: Mapping[str, float], model: str) -> dict[str, LineResult]:
    """Output and error lines by custom_id (order is not guaranteed), bodies validated like realtime."""
    out: dict[str, LineResult] = {}
    for text in (output_text, error_text):
        for raw in (text or "").splitlines():
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                cid = line["custom_id"]
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable batch result line skipped: %.120s", raw)
                continue
            resp, err = line.get("response") or {}, line.get("error")
            if err or resp.get("status_code") != 200:
                msg = (err or {}).get("message") or json.dumps((resp.get("body") or {}).get("error") or resp)[:300]
                out[cid] = LineResult(cid, False, error=f"{(err or {}).get('code') or resp.get('status_code')}: {msg}")
                continue
            body = resp.get("body") or {}
            usage = body.get("usage") or {}
            u = {"input_tokens": int(usage.get("prompt_tokens") or 0),
                 "output_tokens": int(usage.get("completion_tokens") or 0)}
            adjustments: list[str] = []
            try:
                content = body["choices"][0]["message"]["content"]
                try:
                    summary = as_summary(parse_json(content), ends.get(cid, 1e12), model)
                except SoftMiss as miss:  # one answer, no re-ask in a batch: keep it repaired, say what changed
                    summary, adjustments = miss.repaired, list(miss.adjustments)
            except (KeyError, IndexError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
                out[cid] = LineResult(cid, False, usage=u, error=f"invalid summary: {str(exc)[:300]}")
                continue
            out[cid] = LineResult(cid, True, summary=summary, usage=u, adjustments=adjustments)
    return out


def batch_cost(usage: Mapping[str, int], config: LLMConfig) -> float:
    """The Batch API bills half the realtime price."""
    return round(cost_usd(usage, config)[0] * BATCH_DISCOUNT, 8)


# ---------------------------------------------------------------------- the manager
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
        self._save_jobs(bid, jobs)
        for n in store.item_numbers(bid, ["parked"]):
            self._to_realtime(bid, n)

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
            self._save_jobs(bid, jobs)

    def _config(self, bid: str) -> LLMConfig:
        from pipeline.config.secrets import llm_config_for

        opts = self.engine.store.header(bid).get("options", {})  # type: ignore[union-attr]
        return llm_config_for(self.engine.home, settings=self.engine.settings, options=opts)

    def api(self, bid: str) -> BatchAPI:
        if bid not in self._api:
            self._api[bid] = BatchAPI(self._config(bid))
        return self._api[bid]

    def _save_jobs(self, bid: str, jobs: list[dict[str, Any]]) -> None:
        """Jobs are durable before the next network call: a restart resumes, never resubmits."""
        self.engine.store.set_batch(bid, llm_jobs=jobs)  # type: ignore[union-attr]
        self.engine.store.flush()  # type: ignore[union-attr]

    def _upstream(self, bid: str, stage_index: int) -> int:
        """Items that may still reach the summarize stage (not finished, not parked)."""
        store = self.engine.store
        live = store.items(bid, status=["pending", "running", "waiting"])  # type: ignore[union-attr]
        return sum(1 for it in live if int(it.get("stage_index") or 0) <= stage_index)

    def _submit_ready(self, bid: str, header: dict[str, Any], jobs: list[dict[str, Any]], parked: list[int]) -> None:
        store = self.engine.store
        assert store is not None
        # Resume a job whose file was uploaded but whose batch id was lost in a crash.
        for job in jobs:
            if job.get("file_id") and not job.get("batch_id") and job.get("status") == "uploaded":
                found = self.api(bid).find_by_job(job["id"])
                if found is None:
                    found = self.api(bid).create(job["file_id"], {"tubemill_job": job["id"], "tubemill_batch": bid})
                job.update(batch_id=found.id, status=found.status)
                self._save_jobs(bid, jobs)
        taken = {n for job in jobs if not job.get("ingested") for n in job.get("items", {}).values()}
        todo = [n for n in parked if n not in taken]
        if not todo:
            return
        try:
            k = header["recipe"].index("summarize")
        except ValueError:
            k = 0
        if self._upstream(bid, k) and len(todo) < self.limits.max_requests:
            return  # wait for the rest of the batch to reach summarize: one job, not hundreds
        lines, ends, ns = [], {}, {}
        for n in todo:
            req = self._request_of(bid, n)
            if req is None:
                continue
            lines.append(request_line(req["custom_id"], req["body"]))
            ends[req["custom_id"]] = req.get("end", 1e12)
            ns[req["custom_id"]] = n
        if not lines:
            return
        try:
            files = split_lines(lines, self.limits)
        except ValueError as exc:
            for n in ns.values():
                self._offline(bid, n, f"invalid Batch API request: {exc}")
            return
        for part in files:
            job = {"id": uuid.uuid4().hex[:12], "status": "preparing", "items": {ln["custom_id"]: ns[ln["custom_id"]]
                                                                                   for ln in part},
                   "ends": {ln["custom_id"]: ends[ln["custom_id"]] for ln in part}, "created_at": time.time(),
                   "request_counts": {"total": len(part), "completed": 0, "failed": 0}, "ingested": False}
            try:
                job["file_id"] = self.api(bid).upload(f"tubemill-{bid}-{job['id']}.jsonl", to_jsonl(part))
                job["status"] = "uploaded"
                jobs.append(job)
                self._save_jobs(bid, jobs)
                created = self.api(bid).create(job["file_id"], {"tubemill_job": job["id"], "tubemill_batch": bid})
            except NoBatchAPI as exc:
                self._fallback_all(bid, jobs, job, f"{exc}; summaries run realtime instead")
                return
            job.update(batch_id=created.id, status=created.status)
            self._save_jobs(bid, jobs)
            log.info("batch %s: submitted %d summary request(s) as %s", header["name"], len(part), created.id)

    def _request_of(self, bid: str, n: int) -> dict[str, Any] | None:
        item = self.engine.store.item(bid, n)  # type: ignore[union-attr]
        path = Path(item.get("workdir") or "") / REQUEST_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.engine.release(bid, n)  # the stage will prepare its request again
            return None

    def _fallback_all(self, bid: str, jobs: list[dict[str, Any]], job: dict[str, Any], note: str) -> None:
        log.warning("%s", note)
        jobs = [j for j in jobs if j is not job]
        self.engine.store.set_batch(bid, llm_mode_effective="realtime", llm_note=note)  # type: ignore[union-attr]
        self._save_jobs(bid, jobs)
        for n in self.engine.store.item_numbers(bid, ["parked"]):  # type: ignore[union-attr]
            self._to_realtime(bid, n)

    def _to_realtime(self, bid: str, n: int) -> None:
        item = self.engine.store.item(bid, n)  # type: ignore[union-attr]
        wd = Path(item.get("workdir") or "")
        if wd.is_dir():
            (wd / REALTIME_MARKER).write_text("1")
        self.engine.release(bid, n)

    def _poll_jobs(self, bid: str, header: dict[str, Any]) -> None:
        jobs = list(self.engine.store.header(bid).get("llm_jobs") or [])  # type: ignore[union-attr]
        now = time.monotonic()
        changed = False
        for job in jobs:
            if job.get("ingested") or not job.get("batch_id"):
                continue
            key = job["batch_id"]
            if now < self._next_poll.get(key, 0):
                continue
            try:
                b = self.api(bid).retrieve(key)
            except NoBatchAPI:  # the job is gone (server restarted, another account): its items go realtime
                job.update(ingested=True, abandoned="the Batch API no longer knows this job", ingested_at=time.time())
                changed = True
                for n in job.get("items", {}).values():
                    if self.engine.store.item(bid, n)["status"] == "parked":  # type: ignore[union-attr]
                        self._to_realtime(bid, n)
                continue
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
        if changed:
            self._save_jobs(bid, jobs)

    def _ingest(self, bid: str, job: dict[str, Any], b: Any) -> None:
        from pipeline.recipes.transcribe.summary import source_url, write_summary

        api = self.api(bid)
        config = api.config
        out_text = api.content(b.output_file_id) if b.output_file_id else ""
        err_text = api.content(b.error_file_id) if b.error_file_id else ""
        results = parse_results(out_text, err_text, job.get("ends", {}), config.model)
        store = self.engine.store
        assert store is not None
        for cid, n in job["items"].items():
            item = store.item(bid, n)
            if item["status"] != "parked":
                continue
            r = results.get(cid)
            if r is not None and r.ok:
                from pipeline.recipes.transcribe.summary_model import SummaryResult

                usage = r.usage or {"input_tokens": 0, "output_tokens": 0}
                result = SummaryResult(r.summary, usage, batch_cost(usage, config), config.model, 1,
                                       [f"Batch API {b.id}"], outcome="repaired" if r.adjustments else "llm",
                                       adjustments=list(r.adjustments or []))
                write_summary(Path(item["workdir"]), item.get("title") or item["source"], result, mode="batch",
                              source_url=source_url(item))
                self.engine.release(bid, n)
                continue
            why = r.error if r is not None else f"no result: the Batch API job ended {b.status}" + (
                f" ({job['failure']})" if job.get("failure") else "")
            self._retry_or_fail(bid, n, why)
        job["ingested"] = True
        job["ingested_at"] = time.time()

    def _retry_or_fail(self, bid: str, n: int, why: str) -> None:
        """A line that failed: once more in a new job, then realtime (or, with that off, the offline fallback)."""
        item = self.engine.store.item(bid, n)  # type: ignore[union-attr]
        meta = item.get("meta") or {}
        tries = int(meta.get("llm_batch_tries", 0)) + 1
        self.engine.store.update_item(bid, n, meta={**meta, "llm_batch_tries": tries,  # type: ignore[union-attr]
                                                    "llm_batch_error": why})
        opts = self.engine.store.header(bid).get("options", {})  # type: ignore[union-attr]
        if tries <= self.retries:
            return  # stays parked; the next pass puts it in a new job
        if flag(opts.get("llm_fallback_realtime", True)):
            self._to_realtime(bid, n)
        else:
            self._offline(bid, n, f"Batch API: {why}")

    def _offline(self, bid: str, n: int, reason: str) -> None:
        """The item's summary becomes the offline fallback (with the reason) and the item goes on: never parked
        forever, never failed for want of a summary."""
        from pipeline.recipes.transcribe.summary import source_url, write_fallback

        item = self.engine.store.item(bid, n)  # type: ignore[union-attr]
        wd = Path(item.get("workdir") or "")
        try:
            transcript = json.loads((wd / "transcript.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.engine.release(bid, n)  # the stage runs again and finds what is missing
            return
        write_fallback(wd, item.get("title") or item["source"], transcript, reason, mode="batch",
                       source_url=source_url(item))
        self.engine.release(bid, n)

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


# ---------------------------------------------------------------------- the four-step flow, by hand
# `tubemill llm-batch prepare|submit|status|ingest`: summaries for items that are already finished
# (any batch), the way users ran it with four scripts. State lives in <home>/llm-batches/<job>/state.json,
# written after every step, so each command is resumable and safe to run twice.
JOBS_DIR = "llm-batches"


def _jobs_root(home: Path) -> Path:
    return Path(home) / JOBS_DIR


def _save_state(folder: Path, state: dict[str, Any]) -> None:
    from state.storage import atomic_write_bytes

    atomic_write_bytes(folder / "state.json", json.dumps(state, ensure_ascii=False, indent=1).encode())


def load_job(home: Path, name: str | None = None) -> tuple[Path, dict[str, Any]]:
    """A prepared job by name, or the newest one."""
    root = _jobs_root(home)
    if name:
        folder = root / name
    else:
        found = sorted((p for p in root.glob("*/state.json")), key=lambda p: p.stat().st_mtime)
        if not found:
            raise errors.InvalidInput("no prepared LLM batch job; run `tubemill llm-batch prepare` first")
        folder = found[-1].parent
    try:
        return folder, json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise errors.InvalidInput(f"no LLM batch job named {folder.name!r}") from None


def prepare_job(home: Path, items: list[dict[str, Any]], config: LLMConfig, *, name: str | None = None,
                limits: BatchLimits | None = None, force: bool = False) -> tuple[Path, dict[str, Any]]:
    """JSONL files for finished items without an LLM summary; items already in an open job are skipped."""
    root = _jobs_root(home)
    open_ids: set[str] = set()
    for st in root.glob("*/state.json"):
        prior = json.loads(st.read_text(encoding="utf-8"))
        if not all(f.get("ingested") for f in prior["files"]):
            open_ids |= set(prior["requests"])
    lines, requests = [], {}
    for it in items:
        wd = Path(it.get("workdir") or "")
        summary = wd / "summary.json"
        if not (wd / "transcript.json").exists():
            continue
        if summary.exists() and not force and json.loads(summary.read_text(encoding="utf-8")).get("engine") == "llm":
            continue
        transcript = json.loads((wd / "transcript.json").read_text(encoding="utf-8"))
        title = it.get("title") or it["source"]
        body = build_body(transcript, title, config)
        if body is None:
            continue
        cid = custom_id(it.get("batch_id", "x"), it["n"], "summarize", body)
        if cid in open_ids:
            continue
        lines.append(request_line(cid, body))
        requests[cid] = {"workdir": str(wd), "title": title, "end": transcript_end(transcript)}
    name = name or time.strftime("tag-%Y%m%d-%H%M%S")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, part in enumerate(split_lines(lines, limits or BatchLimits()) if lines else [], start=1):
        path = folder / f"requests-{i:03d}.jsonl"
        path.write_bytes(to_jsonl(part))
        files.append({"path": path.name, "requests": len(part)})
    state = {"name": name, "model": config.model, "requests": requests, "files": files, "created_at": time.time()}
    _save_state(folder, state)
    return folder, state


def submit_job(folder: Path, state: dict[str, Any], api: BatchAPI) -> dict[str, Any]:
    """Upload and create what is not yet uploaded/created; ids are saved after each call."""
    for f in state["files"]:
        if not f.get("file_id"):
            f["file_id"] = api.upload(f"{state['name']}-{f['path']}", (folder / f["path"]).read_bytes())
            _save_state(folder, state)
        if not f.get("batch_id"):
            tag = f"{state['name']}/{f['path']}"
            found = api.find_by_job(tag)
            b = found or api.create(f["file_id"], {"tubemill_job": tag})
            f.update(batch_id=b.id, status=b.status)
            _save_state(folder, state)
    return state


def refresh_job(folder: Path, state: dict[str, Any], api: BatchAPI) -> dict[str, Any]:
    for f in state["files"]:
        if f.get("batch_id") and not f.get("ingested"):
            b = api.retrieve(f["batch_id"])
            f.update(status=b.status, request_counts=b.request_counts.model_dump() if b.request_counts else None,
                     output_file_id=b.output_file_id, error_file_id=b.error_file_id)
    _save_state(folder, state)
    return state


def ingest_job(folder: Path, state: dict[str, Any], api: BatchAPI) -> dict[str, int]:
    """Write summaries for every finished file not yet ingested; failed lines are listed in the state."""
    from pipeline.recipes.transcribe.summary import write_summary
    from pipeline.recipes.transcribe.summary_model import SummaryResult

    refresh_job(folder, state, api)
    done = failed = 0
    for f in state["files"]:
        if f.get("ingested") or f.get("status") not in TERMINAL:
            continue
        out = api.content(f["output_file_id"]) if f.get("output_file_id") else ""
        err = api.content(f["error_file_id"]) if f.get("error_file_id") else ""
        ends = {cid: r["end"] for cid, r in state["requests"].items()}
        results = parse_results(out, err, ends, state["model"])
        failures = {}
        for line in (folder / f["path"]).read_text(encoding="utf-8").splitlines():
            cid = json.loads(line)["custom_id"]
            r, req = results.get(cid), state["requests"][cid]
            if r is not None and r.ok:
                usage = r.usage or {}
                res = SummaryResult(r.summary, usage, batch_cost(usage, api.config), state["model"], 1,
                                    [f"Batch API {f['batch_id']}"], outcome="repaired" if r.adjustments else "llm",
                                    adjustments=list(r.adjustments or []))
                write_summary(Path(req["workdir"]), req["title"], res, mode="batch")
                done += 1
            else:
                failures[cid] = r.error if r else f"no result (job {f.get('status')})"
                failed += 1
        f.update(ingested=True, failures=failures)
        _save_state(folder, state)
    return {"ingested": done, "failed": failed}


def service(engine: Engine) -> LLMBatchManager:
    """The transcribe recipe's service factory: one Batch API manager per engine."""
    return LLMBatchManager(engine, interval_s=engine.settings.llm_batch_poll_s)
