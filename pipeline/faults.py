"""Named crash points for the exactly-once tests: REELAY_CRASH_AT=<name> SIGKILLs the process."""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("REELAY_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
