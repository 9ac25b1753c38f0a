"""Run one contender as a fresh process; sample the RSS of its whole process tree meanwhile.

The tree is the contender and every descendant: for a Ray contender that is the driver, the
GCS and raylet it starts, and the raylet's workers. RSS counts a shared page (the object store
in /dev/shm, shared libraries) once per process that touched it, so the summed RSS overstates
real use; PSS (each shared page split between its users) is sampled too, less often.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    import psutil
except ImportError:  # Ray vendors psutil in ray/thirdparty_files (put on sys.path by `import ray`)
    import importlib.util

    _ray = importlib.util.find_spec("ray")
    if _ray is None or not _ray.submodule_search_locations:
        raise
    sys.path.append(str(Path(next(iter(_ray.submodule_search_locations))) / "thirdparty_files"))
    import psutil

REPO = Path(__file__).resolve().parents[1]


def role(p: psutil.Process, root_pid: int) -> str:
    """What a process of the tree is, for memory by role: "driver" (the contender itself); a
    Ray worker by its title's task or actor class ("ray::MapWorker", "ray::FlatMap",
    "ray::RunBook" for "ray::RunBook.begin", "ray::IDLE"); a Python process by its script
    or module ("log_monitor.py"); else its executable ("raylet", "gcs_server")."""
    if p.pid == root_pid:
        return "driver"
    cmdline = p.cmdline()
    title = cmdline[0] if cmdline else p.name()
    if title.startswith("ray::"):
        return "ray::" + re.split(r"[(\[ .]", title[len("ray::") :], maxsplit=1)[0]
    exe = os.path.basename(title.split(" ", 1)[0]) or p.name()
    if exe.startswith("python"):
        args = cmdline[1:]
        for i, arg in enumerate(args):
            if arg == "-m" and i + 1 < len(args):
                return args[i + 1]
            if arg.endswith(".py"):
                return os.path.basename(arg)
    return exe


def tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


@dataclass
class TreeSampler:
    """Background thread: peak summed RSS (and PSS) of a process tree."""

    pid: int
    interval_s: float = 0.5
    # PSS makes the kernel walk every mapping (~4 ms per Ray worker with its large virtual
    # address space): sampled every `pss_every`-th time only; 0 = never.
    pss_every: int = 4
    rss_cap_bytes: int | None = None  # kill the tree above this (the naive pipeline may balloon)
    peak_rss: int = 0
    peak_pss: int = 0
    peak_procs: int = 0
    peak_single_rss: int = 0
    peak_pss_by_role: dict = field(default_factory=dict)  # role -> largest one process's PSS
    samples: list = field(default_factory=list)  # (t, rss, pss|None)
    capped: bool = False
    cpu_by_pid: dict = field(default_factory=dict)  # last seen user+sys seconds per process

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = time.perf_counter()

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        n = 0
        while not self._stop.is_set():
            procs = tree(root)
            take_pss = self.pss_every > 0 and n % self.pss_every == 0
            rss, pss, single = 0, 0, 0
            for p in procs:
                try:
                    ct = p.cpu_times()
                    self.cpu_by_pid[(p.pid, p.create_time())] = ct.user + ct.system
                    r = p.memory_info().rss
                    rss += r
                    single = max(single, r)
                    if take_pss:
                        own = _pss(p.pid)
                        pss += own
                        name = role(p, self.pid)
                        self.peak_pss_by_role[name] = max(self.peak_pss_by_role.get(name, 0), own)
                except (psutil.Error, OSError):
                    continue
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_single_rss = max(self.peak_single_rss, single)
            self.peak_procs = max(self.peak_procs, len(procs))
            if take_pss:
                self.peak_pss = max(self.peak_pss, pss)
            self.samples.append(
                (
                    round(time.perf_counter() - self._t0, 2),
                    rss,
                    pss if take_pss else None,
                )
            )
            if self.rss_cap_bytes and rss > self.rss_cap_bytes:
                self.capped = True
                kill_tree(root)
                return
            n += 1
            self._stop.wait(self.interval_s)

    def result(self) -> dict:
        mb = 2**20
        return {
            "peak_rss_mb": round(self.peak_rss / mb, 1),
            "peak_pss_mb": round(self.peak_pss / mb, 1),
            "peak_single_rss_mb": round(self.peak_single_rss / mb, 1),
            "peak_pss_by_role_mb": {
                k: round(v / mb, 1)
                for k, v in sorted(self.peak_pss_by_role.items(), key=lambda kv: -kv[1])
            },
            "peak_processes": self.peak_procs,
            # a lower bound: CPU a process used after its last sample is missed
            "cpu_s_sampled": round(sum(self.cpu_by_pid.values()), 2),
        }


def _pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def kill_tree(root: psutil.Process) -> None:
    """SIGKILL a process we started and all its descendants, by pid."""
    for p in reversed(tree(root)):
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGKILL)


def child_env(threads: int | None = None) -> dict:
    env = dict(os.environ)
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A private Ray per contender: never join a cluster another user started on this machine
    # with `ray start` (ray.init() without an address would connect to it).
    env["RAY_ADDRESS"] = "local"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def last_json_line(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def run_contender(
    module: str,
    args: list[str],
    *,
    timeout_s: float,
    log_path: Path,
    rss_cap_bytes: int | None = None,
) -> dict:
    """`python -m <module> <args>` in a fresh process; its JSON line + wall time + tree memory."""
    cmd = [sys.executable, "-m", module, *args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log_path, "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=log, text=True
        )
        sampler = TreeSampler(proc.pid, rss_cap_bytes=rss_cap_bytes).start()
        timed_out = False
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_tree(psutil.Process(proc.pid)) if psutil.pid_exists(proc.pid) else None
            out, _ = proc.communicate()
        wall = time.perf_counter() - t0
        sampler.stop()
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        log.write("\n--- stdout ---\n" + (out or ""))
    record = last_json_line(out or "") or {}
    status = "ok"
    if timed_out:
        status = f"timeout after {timeout_s:.0f} s"
    elif sampler.capped:
        status = f"killed: tree RSS above {rss_cap_bytes / 2**30:.0f} GiB"
    elif proc.returncode != 0:
        status = f"exit {proc.returncode}"
    elif not record:
        status = "no JSON line"
    # CPU (user+sys) of the whole tree, two lower bounds: descendants reaped by their parents
    # (Ray's processes are not all reaped: they would be missed) and the last sample of each
    # process seen (misses what it used after that sample). The larger is reported.
    reaped = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    sampled = sampler.result()["cpu_s_sampled"]
    return {
        **record,
        "status": status,
        "wall_s": round(wall, 2),
        "cpu_s": round(max(reaped, sampled), 2),
        "cpu_s_reaped": round(reaped, 2),
        **{f"tree_{k}": v for k, v in sampler.result().items()},
        "log": str(log_path),
    }
