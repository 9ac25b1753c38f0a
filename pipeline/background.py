"""Work a job's driver runs beside its main thread (e.g. the model's build during Ray's
start-up). Nothing may run beside `ray.shutdown()`: a report built in a thread while Ray shut
down crashed the process (a segfault in an import), so a job waits for its threads first."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor


def in_background(fn, *args) -> Future:
    """Call fn(*args) in a thread; the returned future gives its result or raises its error."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reelay-background")
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)  # the call still runs; the thread ends with it
