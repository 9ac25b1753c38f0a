"""The collector's pause around library loading (pipeline.gc_pause)."""

from __future__ import annotations

import gc

from pipeline.gc_pause import paused_gc


def test_pause_stops_collection_and_freezes_what_it_made():
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with paused_gc():
        assert not gc.isenabled()
        made = [[i] for i in range(1000)]  # tracked objects that survive the pause
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(made)
    gc.unfreeze()  # leave the test process as it was


def test_nested_pauses_end_with_the_outermost_and_errors_still_end_it():
    try:
        with paused_gc():
            with paused_gc():
                pass
            assert not gc.isenabled()  # the inner pause does not resume collection
            raise RuntimeError("a failed import")
    except RuntimeError:
        pass
    assert gc.isenabled()
    gc.unfreeze()


def test_a_process_that_runs_without_the_collector_keeps_it_off():
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
