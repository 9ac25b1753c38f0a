"""One writer per output: a run's marker under `<output>/_active/`, refreshed while it runs.

Two index runs on one output would both index the same new videos (neither sees the other's
uncommitted work: rows twice), and one's recovery would delete the other's staged files. The
nightly job's lock keeps its own runs apart; this keeps a manual run off an output another run
is writing, on any machine, before it recovers or writes anything. Training runs hold their
output the same way (pipeline.train.job): two would interleave checkpoints and best.pt.

A run writes `_active/<run_id>.json` (run id, host, pid, start and last heartbeat, UTC epoch
seconds), rewrites it every HEARTBEAT_S from a driver thread and deletes it when the run ends. A
run that finds another's marker refuses to start (OutputError, exit 2) while that run is alive:
- on the same host, while its process exists (so a killed run's rerun starts at once);
- from another host, until its heartbeat is STALE_S old (the clocks of the two drivers must
  agree to well within that; NTP keeps them within a second).
A dead run's marker is removed and recovery settles its staging. Two runs that start at the same
moment both see each other's marker once written; the later (start time, then run id) yields.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, replace

from pipeline import schema, storage
from pipeline.config import StorageConfig
from pipeline.runs import OutputError, unwritable

log = logging.getLogger("reelay.output")

HEARTBEAT_S = 30.0
STALE_S = 4 * HEARTBEAT_S


@dataclass(frozen=True)
class Marker:
    """What `_active/<run_id>.json` holds."""

    run_id: str
    host: str
    pid: int
    started_at: float
    updated_at: float

    def alive(self, now: float, host: str) -> bool:
        """Whether the run that wrote this marker may still be writing."""
        if now - self.updated_at >= STALE_S:
            return False
        return self.host != host or process_exists(self.pid)

    def describe(self, now: float) -> str:
        return (
            f"run {self.run_id} (host {self.host}, pid {self.pid}, "
            f"heartbeat {max(0.0, now - self.updated_at):.0f} s ago)"
        )


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class WriterLease:
    """This run's marker on `output_uri`; a context manager that refreshes it until exit.

    `acquire()` raises OutputError, writing nothing, when another live run holds the output."""

    def __init__(
        self,
        output_uri: str,
        run_id: str,
        storage_cfg: StorageConfig,
        heartbeat_s: float = HEARTBEAT_S,
        why: str = "two runs on one output would index the same videos twice",
    ) -> None:
        self.output_uri = output_uri
        self.fs = storage.filesystem(output_uri, storage_cfg)
        self.folder = storage.strip_scheme(storage.join(output_uri, schema.ACTIVE))
        self.heartbeat_s = heartbeat_s
        self.why = why  # what two writers would do: said when a second one is refused
        now = time.time()
        self.marker = Marker(run_id, socket.gethostname(), os.getpid(), now, now)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.marker.run_id}.json"

    def __enter__(self) -> WriterLease:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self._refuse_if_held()
        try:
            self._write()
        except OSError as e:  # PermissionError, FileNotFoundError (a missing bucket), ...
            raise unwritable(self.output_uri, e) from e
        try:  # both of two runs that started together see the other's marker now
            self._refuse_if_held(yield_to_earlier=True)
        except Exception:
            self._remove()
            raise
        self._thread = threading.Thread(target=self._beat, name="reelay-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the marker. Never raises: the run's outcome is
        settled by then, and a marker left behind is a dead run's (its process is gone)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self._remove()
        except Exception as e:
            log.warning("could not remove the writer marker: %s", storage.redact(str(e)))

    def others(self) -> list[tuple[str, Marker]]:
        """The markers on this output other than this run's own, with their paths (unreadable
        ones are skipped). A marker under this run's id from another process counts: a rerun
        with the same --run-id while the first attempt still runs."""
        self.fs.invalidate_cache(self.folder)  # s3fs caches listings: this one must be fresh
        if not self.fs.exists(self.folder):
            return []
        found = []
        for path in self.fs.ls(self.folder, detail=False):
            if not path.endswith(".json"):
                continue
            try:
                marker = Marker(**json.loads(self.fs.cat_file(path)))
            except FileNotFoundError:  # its run just ended
                continue
            except (ValueError, TypeError) as e:
                log.warning("ignoring unreadable writer marker %s: %s", storage.redact(path), e)
                continue
            if not self._is_mine(marker):
                found.append((path, marker))
        return found

    def _is_mine(self, marker: Marker) -> bool:
        mine = self.marker
        return (marker.run_id, marker.host, marker.pid, marker.started_at) == (
            mine.run_id,
            mine.host,
            mine.pid,
            mine.started_at,
        )

    def _refuse_if_held(self, yield_to_earlier: bool = False) -> None:
        now = time.time()
        for path, other in self.others():
            if not other.alive(now, self.marker.host):
                log.warning("%s is not running: removing its writer marker", other.describe(now))
                self._remove(path)
                continue
            if yield_to_earlier and (other.started_at, other.run_id) > (
                self.marker.started_at,
                self.marker.run_id,
            ):
                continue  # it started after this run: it yields
            marker_uri = storage.with_scheme(path, self.output_uri)
            raise OutputError(
                f"{other.describe(now)} is writing {storage.redact(self.output_uri)}; "
                f"{self.why}. Wait for it to end, or write elsewhere with --output. A dead "
                f"run's marker goes stale {STALE_S:.0f} s after its last heartbeat, or delete "
                f"it: {storage.redact(marker_uri)}"
            )

    def _write(self) -> None:
        data = json.dumps(asdict(self.marker)).encode()
        storage.write_whole(self.fs, self.path, data)  # others() may be reading

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.marker = replace(self.marker, updated_at=time.time())
            try:
                self._write()
            except Exception as e:  # a storage blip: the next beat tries again
                log.warning("could not refresh the writer marker: %s", storage.redact(str(e)))

    def _remove(self, path: str | None = None) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(path or self.path)
        if not storage.is_remote(self.output_uri):  # S3 has no folders to leave behind
            with contextlib.suppress(OSError):  # rmdir: only when empty, as another run
                self.fs.rmdir(self.folder)  # may be writing its marker there now
