"""The Batch API client: the few Files/Batches calls the summaries make, with errors mapped onto our tree.

Kept apart from the service (:mod:`pipeline.recipes.transcribe.llm_batch`) and the by-hand flow
(:mod:`pipeline.recipes.transcribe.llm_batch_manual`) so both talk to the server one way, and a
server without ``/v1/files`` or ``/v1/batches`` reads as one error (:class:`NoBatchAPI`) everywhere.
"""

from __future__ import annotations

from typing import Any

from pipeline import errors
from pipeline.common.llm import LLMConfig, make_client, map_error

ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
ACTIVE = frozenset({"validating", "in_progress", "finalizing", "cancelling"})


class NoBatchAPI(errors.TubemillError):
    """The endpoint answers chat completions but has no /v1/files or /v1/batches (most local servers)."""


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
