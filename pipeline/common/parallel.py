"""Independent jobs of one stage on a few threads, their results handed back on the caller's thread."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

J = TypeVar("J")
R = TypeVar("R")


def each_done(fn: Callable[[J], R], jobs: Iterable[J], workers: int, name: str) -> Iterator[tuple[J, R]]:
    """``(job, fn(job))`` as each job finishes, on the caller's thread (where a stage may report progress).

    The first failure (a cancel included) stops the rest: queued jobs never start, running ones
    finish or see their own cancel check, and the error is raised here.
    """
    jobs = list(jobs)
    if not jobs:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=name) as pool:
        futures = {pool.submit(fn, job): job for job in jobs}
        try:
            for f in as_completed(futures):
                yield futures[f], f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
