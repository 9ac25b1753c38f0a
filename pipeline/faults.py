"""Fault injection for the robustness tests, off unless REELAY_CRASH_AT / REELAY_HANG_AT are set.

REELAY_CRASH_AT=<point> SIGKILLs the process at a named point; `<point>:<text>` only when the
subject (e.g. a video URI) contains <text>. REELAY_HANG_AT works alike but sleeps forever
(with REELAY_FAULT_DIR set, it leaves a `hanging-<point>-<pid>` file there first, so that a
test knows when to strike).
REELAY_DELAY_AT=<point> sleeps REELAY_DELAY_S seconds (default 1) at each matching point: a
slow node, when only that node's processes see it.
REELAY_CRASH_ONCE_AT works like REELAY_CRASH_AT but only the first time across all processes
(a marker file in REELAY_FAULT_DIR records it): a lost worker or actor that the run must
survive, as a preempted node would be.
"""

from __future__ import annotations

import os
import signal
import time


def _matches(variable: str, name: str, subject: str) -> bool:
    """The variable holds `point[:text]`, or several of them separated by commas."""
    for spec in filter(None, os.environ.get(variable, "").split(",")):
        point, _, text = spec.partition(":")
        if point == name and (not text or text in subject):
            return True
    return False


def crash_point(name: str, subject: str = "") -> None:
    if _matches("REELAY_CRASH_AT", name, subject):
        os.kill(os.getpid(), signal.SIGKILL)
    if _matches("REELAY_CRASH_ONCE_AT", name, subject) and _first_time(name):
        os.kill(os.getpid(), signal.SIGKILL)
    if _matches("REELAY_DELAY_AT", name, subject):
        time.sleep(float(os.environ.get("REELAY_DELAY_S", "1")))
    if _matches("REELAY_HANG_AT", name, subject):
        folder = os.environ.get("REELAY_FAULT_DIR")
        if folder:
            open(os.path.join(folder, f"hanging-{name}-{os.getpid()}"), "w").close()
        while True:
            time.sleep(1)


def _first_time(name: str) -> bool:
    """True for the first caller only (O_EXCL creation of a marker file is atomic)."""
    folder = os.environ.get("REELAY_FAULT_DIR")
    if not folder:
        return True
    try:
        os.close(os.open(os.path.join(folder, f"crashed-{name}"), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True
