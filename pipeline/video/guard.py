"""Run native decoding where a hang or a crash costs one video, never the run.

decord is a native library: a corrupt file can make it hang or take its process down. Guarded
calls run in the Ray Data task itself (no extra task per unit), with a small per-run actor, the
`GuardBook`, remembering what happened to each call across the task's retries:

- a call past its time budget is recorded as timed out and ends its worker process
  (`os._exit`); Ray Data retries the task, and the retry reports `DecodeTimeout` at once;
- a worker that dies during a call (native crash, out of memory) is retried by Ray Data; a
  call that has started `attempts` times without finishing reports `DecoderCrashed`;
- workers are recycled after `recycle_after` tasks (`max_calls`, in
  `PlanConfig.decode_task_options`), which bounds decord's known leaks.

Without a book (no Ray, or a one-off call in the driver) calls run inline and unguarded.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pipeline.config import GuardConfig

log = logging.getLogger("reelay.guard")

# A hang that also holds the GIL starves the Python watchdog; faulthandler's own C thread
# ends the process this long after the budget instead (the retry then counts a death).
HARD_STOP_GRACE_S = 30.0
TIMEOUT_EXIT_CODE = 75


class DecodeTimeout(TimeoutError):
    """A video took longer than its time budget to open or decode."""


class DecoderCrashed(RuntimeError):
    """The process decoding a video died (native crash or out of memory), too many times."""


class GuardBook:
    """Per-run record of guarded calls, keyed by the caller: starts not (yet) finished, and the
    calls that ran out of time. Calls from one task arrive in order, so a call's `finish`
    is always seen before the same task's next `begin`."""

    def __init__(self) -> None:
        self.unfinished: Counter[str] = Counter()
        self.timed_out: set[str] = set()

    def begin(self, key: str) -> tuple[int, bool]:
        """(starts of this call that never finished, whether it ran out of time before)."""
        prior = self.unfinished[key]
        self.unfinished[key] += 1
        return prior, key in self.timed_out

    def finish(self, key: str) -> None:
        self.unfinished.pop(key, None)

    def skipped(self, key: str) -> None:
        """This start did not call at all (its record decided the outcome): not a death."""
        self.unfinished[key] -= 1

    def timeout(self, key: str) -> None:
        self.timed_out.add(key)


@contextmanager
def open_book(book_class: type = GuardBook) -> Iterator[Any]:
    """An actor of `book_class` (GuardBook or a class that extends it) for one run, None when
    Ray is not initialized; killed at the end."""
    import ray

    from pipeline.ray_env import actor_beside_driver

    if not ray.is_initialized():
        yield None
        return
    book = actor_beside_driver(book_class, max_restarts=-1)
    try:
        yield book
    finally:
        ray.kill(book)


def guarded(fn: Callable, *args: Any, guard: GuardConfig, what: str, key: str, book: Any) -> Any:
    """fn(*args) under the time budget and crash accounting of `guard` (see module doc)."""
    if book is None:
        return fn(*args)
    import ray

    prior_deaths, timed_out = ray.get(book.begin.remote(key))
    if timed_out or prior_deaths >= guard.attempts:
        # decided by the record (a task re-run for another unit's sake lands here too)
        book.skipped.remote(key)
    if timed_out:
        raise DecodeTimeout(
            f"{what} took longer than {guard.timeout_s:g} s; "
            "raise --decode-timeout if the video is just long"
        )
    if prior_deaths >= guard.attempts:
        raise DecoderCrashed(
            f"{what}: the decoding process died {prior_deaths} times "
            f"(native crash, out of memory, or a hang past {guard.timeout_s:g} s)"
        )
    with _watchdog(guard.timeout_s, lambda: ray.get(book.timeout.remote(key)), what):
        try:
            return fn(*args)
        finally:  # a Python exception is a finished call too (it becomes an error row)
            book.finish.remote(key)  # ordered before this task's next begin (same caller)


@contextmanager
def _watchdog(timeout_s: float, record: Callable[[], Any], what: str) -> Iterator[None]:
    done = threading.Event()

    def expire() -> None:
        if done.is_set():
            return
        try:
            record()
        finally:
            log.error("%s: over the %g s budget; ending this worker process", what, timeout_s)
            sys.stderr.flush()
            os._exit(TIMEOUT_EXIT_CODE)

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True
    timer.start()
    faulthandler.dump_traceback_later(timeout_s + HARD_STOP_GRACE_S, exit=True)
    try:
        yield
    finally:
        done.set()
        timer.cancel()
        faulthandler.cancel_dump_traceback_later()
