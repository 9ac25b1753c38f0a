"""CPU inference threads that yield their cores to decoding (Linux `SCHED_IDLE`).

Beside CPU actors, decode tasks reserve half a CPU each (`ray_env.size_inference`), so that a
node runs as many decode tasks as it has cores and inference runs on what they leave. For that
to cost nothing, inference must be the one that waits: a `SCHED_IDLE` thread runs only where
no ordinary thread wants the core. Decode tasks then never queue behind torch's threads, and
backpressure (Ray Data stops decoding while the actors' input is full) hands the cores back to
inference. On 2 cores the steady rate went from ~166 to 187-204 sampled frames/s
(docs/benchmarks.md). Ray's own threads in the actor keep their priority: only the threads
that compute are lowered. Elsewhere than Linux this does nothing."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

SUPPORTED = hasattr(os, "SCHED_IDLE") and os.path.isdir("/proc/self/task")


def thread_ids() -> set[int]:
    """The native ids of this process's threads."""
    return {int(t) for t in os.listdir("/proc/self/task")}


def lower_to_idle(tids: set[int]) -> set[int]:
    """Puts these threads of this process under `SCHED_IDLE`; returns those it did (a thread
    that has ended meanwhile is skipped). Raises OSError where the system refuses."""
    done = set()
    for tid in tids:
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except ProcessLookupError:
            continue
        done.add(tid)
    return done


class IdlePriority:
    """The compute threads of one CPU inference actor, at idle priority.

    `started()` wraps the model's build: the threads it starts (torch's intra-op pool, made at
    the first forward pass) and the thread that built it are lowered on leaving. Each thread
    that later runs a batch calls `adopt()`, which lowers it once (Ray may run calls on a
    thread of its own)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and SUPPORTED
        self.lowered: set[int] = set()

    @contextmanager
    def started(self) -> Iterator[None]:
        before = thread_ids() if self.enabled else set()
        yield
        if self.enabled:
            self._lower((thread_ids() - before) | {threading.get_native_id()})

    def adopt(self) -> None:
        if self.enabled and threading.get_native_id() not in self.lowered:
            self._lower({threading.get_native_id()})

    def _lower(self, tids: set[int]) -> None:
        try:
            self.lowered |= lower_to_idle(tids)
        except OSError as e:  # the run is only slower: said once, not tried again
            log.warning("inference threads keep their CPU priority: %s", e)
            self.enabled = False
