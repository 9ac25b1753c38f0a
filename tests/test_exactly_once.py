"""Exactly once: a run killed anywhere, then run again, leaves every video and clip once.

The end-to-end tests run `jobs/index.py` in a subprocess with `REELAY_CRASH_AT=<point>`, which
SIGKILLs the driver at that point (pipeline/faults.py). The driver joins the session's Ray, as
a job submitted to a cluster does (a private Ray of its own would cost ~9 s of start-up per
test; tests/test_worker_faults.py kills a job with its own Ray); the rerun is in-process on the
same Ray. Cheaper tests drive the commit protocol of
pipeline/index/commit.py directly (local and S3) with a simulated crash.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import schema, storage
from pipeline.config import IndexConfig, RunMode, SamplingConfig, StorageConfig
from pipeline.index import commit as output
from pipeline.index.commit import COMMIT_PLAN, RunOutput, recover
from pipeline.index.ledger import read_ledger
from pipeline.runs import committed_runs
from pipeline.samples import VideoSpec, write_video
from tests.job_process import run_index_job

REPO = Path(__file__).resolve().parents[1]
JOB_FLAGS = ["--incremental", "--fps", "2", "--clip-frames", "4", "--image-size", "32"]
SAMPLING = SamplingConfig(fps=2.0, clip_frames=4, image_size=32)
CLIPS_PER_VIDEO = 2  # 4 s at --fps 2: 8 sampled frames, clips of 4

# Two points in the default run; the other two are slow (a subprocess each).
CRASH_POINTS = [
    "after_staging",  # tables staged, nothing prepared: the next run discards them
    "commit_first_move",  # prepared, one file published, no record: the next run finishes it
    pytest.param("commit_prepared", marks=pytest.mark.slow),  # prepared, nothing moved
    pytest.param("commit_before_cleanup", marks=pytest.mark.slow),  # committed, staging left
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exactly_once_corpus")
    for i in range(3):
        write_video(
            VideoSpec(width=64, height=48, fps=10, seconds=4.0, seed=20 + i), root / f"c{i}.mp4"
        )
    return root


def input_uris(corpus: Path) -> list[str]:
    return sorted(str(p) for p in corpus.glob("*.mp4"))


# --- processes --------------------------------------------------------------------------------


def run_job_killed_at(point: str, corpus: Path, out: Path, log_path: Path) -> int:
    """jobs/index.py with REELAY_CRASH_AT=point (read by the driver alone), on the session's
    Ray (RAY_ADDRESS, as `ray job submit` sets it); returns its exit status."""
    import ray

    args = ["--input", str(corpus), "--output", str(out), *JOB_FLAGS]
    env = {"REELAY_CRASH_AT": point, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    return run_index_job(args, env, log_path, timeout_s=400)[0]


# --- readers ----------------------------------------------------------------------------------


def glob_rows(out: Path, table: str, columns: str) -> list[tuple]:
    """The strict reader: every Parquet file under the table's folder, committed or not."""
    if not list((out / table).rglob("*.parquet")):
        return []
    pattern = str(out / table / "**" / "*.parquet")
    return duckdb.sql(f"SELECT {columns} FROM read_parquet('{pattern}')").fetchall()


def record_files(out: Path) -> list[str]:
    return [f for r in committed_runs(str(out), storage.NO_OPTIONS) for f in r["files"]]


def committed_rows(out: Path, table: str, columns: str) -> list[tuple]:
    """The record-based reader: only files listed by `_runs/<run_id>.json` records."""
    prefix = str(out / table) + "/"
    files = [f for f in record_files(out) if f.startswith(prefix)]
    if not files:
        return []
    listed = ", ".join(f"'{f}'" for f in files)
    return duckdb.sql(f"SELECT {columns} FROM read_parquet([{listed}])").fetchall()


def table_files(out: Path) -> list[str]:
    """The tables' files and the search graphs on disk."""
    tables = (schema.VIDEOS, schema.CLIPS, schema.ERRORS, schema.LEDGER)
    files = [str(p) for t in tables for p in (out / t).rglob("*.parquet")]
    return sorted(files + [str(p) for p in (out / schema.SEARCH).rglob("*.faiss")])


