"""A private multi-node Ray cluster on this machine, driven by the CLI as users drive theirs:
`ray start --head`, then `ray start --address` for each worker node. Every node is a raylet of
its own, with its own CPUs, object store and worker processes.

Isolation from every other Ray on this machine (the session's `ray_local`, other people's):
  - each node gets its own short --temp-dir (/tmp/rj-XXXX: unix socket paths stay < 108 chars)
    and a free port for every listener;
  - each runs as `ray start --block` in its own session (start_new_session), so it is the
    parent of everything it starts; SIGTERM to it makes Ray stop that node's processes;
  - then any process of that tree still alive (pids snapshotted before the SIGTERM, matched by
    start time against pid reuse) or of its process group is killed by pid.
`ray stop` is never called: it stops every Ray process of the user on the machine.

`RayCluster.kill(node)` is a preempted machine: SIGKILL to the node's raylet, its workers and
everything else it started, at once, with no drain.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RAY = VENV_BIN / "ray"
NODE_CPUS = 2
NODE_OBJECT_STORE_BYTES = 200 * 2**20


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


def _kill_all(tree: dict[int, int], timeout_s: float = 10) -> list[int]:
    """SIGKILL every live process of `tree`; returns those that needed it."""
    killed = []
    for pid, start in tree.items():
        if _alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(p, tree[p]) for p in killed):
        time.sleep(0.2)
    return killed


class RayNode:
    """One node (`ray start --block`) of a private cluster, torn down by pid."""

    def __init__(
        self,
        env: dict[str, str],
        head_gcs_port: int | None = None,
        cpus: int = NODE_CPUS,
        object_store_bytes: int = NODE_OBJECT_STORE_BYTES,
    ) -> None:
        """`env`: the node's environment, which its worker processes inherit."""
        self.head = head_gcs_port is None
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rj-", dir="/tmp"))
        assert len(str(self.temp_dir)) < 40  # room for Ray's socket names under session dirs
        ports = free_ports(9)
        self.gcs_port = head_gcs_port or ports[0]
        self.dashboard_port = ports[1]
        self.env = env
        self.log_path = self.temp_dir / "node.log"
        common = [
            f"--num-cpus={cpus}",
            f"--object-store-memory={object_store_bytes}",
            f"--node-manager-port={ports[2]}",
            f"--object-manager-port={ports[3]}",
            f"--dashboard-agent-listen-port={ports[4]}",
            f"--dashboard-agent-grpc-port={ports[5]}",
            f"--runtime-env-agent-port={ports[6]}",
            f"--metrics-export-port={ports[7]}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        if self.head:
            own = [
                "--head",
                f"--port={self.gcs_port}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={ports[8]}",
            ]
        else:
            own = [f"--address=127.0.0.1:{self.gcs_port}"]
        self.args = [str(RAY), "start", "--block", *own, *common]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def process_names(self) -> set[str]:
        """Executable names of the processes this node started (what stop() takes down)."""
        names = set()
        for pid in _tree(self.proc.pid):
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            names.add(Path(argv0.decode(errors="replace")).name)
        return names

    def rss_bytes(self) -> int:
        """Resident memory of every process the node started, summed (its raylet, object store
        and workers)."""
        total = 0
        for pid in _tree(self.proc.pid):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def kill(self) -> None:
        """A preempted machine: SIGKILL to everything the node started, at once."""
        _kill_all(_tree(self.proc.pid))
        self.proc.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def stop(self) -> tuple[list[int], list[int]]:
        """Stop what this node started. Returns (pids that needed SIGKILL, pids still alive)."""
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
        killed = _kill_all(tree)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return killed, [p for p in killed if _alive(p, tree[p])]


class RayCluster:
    """A head (with the dashboard: the job API and the state API) and worker nodes."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "REELAY_"))}
        env |= {
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            # SIGTERM to `ray start --block` drains the node for 30 s first: not needed here.
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",  # `python` = this venv
        }
        self.env = env
        self.head: RayNode | None = None
        self.workers: list[RayNode] = []

    @property
    def dashboard(self) -> str:
        """The address `ray job submit --address` takes."""
        return f"http://127.0.0.1:{self.head.dashboard_port}"

    @property
    def address(self) -> str:
        """The address a driver's RAY_ADDRESS takes."""
        return f"127.0.0.1:{self.head.gcs_port}"

    def start(
        self,
        workers: int = 1,
        head_cpus: int = NODE_CPUS,
        timeout_s: float = 180.0,
        worker_cpus: int = NODE_CPUS,
    ) -> RayCluster:
        """`head_cpus=0`: a head that runs no tasks, as on clusters where it only schedules."""
        self.head = RayNode(self.env, cpus=head_cpus)
        deadline = time.monotonic() + timeout_s
        while not self.alive_nodes():  # the dashboard's state API lists the head
            self._check_time(self.head, deadline, "the dashboard did not list the head")
        for _ in range(workers):
            self.add_worker(deadline - time.monotonic(), cpus=worker_cpus)
        return self

    def add_worker(
        self,
        timeout_s: float = 120.0,
        env: dict[str, str] | None = None,
        object_store_bytes: int = NODE_OBJECT_STORE_BYTES,
        cpus: int = NODE_CPUS,
    ) -> RayNode:
        """A worker node joins (its workers see `env` besides the cluster's); returns once the
        head counts every node alive."""
        node = RayNode(
            self.env | (env or {}),
            self.head.gcs_port,
            cpus=cpus,
            object_store_bytes=object_store_bytes,
        )
        self.workers.append(node)
        deadline = time.monotonic() + timeout_s
        while len(self.alive_nodes()) < 1 + len(self.workers):
            self._check_time(node, deadline, "the worker node did not join")
        return node

    def kill(self, node: RayNode) -> None:
        node.kill()
        self.workers.remove(node)

    def alive_nodes(self) -> list[dict]:
        """The state API's alive nodes (node_id, is_head_node, ...)."""
        answer = self._answers("/api/v0/nodes?limit=100")
        if not answer:
            return []
        nodes = json.loads(answer)["data"]["result"]["result"]
        return [n for n in nodes if n["state"] == "ALIVE"]

    def ray(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(RAY), *args], env=self.env, capture_output=True, text=True, timeout=timeout,
            cwd=REPO,
        )  # fmt: skip

    def stop(self) -> tuple[list[int], list[int]]:
        """Stop every node (workers first). Returns (pids killed, pids still alive)."""
        killed, survivors = [], []
        for node in [*self.workers, *([self.head] if self.head else [])]:
            k, s = node.stop()
            killed += k
            survivors += s
        return killed, survivors

    def _answers(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"{self.dashboard}{path}", timeout=5) as r:
                return r.read() if r.status == 200 else None
        except OSError:
            return None

    @staticmethod
    def _check_time(node: RayNode, deadline: float, what: str) -> None:
        if node.proc.poll() is not None:
            raise RuntimeError(f"ray start exited {node.proc.returncode}:\n{node.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} in time:\n{node.log()}")
        time.sleep(0.5)
