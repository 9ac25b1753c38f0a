"""`jobs/index.py` (or any Python) in a subprocess, with its own private local Ray for
fault-injection tests (Ray workers see REELAY_* variables only when Ray starts with them) and
for what a private Ray of the job's own start-up must provide, or on the cluster its
RAY_ADDRESS names (faults the driver alone reads)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def modules_imported_by(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh interpreter holds after running `code` from the repo: what
    a job's driver imports before it starts Ray, say."""
    probe = (
        f"{code}\nimport sys, json\nprint(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return sorted(json.loads(done.stdout.strip().splitlines()[-1]))


def marked_processes(marker: str) -> list[int]:
    """PIDs of live processes whose environment carries `marker` (the job and its Ray)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return pids


def stop_job_processes(pgid: int, marker: str) -> None:
    """Kill what the killed driver left: its process group, then any marked straggler."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while (pids := marked_processes(marker)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    assert not marked_processes(marker), "processes of the killed job are still alive"


def run_index_job(
    args: list[str], faults: dict[str, str], log_path: Path, timeout_s: float = 300
) -> tuple[int, str]:
    """Run the job with `faults` (REELAY_* variables) set; (exit code, log text). Every process
    it started is gone when this returns."""
    return run_python(["jobs/index.py", *args], faults, log_path, timeout_s)


def run_python(
    args: list[str], env_extra: dict[str, str], log_path: Path, timeout_s: float = 300
) -> tuple[int, str]:
    """`python *args` from the repo, with its own private local Ray (or the cluster that
    `env_extra`'s RAY_ADDRESS names) and `env_extra` set; (exit code, log text). Every process
    it started is gone when this returns."""
    marker = uuid.uuid4().hex
    ray_tmp = tempfile.mkdtemp(prefix="rl")  # a private Ray's, never the session's
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "REELAY_"))}
    env |= env_extra | {
        "REELAY_TEST_MARKER": marker,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TMPDIR": ray_tmp,
    }
    cmd = [sys.executable, *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            stop_job_processes(proc.pid, f"REELAY_TEST_MARKER={marker}")
            shutil.rmtree(ray_tmp, ignore_errors=True)
    return code, log_path.read_text(errors="replace")


def small_training(corpus: Path, out: Path, *extra: str) -> list[str]:
    """`jobs/train.py` on the sample corpus, 3 epochs of a tiny model at 32 px: the command
    of the training fault tests."""
    return [
        "jobs/train.py", "--data", str(corpus / "manifest.csv"), "--output", str(out),
        "--epochs", "3", "--fps", "5", "--clip-frames", "8", "--image-size", "32",
        "--encoder", "small_cnn", "--temporal", "gru", "--hidden-dim", "32",
        "--batch-size", "4", *extra,
    ]  # fmt: skip