def assert_exactly_once(out: Path, expected_uris: list[str]) -> None:
    videos = Counter(uri for (uri,) in glob_rows(out, schema.VIDEOS, "video_uri"))
    assert sorted(videos) == expected_uris, "videos/ is missing videos or has strays"
    assert set(videos.values()) == {1}, f"duplicated videos: {videos}"
    clips = Counter(glob_rows(out, schema.CLIPS, "video_uri, clip_index"))
    assert set(clips.values()) == {1}, f"duplicated clips: {clips}"
    per_video = Counter(uri for uri, _ in clips)
    assert per_video == dict.fromkeys(expected_uris, CLIPS_PER_VIDEO), per_video
    ledger = Counter(read_ledger(str(out), storage.NO_OPTIONS).column("video_uri").to_pylist())
    assert ledger == dict.fromkeys(expected_uris, 1), ledger
    # Nothing orphaned, nothing missing: the files on disk are exactly those the records list.
    listed = record_files(out)
    assert len(listed) == len(set(listed))
    assert table_files(out) == sorted(listed)
    assert sorted(glob_rows(out, schema.VIDEOS, "video_uri, run_id")) == sorted(
        committed_rows(out, schema.VIDEOS, "video_uri, run_id")
    )
    assert not (out / schema.STAGING).exists(), "staging left behind"


def index_config(corpus: Path, out: Path, **kw) -> IndexConfig:
    return IndexConfig(
        input_uri=str(corpus),
        output_uri=str(out),
        sampling=SAMPLING,
        mode=RunMode(incremental=True),
        **kw,
    )


# --- SIGKILL of the driver, end to end --------------------------------------------------------


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_run_then_rerun_leaves_every_video_once(ray_local, corpus, tmp_path, point):
    from pipeline import index

    out = tmp_path / "index"
    log_path = tmp_path / "job.log"
    rc = run_job_killed_at(point, corpus, out, log_path)
    assert rc == -signal.SIGKILL, f"exit {rc}, not SIGKILL:\n{log_path.read_text()[-3000:]}"

    # What the crash left, and that readers of committed runs see none of an unfinished one.
    staging = out / schema.STAGING
    (crashed,) = [p.name for p in staging.iterdir()]
    plan_path = staging / crashed / COMMIT_PLAN
    record = out / schema.RUNS / f"{crashed}.json"
    assert plan_path.exists() == (point != "after_staging")
    assert record.exists() == (point == "commit_before_cleanup")
    if point == "after_staging":
        assert table_files(out) == []
        assert list((staging / crashed).rglob("*.parquet"))
    if point in ("commit_prepared", "commit_first_move"):
        moves = json.loads(plan_path.read_text())["moves"]
        published = [dst for _, dst in moves if Path(dst).exists()]
        assert len(published) == (1 if point == "commit_first_move" else 0)
    if point != "commit_before_cleanup":
        assert committed_runs(str(out), storage.NO_OPTIONS) == []
        assert committed_rows(out, schema.VIDEOS, "run_id") == []
    # its writer marker stays behind; its process is gone, so it does not hold the output
    assert [p.name for p in (out / schema.ACTIVE).iterdir()] == [f"{crashed}.json"]

    # The rerun settles the crashed run first, then indexes only what is still missing.
    summary = index.run(index_config(corpus, out))
    assert not (out / schema.ACTIVE).exists()
    expected = input_uris(corpus)
    if point == "after_staging":  # discarded: everything is indexed by the rerun
        assert (summary.counts["processed"], summary.counts["skipped"]) == (3, 0)
    else:  # rolled forward: the crashed run's commit holds everything
        assert (summary.counts["processed"], summary.counts["skipped"]) == (0, 3)
        assert record.exists()
    assert_exactly_once(out, expected)

    # And once more: a rerun with nothing new changes nothing.
    again = index.run(index_config(corpus, out))
    assert (again.counts["processed"], again.counts["skipped"]) == (0, 3)
    assert_exactly_once(out, expected)


