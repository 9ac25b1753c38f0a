"""`jobs/index.py` in a subprocess with its own private local Ray, for fault-injection tests
(Ray workers see REELAY_* variables only when Ray starts with them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from tests.test_exactly_once import stop_job_processes

REPO = Path(__file__).resolve().parents[1]


def run_index_job(args: list[str], faults: dict[str, str], log_path: Path) -> tuple[int, str]:
    """Run the job with `faults` (REELAY_* variables) set; (exit code, log text). Every process
    it started is gone when this returns."""
    marker = uuid.uuid4().hex
    ray_tmp = tempfile.mkdtemp(prefix="rl")  # a private Ray, never the session's
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "REELAY_"))}
    env |= faults | {
        "REELAY_TEST_MARKER": marker,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TMPDIR": ray_tmp,
    }
    cmd = [sys.executable, "jobs/index.py", *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            stop_job_processes(proc.pid, f"REELAY_TEST_MARKER={marker}")
            shutil.rmtree(ray_tmp, ignore_errors=True)
    return code, log_path.read_text(errors="replace")
