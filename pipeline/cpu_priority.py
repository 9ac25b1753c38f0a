"""Decoding first on nodes without GPUs: the one place of this trick, behind one switch.

Beside CPU inference actors, plan and decode tasks reserve half a CPU each (DECODE_TASK_CPUS),
so that a node runs as many decode tasks as it has cores, and the actors' compute threads run
under Linux's `SCHED_IDLE`: they run only where no ordinary thread wants the core. Decoding,
the critical path, never queues behind torch's threads, inference computes on whatever
decoding leaves, and backpressure (Ray Data stops decoding while the actors' input is full)
hands the cores back to inference. Either half alone would be unsafe or useless: half-CPU tasks
beside normal-priority actors oversubscribe the cores; idle priority beside whole-CPU tasks
leaves nothing idle to take.

What it buys: on a 2-core node (ResNet-18 at 112 px, 2 fps, 10 s 640x360 videos), the marginal
rate from 60 to 180 videos was 80-83 sampled frames/s against 64-73 with whole-CPU tasks at
normal priority, alternated in one run (1.19x at the median; `make bench`'s scale method).

The switch is `--cpus-per-task`: below one CPU (the default beside CPU actors) turns it on,
one or more turns it off (a node shared with busy processes outside Ray, where an
idle-priority actor would only get what they leave). GPU actors never use it. Elsewhere than
Linux the threads keep their priority.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

SUPPORTED = hasattr(os, "SCHED_IDLE") and os.path.isdir("/proc/self/task")
DECODE_TASK_CPUS = 0.5  # CPUs per plan and decode task beside CPU actors, by default


def decode_first(task_cpus: float) -> bool:
    """Whether CPU actors beside tasks of `task_cpus` CPUs yield their cores to decoding."""
    return task_cpus < 1


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