class SimulatedCrash(BaseException):
    """Stands in for SIGKILL in-process: nothing after the crash point runs."""


def crash_at(monkeypatch, name: str) -> None:
    def crash_point(point: str) -> None:
        if point == name:
            raise SimulatedCrash(point)

    monkeypatch.setattr(output, "crash_point", crash_point)


def test_rerun_with_the_same_run_id_after_a_crash_keeps_the_commit(
    ray_local, corpus, tmp_path, monkeypatch
):
    """A scheduler that reuses --run-id (e.g. nightly-<date>) after a crash past `prepare`.

    The crashed run is staged by hand (its videos and ledger rows, as the job writes them), so
    the rerun finds everything done and costs no decoding."""
    from pipeline import index
    from pipeline.index.ledger import ledger_table
    from pipeline.listing import list_videos
    from pipeline.models.source import resolve_model

    out = tmp_path / "index"
    cfg = index_config(corpus, out, run_id="nightly-1")
    model_version = resolve_model(cfg)[0].model_version
    entries = list_videos(str(corpus))
    crashed = RunOutput(str(out), "nightly-1", "2026-01-02", StorageConfig())
    crashed.write_small_table(
        schema.VIDEOS, videos_table([e.uri for e in entries], "nightly-1"), "v"
    )
    crashed.write_small_table(
        schema.LEDGER, ledger_table(entries, set(), set(), model_version, "nightly-1"), "ledger"
    )
    crash_at(monkeypatch, "commit_first_move")
    with pytest.raises(SimulatedCrash):
        crashed.commit({"run_id": "nightly-1", "started_at": "2026-01-02T00:00:00+00:00"})
    monkeypatch.undo()

    try:
        summary = index.run(cfg)
        assert summary.counts["processed"] == 0
    except ValueError as e:  # refusing the reused id is fine too, once the crash is settled
        assert "already committed" in str(e)
    expected = input_uris(corpus)
    assert sorted(uri for (uri,) in committed_rows(out, schema.VIDEOS, "video_uri")) == expected
    assert sorted(uri for (uri,) in glob_rows(out, schema.VIDEOS, "video_uri")) == expected
    ledger = read_ledger(str(out), storage.NO_OPTIONS).column("video_uri").to_pylist()
    assert sorted(ledger) == expected, "the ledger lost the crashed run: videos would be redone"
    assert table_files(out) == sorted(record_files(out)), "orphaned files"


# --- a long run committed in parts (--commit-every) ---------------------------------------------


def assert_records_add_up(out: Path) -> None:
    for record in committed_runs(str(out), storage.NO_OPTIONS):
        c = record["counts"]
        assert c["listed"] == c["skipped"] + c["processed"] + c["failed"], record["run_id"]


def test_a_run_killed_in_its_second_part_keeps_the_first(ray_local, corpus, tmp_path):
    """--commit-every 1 over 3 videos: each video is a run of its own. The driver dies after
    staging the second; the first stays committed, and the rerun takes only the other two."""
    import ray

    from pipeline import index

    out = tmp_path / "index"
    log_path = tmp_path / "job.log"
    args = ["--input", str(corpus), "--output", str(out), *JOB_FLAGS]
    args += ["--commit-every", "1", "--run-id", "long"]
    env = {
        "REELAY_CRASH_AT": "after_staging:long-002",
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
    }
    rc = run_index_job(args, env, log_path, timeout_s=400)[0]
    assert rc == -signal.SIGKILL, f"exit {rc}, not SIGKILL:\n{log_path.read_text()[-3000:]}"
    assert [r["run_id"] for r in committed_runs(str(out), storage.NO_OPTIONS)] == ["long-001"]
    assert [p.name for p in (out / schema.STAGING).iterdir()] == ["long-002"]
    first = input_uris(corpus)[0]  # listing order
    assert committed_rows(out, schema.VIDEOS, "video_uri") == [(first,)]

    summary = index.run(index_config(corpus, out, commit_every=1))
    assert (summary.counts["processed"], summary.counts["skipped"]) == (2, 1)
    assert len(summary.parts) == 2 and summary.parts[0].endswith("-001")
    assert sorted(r["run_id"] for r in committed_runs(str(out), storage.NO_OPTIONS)) == sorted(
        ["long-001", *summary.parts]
    )
    assert f"in 2 commits ({summary.parts[0]} to {summary.parts[1]})" in summary.line()
    assert_exactly_once(out, input_uris(corpus))
    assert_records_add_up(out)


