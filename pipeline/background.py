"""Work a job's driver runs beside its main thread, and waits for before its process ends."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait

_pending: list[Future] = []


def in_background(fn, *args) -> Future:
    """Call fn(*args) in a thread; the returned future gives its result or raises its error."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reelay-background")
    try:
        future = pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)  # the call still runs; the thread ends with it
    _pending.append(future)
    return future


def wait_for_background() -> None:
    """Block until every call started with `in_background` has finished."""
    wait(list(_pending))
    _pending.clear()
