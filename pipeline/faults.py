"""Fault injection for the robustness tests, off unless REELAY_CRASH_AT / REELAY_HANG_AT are set.

REELAY_CRASH_AT=<point> SIGKILLs the process at a named point; `<point>:<text>` only when the
subject (e.g. a video URI) contains <text>. REELAY_HANG_AT works alike but sleeps forever.
"""

from __future__ import annotations

import os
import signal
import time


def _matches(variable: str, name: str, subject: str) -> bool:
    spec = os.environ.get(variable)
    if not spec:
        return False
    point, _, text = spec.partition(":")
    return point == name and (not text or text in subject)


def crash_point(name: str, subject: str = "") -> None:
    if _matches("REELAY_CRASH_AT", name, subject):
        os.kill(os.getpid(), signal.SIGKILL)
    while _matches("REELAY_HANG_AT", name, subject):
        time.sleep(1)
