"""One writer per output (pipeline/writer_lease.py): a live run's marker keeps a second run off
its output; a dead run's marker does not. Local folders and S3 (moto over HTTP)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from pipeline import schema, storage
from pipeline.config import StorageConfig
from pipeline.runs import OutputError
from pipeline.writer_lease import STALE_S, Marker, WriterLease

NO_OPTIONS = StorageConfig()


def dead_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def plant(output: str, **fields) -> Marker:
    """Another run's marker on `output`, as that run would have written it."""
    now = time.time()
    marker = Marker(
        **{
            "run_id": "other-run",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": now,
            "updated_at": now,
            **fields,
        }
    )
    fs = storage.filesystem(output, NO_OPTIONS)
    folder = storage.strip_scheme(storage.join(output, schema.ACTIVE))
    fs.makedirs(folder, exist_ok=True)
    fs.pipe_file(f"{folder}/{marker.run_id}.json", json.dumps(asdict(marker)).encode())
    return marker


def markers(output: str) -> list[str]:
    fs = storage.filesystem(output, NO_OPTIONS)
    folder = storage.strip_scheme(storage.join(output, schema.ACTIVE))
    fs.invalidate_cache(folder)
    if not fs.exists(folder):
        return []
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False))


def test_a_run_holds_its_output_until_it_ends(tmp_path: Path):
    out = str(tmp_path / "out")
    with WriterLease(out, "run-a", NO_OPTIONS) as lease:
        assert markers(out) == ["run-a.json"]
        held = json.loads(Path(lease.path).read_text())
        assert (held["run_id"], held["pid"]) == ("run-a", os.getpid())
    assert markers(out) == []
    assert not (tmp_path / "out" / schema.ACTIVE).exists()  # no empty folder left behind


def test_a_live_run_refuses_a_second_one_and_keeps_its_marker(tmp_path: Path):
    out = str(tmp_path / "out")
    with WriterLease(out, "run-a", NO_OPTIONS):
        with pytest.raises(OutputError, match="run run-a .* is writing") as refused:
            WriterLease(out, "run-b", NO_OPTIONS).acquire()
        assert "--output" in str(refused.value)
        assert markers(out) == ["run-a.json"]  # B wrote nothing and removed nothing


def test_a_killed_runs_marker_lets_the_rerun_start_at_once(tmp_path: Path):
    """Same host, fresh heartbeat, but its process is gone: a driver killed a moment ago."""
    out = str(tmp_path / "out")
    plant(out, run_id="killed", pid=dead_pid())
    with WriterLease(out, "rerun", NO_OPTIONS):
        assert markers(out) == ["rerun.json"]


def test_a_rerun_with_the_same_run_id_waits_for_a_live_first_attempt(tmp_path: Path):
    out = str(tmp_path / "out")
    plant(out, run_id="nightly-2026-11-27", started_at=time.time() - 60)
    with pytest.raises(OutputError, match="run nightly-2026-11-27 .* is writing"):
        WriterLease(out, "nightly-2026-11-27", NO_OPTIONS).acquire()
    plant(out, run_id="nightly-2026-11-27", pid=dead_pid())  # the first attempt was killed
    with WriterLease(out, "nightly-2026-11-27", NO_OPTIONS) as lease:
        assert markers(out) == ["nightly-2026-11-27.json"]
        assert json.loads(Path(lease.path).read_text())["pid"] == os.getpid()


def test_another_hosts_marker_holds_the_output_until_its_heartbeat_is_stale(tmp_path: Path):
    out = str(tmp_path / "out")
    plant(out, run_id="remote", host="another-host", pid=1)
    with pytest.raises(OutputError, match="remote .*another-host"):
        WriterLease(out, "local", NO_OPTIONS).acquire()

    plant(out, run_id="remote", host="another-host", updated_at=time.time() - STALE_S - 1)
    with WriterLease(out, "local", NO_OPTIONS):
        assert markers(out) == ["local.json"]


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "out")
    return f"s3://{request.getfixturevalue('s3_bucket')}/index"


