"""CPU inference threads at idle priority (pipeline.cpu_priority), so that decoding, which
reserves half a CPU per task beside them, never waits for their cores.

A thread cannot raise its own priority back without privileges, so every test lowers threads
it starts for the purpose, never pytest's own."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from pipeline.cpu_priority import SUPPORTED, IdlePriority
from pipeline.models.inference import ClipInferencer
from tests.inference_rows import clip_rows, spec_for

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="SCHED_IDLE is Linux's")


def policy(tid: int) -> int:
    return os.sched_getscheduler(tid)


def in_thread(fn):
    """fn() in a fresh thread; returns (its result, the thread's native id)."""
    out = {}

    def run():
        out["tid"] = threading.get_native_id()
        out["value"] = fn()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out["value"], out["tid"]


def test_the_builder_and_the_threads_it_starts_go_idle_and_no_others():
    release = threading.Event()
    bystander = threading.Thread(target=release.wait)  # started before: keeps its priority
    bystander.start()

    def build():
        priority = IdlePriority(True)
        with priority.started():
            pool = threading.Thread(target=release.wait)  # as torch starts its threads
            pool.start()
        return priority, pool.native_id, threading.get_native_id()

    (priority, pool, builder), _ = in_thread(build)
    try:
        assert policy(pool) == os.SCHED_IDLE
        assert {pool, builder} <= priority.lowered
        assert policy(bystander.native_id) == os.SCHED_OTHER
        assert policy(threading.get_native_id()) == os.SCHED_OTHER
    finally:
        release.set()
        bystander.join()


def test_a_thread_that_runs_a_batch_is_lowered_and_a_disabled_one_is_not():
    def run(enabled: bool) -> tuple[int, int]:
        priority = IdlePriority(enabled)
        with priority.started():
            pass
        adopted, release = threading.Event(), threading.Event()
        caller = threading.Thread(target=lambda: (priority.adopt(), adopted.set(), release.wait()))
        caller.start()
        adopted.wait()
        seen = policy(caller.native_id)
        release.set()
        caller.join()
        return seen, policy(threading.get_native_id())

    assert in_thread(lambda: run(True))[0] == (os.SCHED_IDLE, os.SCHED_IDLE)
    assert in_thread(lambda: run(False))[0] == (os.SCHED_OTHER, os.SCHED_OTHER)


def test_an_inferencer_at_idle_priority_computes_the_same_rows():
    """The CPU inferencer lowers the thread it was built and called on; what it computes
    does not change."""
    spec = spec_for("small_cnn", "mean", size=32)
    rows = clip_rows(4, 8, 32, seed=7)
    want = ClipInferencer(spec, "cpu", 1, "r")(rows)

    def lowered():
        inferencer = ClipInferencer(spec, "cpu", 1, "r", idle_priority=True)
        table = inferencer(rows)
        return table, policy(threading.get_native_id()), inferencer.priority.enabled

    (got, seen, enabled), _ = in_thread(lowered)
    assert (seen, enabled) == (os.SCHED_IDLE, True)
    np.testing.assert_array_equal(
        np.asarray(got["embedding"].to_pylist()), np.asarray(want["embedding"].to_pylist())
    )
    assert got["label"].to_pylist() == want["label"].to_pylist()
    assert policy(threading.get_native_id()) == os.SCHED_OTHER