def test_a_part_over_the_failure_threshold_stops_the_run(ray_local, tmp_path):
    """The first part fails wholesale (a broken file): it is committed with its error row,
    the run raises, and the later parts are left for the next incremental run."""
    from pipeline import index

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a_broken.mp4").write_text("not a video")
    for i in range(2):
        write_video(
            VideoSpec(width=64, height=48, fps=10, seconds=4.0, seed=40 + i), corpus / f"b{i}.mp4"
        )
    out = tmp_path / "index"
    cfg = index_config(corpus, out, commit_every=1, run_id="strict", max_failure_fraction=0.5)
    with pytest.raises(index.FailureThresholdExceeded) as raised:
        index.run(cfg)
    message = str(raised.value)
    assert "1 of 1 videos failed" in message and "run strict-001" in message
    assert "the 2 videos of later commits were not attempted" in message
    assert raised.value.summary.status == "failed_threshold"
    (record,) = committed_runs(str(out), storage.NO_OPTIONS)
    assert (record["run_id"], record["status"]) == ("strict-001", "failed_threshold")
    ledger = read_ledger(str(out), storage.NO_OPTIONS).column("video_uri").to_pylist()
    assert ledger == [str(corpus / "a_broken.mp4")]
    assert not (out / schema.STAGING).exists()

    rest = index.run(index_config(corpus, out, commit_every=1))  # the incremental rerun
    assert (rest.counts["processed"], rest.counts["failed"], rest.counts["skipped"]) == (2, 0, 1)
    assert_records_add_up(out)


# --- the commit protocol alone (no Ray): local and S3 -----------------------------------------


def videos_table(uris: list[str], run_id: str) -> pa.Table:
    rows = [{"video_uri": u, "status": "ok", "num_clips": 1, "run_id": run_id} for u in uris]
    return pa.Table.from_pylist(rows, schema=schema.videos_schema(4))


def stage_run(out_uri: str, run_id: str, uris: list[str], cfg: StorageConfig) -> RunOutput:
    run = RunOutput(out_uri, run_id, "2026-01-02", cfg)
    run.write_small_table(schema.VIDEOS, videos_table(uris[:1], run_id), "part-0")
    run.write_small_table(schema.VIDEOS, videos_table(uris[1:], run_id), "part-1")
    run.write_small_table(schema.ERRORS, schema.ERRORS_SCHEMA.empty_table(), "errors")
    return run


def visible_run_ids(out_uri: str, cfg: StorageConfig) -> set[str]:
    """run_ids in the rows of the files committed records list."""
    fs = storage.filesystem(out_uri, cfg)
    ids = set()
    for record in committed_runs(out_uri, cfg):
        for uri in record["files"]:
            with fs.open(storage.strip_scheme(uri), "rb") as f:
                ids |= set(pq.read_table(f).column("run_id").to_pylist())
    return ids


def all_video_rows(out_uri: str, cfg: StorageConfig) -> Counter:
    """Glob reader over videos/ (any file there, committed or not)."""
    fs = storage.filesystem(out_uri, cfg)
    root = storage.strip_scheme(storage.join(out_uri, schema.VIDEOS))
    rows = Counter()
    for path in fs.find(root) if fs.exists(root) else []:
        with fs.open(path, "rb") as f:
            rows.update(pq.read_table(f).column("video_uri").to_pylist())
    return rows


@pytest.fixture(params=["local", "s3"])
def output_uri(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "index"), StorageConfig()
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/lake/index", StorageConfig()