def test_of_two_runs_that_start_together_the_later_one_yields(output: str):
    """The interleaving that the first check cannot see: both checked before either wrote.
    Locally and on S3; a file in the folder that is not a marker changes nothing."""
    out = output
    fs = storage.filesystem(out, NO_OPTIONS)
    folder = storage.strip_scheme(storage.join(out, schema.ACTIVE))
    fs.makedirs(folder, exist_ok=True)
    fs.pipe_file(f"{folder}/README.txt", b"not a marker")
    early = WriterLease(out, "early", NO_OPTIONS)
    late = WriterLease(out, "late", NO_OPTIONS)
    assert early.marker.started_at <= late.marker.started_at
    early._refuse_if_held()
    late._refuse_if_held()
    early._write()
    late._write()
    early._refuse_if_held(yield_to_earlier=True)  # the later run is the one to go
    with pytest.raises(OutputError, match="run early"):
        late._refuse_if_held(yield_to_earlier=True)


def test_the_heartbeat_moves_while_the_run_lives(tmp_path: Path):
    out = str(tmp_path / "out")
    with WriterLease(out, "run-a", NO_OPTIONS, heartbeat_s=0.2) as lease:
        first = json.loads(Path(lease.path).read_text())["updated_at"]
        deadline = time.time() + 10
        while json.loads(Path(lease.path).read_text())["updated_at"] == first:
            assert time.time() < deadline, "the marker was never refreshed"
            time.sleep(0.1)


def test_a_second_run_never_reads_a_half_written_marker(tmp_path: Path):
    """A heartbeat rewrites the marker; a second run checking at that moment must still see it
    whole (a plain rewrite truncates first, and an empty marker would be skipped)."""
    out = str(tmp_path / "out")
    with WriterLease(out, "run-a", NO_OPTIONS, heartbeat_s=0.001):  # rewrites back to back
        checker = WriterLease(out, "run-b", NO_OPTIONS)
        for _ in range(500):
            assert [m.run_id for _, m in checker.others()] == ["run-a"]
    assert markers(out) == []


def test_whole_writes_leave_no_temporary_file_and_keep_the_usual_mode(tmp_path: Path):
    plain = tmp_path / "plain.json"
    plain.write_bytes(b"{}")
    target = tmp_path / "whole.json"
    fs = storage.filesystem(str(tmp_path))
    for content in (b'{"a": 1}', b'{"a": 2}'):
        storage.write_whole(fs, str(target), content)
        assert target.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.json", "whole.json"]
    assert target.stat().st_mode == plain.stat().st_mode  # readable by whom a plain write allows


def test_an_unreadable_marker_is_skipped_with_a_warning(tmp_path: Path, caplog):
    out = tmp_path / "out"
    (out / schema.ACTIVE).mkdir(parents=True)
    (out / schema.ACTIVE / "garbled.json").write_text("{not json")
    with WriterLease(str(out), "run-a", NO_OPTIONS):
        pass
    assert "unreadable writer marker" in caplog.text


def test_on_s3_a_live_run_refuses_a_second_one(s3_bucket):
    out = f"s3://{s3_bucket}/index"
    with WriterLease(out, "run-a", NO_OPTIONS):
        assert markers(out) == ["run-a.json"]
        with pytest.raises(OutputError, match="run run-a") as refused:
            WriterLease(out, "run-b", NO_OPTIONS).acquire()
        assert f"{out}/{schema.ACTIVE}/run-a.json" in str(refused.value)  # what to delete
    assert markers(out) == []
    plant(out, run_id="killed", pid=dead_pid())
    with WriterLease(out, "rerun", NO_OPTIONS):
        assert markers(out) == ["rerun.json"]


def test_an_output_that_cannot_be_written_is_a_clear_error(s3_server):
    """A missing bucket: one OutputError line, as the index job's write check gives it (the
    training job has no write check of its own: the lease is its first write)."""
    with pytest.raises(OutputError, match="cannot write to s3://no-such-bucket-here/out"):
        WriterLease("s3://no-such-bucket-here/out", "run-a", NO_OPTIONS).acquire()
