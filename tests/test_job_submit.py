"""The index job as users run it: `ray start --head`, then `ray job submit --working-dir .`.

Runs in the default `make test` (not marked slow): it is the one test that goes through the
dashboard's job API, the runtime_env working_dir upload and `python jobs/index.py`.

Isolation from every other Ray on this machine (the session's `ray_local`, other people's):
  - the head gets its own short --temp-dir (/tmp/rj-XXXX: unix socket paths stay < 108 chars)
    and a free port for every listener;
  - it runs as `ray start --head --block` in its own session (start_new_session), so it is the
    parent of everything it starts; SIGTERM to it makes Ray stop its own processes;
  - then any process of that tree still alive (pids snapshotted before the SIGTERM, matched by
    start time against pid reuse) or of its process group is killed by pid.
`ray stop` is never called: it stops every Ray process of the user on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RAY = VENV_BIN / "ray"
EXCLUDES = [
    ".git",
    ".venv",
    "**/__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "demo_out",
    "bench_out",
    "*.egg-info",
]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: each socket stays bound until all are chosen, or the system may
    hand the same port out twice (Ray refuses a port given to two of its components)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


# ---------------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[int, int, str, int] | None:
    """(ppid, pgid, state, start time) of a live process, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[2]), fields[0], int(fields[19])


def _processes() -> dict[int, tuple[int, int, str, int]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            table[int(entry)] = st
    return table


def _tree(root: int) -> dict[int, int]:
    """pid -> start time of `root` and all its descendants, plus its process group."""
    table = _processes()
    found = {root} if root in table else set()
    changed = True
    while changed:
        changed = False
        for pid, (ppid, pgid, _, _) in table.items():
            if pid not in found and (ppid in found or pgid == root):
                found.add(pid)
                changed = True
    return {pid: table[pid][3] for pid in found}


def _alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[3] == start and st[2] not in ("Z", "X")


class RayHead:
    """A private Ray head on this machine, driven by the CLI, torn down by pid."""

    def __init__(self) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rj-", dir="/tmp"))
        (self.dashboard_port, self.gcs_port, *self.other_ports) = free_ports(7)
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        env |= {
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            # SIGTERM to `ray start --block` drains the node for 30 s first: not needed here.
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",  # `python` = this venv
        }
        self.env = env
        self.log_path = self.temp_dir / "head.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180.0) -> None:
        args = [
            str(RAY),
            "start",
            "--head",
            "--block",
            f"--port={self.gcs_port}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={self.other_ports[0]}",
            f"--dashboard-agent-listen-port={self.other_ports[1]}",
            f"--dashboard-agent-grpc-port={self.other_ports[2]}",
            f"--runtime-env-agent-port={self.other_ports[3]}",
            f"--metrics-export-port={self.other_ports[4]}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.address}/api/version", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the dashboard did not answer in {timeout_s:.0f} s:\n{self.log()}")

    def process_names(self) -> set[str]:
        """Executable names of the processes this head started (what stop() will take down)."""
        names = set()
        for pid in _tree(self.proc.pid) if self.proc is not None else {}:
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            names.add(Path(argv0.decode(errors="replace")).name)
        return names

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def ray(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(RAY), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )

    def stop(self) -> tuple[list[int], list[int]]:
        """Stop what this head started. Returns (pids that needed SIGKILL, pids still alive)."""
        if self.proc is None:
            return [], []
        tree = _tree(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # --block: Ray kills its own processes
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        tree |= {pid: start for pid, start in _tree(self.proc.pid).items() if pid not in tree}
        deadline = time.monotonic() + 15  # workers exit on their own once the raylet is gone
        while time.monotonic() < deadline and any(_alive(p, s) for p, s in tree.items()):
            time.sleep(0.5)
        killed = []
        for pid, start in tree.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p, tree[p]) for p in killed):
            time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return killed, [p for p in killed if _alive(p, tree[p])]


@pytest.fixture()
def ray_head():
    head = RayHead()
    assert len(str(head.temp_dir)) < 40  # room for Ray's socket names under session dirs
    try:
        head.start()
        yield head
    finally:
        killed, survivors = head.stop()
        assert not survivors, f"processes of the test's Ray head survived SIGKILL: {survivors}"
        with pytest.raises(OSError):  # the dashboard is gone with the head
            urllib.request.urlopen(f"{head.address}/api/version", timeout=2)
        if killed:  # not an error: Ray's SIGTERM handling left these behind
            print(f"killed {len(killed)} leftover processes of the test's Ray head: {killed}")


# ---------------------------------------------------------------------------------- the test


def test_ray_job_submit_indexes_the_sample_corpus(ray_head: RayHead, sample_corpus: Path):
    out = Path(tempfile.mkdtemp(prefix="reelay-job-out-"))
    job_id = f"reelay-test-{uuid.uuid4().hex[:8]}"
    try:
        result = ray_head.ray(
            "job",
            "submit",
            "--address",
            ray_head.address,
            "--submission-id",
            job_id,
            "--working-dir",
            str(REPO),
            "--runtime-env-json",
            json.dumps({"excludes": EXCLUDES}),
            "--",
            "python",
            "jobs/index.py",
            "--input",
            str(sample_corpus),
            "--output",
            str(out),
            "--fps",
            "2",
            "--clip-frames",
            "4",
            "--image-size",
            "32",
            "--run-id",
            "submitted",
            timeout=480,
        )
        text = result.stdout + result.stderr
        # The teardown finds Ray's processes as descendants of `ray start --block`.
        assert {"gcs_server", "raylet"} <= ray_head.process_names()
        assert result.returncode == 0, f"ray job submit exited {result.returncode}:\n{text[-6000:]}"
        assert f"Job '{job_id}' succeeded" in text
        assert "reelay index run submitted: 6 videos ok, 0 failed" in text, text[-6000:]

        # The job's log is kept by the cluster too.
        logs = ray_head.ray("job", "logs", "--address", ray_head.address, job_id, timeout=60)
        assert "reelay index run submitted" in logs.stdout

        con = duckdb.connect()
        videos = con.execute(
            f"""SELECT regexp_extract(video_uri, '[^/]+$') AS name, status, num_frames, num_clips
                FROM read_parquet('{out}/videos/**/*.parquet', hive_partitioning = true)
                ORDER BY name"""
        ).fetchall()
        expected_names = sorted(p.name for p in sample_corpus.rglob("*.mp4"))
        assert [v[0] for v in videos] == expected_names
        assert all(v[1] == "ok" and v[2] == 30 and v[3] >= 1 for v in videos), videos
        (n_clips,) = con.execute(
            f"SELECT count(*) FROM read_parquet('{out}/clips/**/*.parquet')"
        ).fetchone()
        assert n_clips == sum(v[3] for v in videos)
        record = json.loads((out / "_runs" / "submitted.json").read_text())
        assert record["counts"]["processed"] == 6 and record["counts"]["failed"] == 0
    finally:
        status = ray_head.ray("job", "status", "--address", ray_head.address, job_id, timeout=60)
        if "RUNNING" in status.stdout or "PENDING" in status.stdout:
            ray_head.ray("job", "stop", "--address", ray_head.address, job_id, timeout=60)
        shutil.rmtree(out, ignore_errors=True)