def test_readers_never_see_a_crashed_unprepared_run(output_uri):
    out_uri, cfg = output_uri
    ok = stage_run(out_uri, "run-ok", ["a", "b"], cfg)
    ok.commit({"run_id": "run-ok", "started_at": "2026-01-01T00:00:00+00:00"})
    stage_run(out_uri, "run-crashed", ["c", "d"], cfg)  # staged, killed before prepare

    assert [r["run_id"] for r in committed_runs(out_uri, cfg)] == ["run-ok"]
    assert visible_run_ids(out_uri, cfg) == {"run-ok"}
    assert all_video_rows(out_uri, cfg) == Counter(["a", "b"]), "staged rows leaked into videos/"

    actions = recover(out_uri, cfg)
    assert actions == ["removed the uncommitted files of crashed run run-crashed"]
    fs = storage.filesystem(out_uri, cfg)
    assert not fs.exists(storage.strip_scheme(storage.join(out_uri, schema.STAGING)))
    assert visible_run_ids(out_uri, cfg) == {"run-ok"}
    assert recover(out_uri, cfg) == []


@pytest.mark.parametrize("point", ["commit_prepared", "commit_first_move", "commit_before_cleanup"])
def test_commit_rolls_forward_from_any_crash_and_repeats_safely(output_uri, monkeypatch, point):
    """On S3 the moves are copies (no atomic rename); the record is the one commit point."""
    out_uri, cfg = output_uri
    run = stage_run(out_uri, "run-1", ["a", "b", "c"], cfg)
    crash_at(monkeypatch, point)
    with pytest.raises(SimulatedCrash):
        run.commit({"run_id": "run-1", "started_at": "2026-01-02T00:00:00+00:00"})
    monkeypatch.undo()
    committed = point == "commit_before_cleanup"
    assert run.is_committed() == committed
    assert visible_run_ids(out_uri, cfg) == ({"run-1"} if committed else set())

    assert recover(out_uri, cfg) == ["finished the commit of crashed run run-1"]
    assert run.is_committed()
    assert all_video_rows(out_uri, cfg) == Counter(["a", "b", "c"])
    (record,) = committed_runs(out_uri, cfg)
    assert len(record["files"]) == 3  # two videos parts and the errors file
    fs = storage.filesystem(out_uri, cfg)
    assert all(fs.exists(storage.strip_scheme(f)) for f in record["files"])
    assert not fs.exists(run.staging())

    # Finishing the same plan again (a second crash and recovery) changes nothing.
    plan = {
        "record": record,
        "moves": [
            [f"{run.staging()}/gone-{i}", storage.strip_scheme(f)]
            for i, f in enumerate(record["files"])
        ],
    }
    run.finish(plan)
    assert all_video_rows(out_uri, cfg) == Counter(["a", "b", "c"])
    assert committed_runs(out_uri, cfg) == [record]


@pytest.mark.parametrize("name", [COMMIT_PLAN, "run-1.json"])
def test_a_crash_while_writing_the_plan_or_record_leaves_none_of_it(tmp_path, monkeypatch, name):
    """Locally the plan and the record go to a temporary name first: killed before the rename,
    there is no half-written JSON file for recover() or a reader to trip on."""
    out_uri, cfg = str(tmp_path / "index"), StorageConfig()
    run = stage_run(out_uri, "run-1", ["a", "b"], cfg)
    rename = storage.os.replace

    def killed_before_renaming(src, dst):
        if dst.endswith("/" + name):
            assert Path(src).read_bytes(), "the temporary file holds the whole JSON"
            raise SimulatedCrash(name)
        rename(src, dst)

    monkeypatch.setattr(storage.os, "replace", killed_before_renaming)
    with pytest.raises(SimulatedCrash):
        run.commit({"run_id": "run-1", "started_at": "2026-01-02T00:00:00+00:00"})
    monkeypatch.undo()

    assert not run.is_committed()
    assert committed_runs(out_uri, cfg) == []
    prepared = name != COMMIT_PLAN
    assert recover(out_uri, cfg) == [
        "finished the commit of crashed run run-1"
        if prepared
        else "removed the uncommitted files of crashed run run-1"
    ]
    assert run.is_committed() == prepared
    assert all_video_rows(out_uri, cfg) == (Counter(["a", "b"]) if prepared else Counter())
