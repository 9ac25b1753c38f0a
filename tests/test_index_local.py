"""The index job end to end on a local folder: real videos, a real local Ray, Parquet read back.

Three in-process runs, shared through module fixtures:
  - "zoo-run": the codec zoo, the broken zoo and a 60 s video, in work units of 16 sampled
    frames (the long video is cut into 15 units): every good video indexed right, every
    broken one recorded;
  - "whole-a" / "whole-b": a manifest naming the same 60 s video and one broken file, uncut,
    twice with the same seed: same clips as the cut run, identical embeddings run to run;
    whole-a has max_failure_fraction=0 and raises after committing the good video; whole-a
    merges the per-video sums on the driver, whole-b with a Ray Data groupby.
The CLI's usage errors (exit code 2) need no run at all.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import schema
from pipeline.config import (
    ConfigError,
    IndexConfig,
    InferConfig,
    PlanConfig,
    SamplingConfig,
    StorageConfig,
)
from pipeline.index import FailureThresholdExceeded, run
from pipeline.listing import list_videos
from pipeline.models.source import resolve_model
from pipeline.samples import VideoSpec, write_video
from pipeline.video.plan import PlanVideo
from pipeline.video.sampling import plan_clips
from pipeline.writer_lease import WriterLease
from tests.job_process import modules_imported_by
from tests.videos import (
    BROKEN_ZOO_NAMES,
    CODEC_ZOO_NAMES,
    codec_zoo_specs,
    make_broken_zoo,
    make_codec_zoo,
    pyav_frame_count,
)

SAMPLING = SamplingConfig(fps=4, clip_frames=4, image_size=32)  # 2 clips per 2 s video
LONG_SPEC = VideoSpec(width=64, height=48, fps=10, seconds=60.0, keyframe_interval=25, seed=21)
LONG_CLIPS = 60  # 240 sampled frames at 4 fps, 4 per clip
UNIT_FRAMES = 16  # sampled frames per work unit in the zoo run: the long video makes 15 units
GOOD_NAMES = (*CODEC_ZOO_NAMES, "long")


def good_specs() -> dict[str, VideoSpec]:
    return codec_zoo_specs() | {"long": LONG_SPEC}


FILE_NAME = re.compile(r"^(?P<run>.+)-(?P<n>\d{5})\.parquet$")


# ---------------------------------------------------------------------------------- helpers


def table_files(out: Path, table: str) -> list[Path]:
    return sorted((out / table).rglob("*.parquet")) if (out / table).exists() else []


def read_table(out: Path, table: str) -> pa.Table:
    """All Parquet files of one table, read file by file with pyarrow (no partition column)."""
    files = table_files(out, table)
    assert files, f"no {table} files under {out}"
    return pa.concat_tables([pq.read_table(f) for f in files])


def run_record(out: Path, run_id: str) -> dict:
    return json.loads((out / schema.RUNS / f"{run_id}.json").read_text())


def rows_by(table: pa.Table, key: str = "video_uri") -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        grouped.setdefault(row[key], []).append(row)
    return grouped


def embedding_matrix(rows: list[dict]) -> np.ndarray:
    return np.asarray([r["embedding"] for r in rows], dtype=np.float32)


def clips_of(clips: pa.Table, uri: str) -> list[dict]:
    return sorted(rows_by(clips).get(uri, []), key=lambda r: r["clip_index"])


def assert_same_fields(actual: pa.Schema, expected: pa.Schema) -> None:
    """Names and types, field by field, in order (metadata aside)."""
    assert actual.names == expected.names
    for a, e in zip(actual, expected, strict=True):
        assert a.type == e.type, f"{a.name}: {a.type} != {e.type}"


# ---------------------------------------------------------------------------------- zoo run


@pytest.fixture(scope="module")
def zoo(ray_local, tmp_path_factory):
    """One run over the codec zoo, the broken zoo, a 60 s video and a non-video file."""
    root = tmp_path_factory.mktemp("zoo")
    good = make_codec_zoo(root / "in" / "good")
    good["long"] = write_video(LONG_SPEC, root / "in" / "long" / "long_60s.mp4")
    broken = make_broken_zoo(root / "in" / "broken")
    (root / "in" / "README.txt").write_text("not a video: never listed")
    out = root / "out"
    summary = run(
        IndexConfig(
            input_uri=str(root / "in"),
            output_uri=str(out),
            sampling=SAMPLING,
            plan=PlanConfig(unit_frames=UNIT_FRAMES),
            max_failure_fraction=1.0,
            run_id="zoo-run",
        )
    )
    return {
        "root": root,
        "good": {name: str(p) for name, p in good.items()},
        "broken": {name: str(p) for name, p in broken.items()},
        "out": out,
        "summary": summary,
        "videos": read_table(out, schema.VIDEOS),
        "clips": read_table(out, schema.CLIPS),
        "errors": read_table(out, schema.ERRORS),
    }


def test_zoo_fixture_is_what_we_think(zoo):
    assert sorted(zoo["good"]) == sorted(GOOD_NAMES)
    assert sorted(zoo["broken"]) == sorted(BROKEN_ZOO_NAMES)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_video_row(zoo, name: str):
    uri, spec = zoo["good"][name], good_specs()[name]
    rows = rows_by(zoo["videos"]).get(uri, [])
    assert len(rows) == 1, f"{name}: {len(rows)} videos rows"
    (v,) = rows
    assert v["status"] == "ok"
    assert v["num_frames"] == pyav_frame_count(uri) == spec.num_frames
    assert v["fps"] == pytest.approx(spec.fps, rel=1e-3)
    assert (v["width"], v["height"]) == (spec.width, spec.height)
    assert v["duration_s"] == pytest.approx(v["num_frames"] / spec.fps, rel=1e-3)
    assert v["size_bytes"] == Path(uri).stat().st_size
    assert v["run_id"] == "zoo-run"
    assert v["model_version"] == zoo["summary"].model_version
    emb = np.asarray(v["embedding"], dtype=np.float32)
    assert emb.ndim == 1 and emb.size > 0 and np.isfinite(emb).all() and np.abs(emb).sum() > 0
    clips = clips_of(zoo["clips"], uri)
    assert v["num_clips"] == len(clips) >= 1
    # The video's embedding is the mean of its clips' embeddings.
    np.testing.assert_allclose(emb, embedding_matrix(clips).mean(axis=0), rtol=1e-5, atol=1e-6)
    assert v["label"] in {c["label"] for c in clips} | set(clips[0]["topk_labels"])
    assert 0.0 < v["score"] <= 1.0


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_video_clips(zoo, name: str):
    uri, spec = zoo["good"][name], good_specs()[name]
    clips = clips_of(zoo["clips"], uri)
    n = pyav_frame_count(uri)
    # Golden: the clips the sampling rules give for the true frame count and rate.
    expected = plan_clips(n, float(spec.fps), SAMPLING)
    assert [c["clip_index"] for c in clips] == list(range(len(expected)))
    assert [c["frame_indices"] for c in clips] == [list(e.frame_indices) for e in expected]
    previous_start = -1.0
    for c in clips:
        fi = c["frame_indices"]
        assert len(fi) == SAMPLING.clip_frames
        assert all(0 <= f < n for f in fi) and fi == sorted(fi)
        assert c["start_s"] == pytest.approx(fi[0] / spec.fps)
        assert c["end_s"] == pytest.approx((fi[-1] + 1) / spec.fps)
        assert 0.0 <= c["start_s"] < c["end_s"] <= n / spec.fps + 1e-9
        assert c["start_s"] > previous_start
        previous_start = c["start_s"]
        emb = np.asarray(c["embedding"], dtype=np.float32)
        assert np.isfinite(emb).all()
        assert c["topk_labels"][0] == c["label"]
        assert c["topk_scores"][0] == pytest.approx(c["score"])
        assert c["topk_scores"] == sorted(c["topk_scores"], reverse=True)
        assert len(c["topk_labels"]) == len(c["topk_scores"]) >= 1
        assert c["run_id"] == "zoo-run"


@pytest.mark.parametrize("name", BROKEN_ZOO_NAMES)
def test_broken_file_is_recorded_not_fatal(zoo, name: str):
    uri = zoo["broken"][name]
    errors = rows_by(zoo["errors"]).get(uri, [])
    assert len(errors) == 1, f"{name}: {errors}"
    (e,) = errors
    assert e["stage"] in ("plan", "decode")
    assert e["error_type"] and e["message"].strip()
    assert e["run_id"] == "zoo-run"
    (v,) = rows_by(zoo["videos"])[uri]
    assert v["status"] == "error"
    assert v["num_clips"] == 0 and v["embedding"] is None and v["label"] is None
    assert uri not in rows_by(zoo["clips"])


def test_good_videos_have_no_errors_and_only_videos_are_listed(zoo):
    error_uris = set(zoo["errors"]["video_uri"].to_pylist())
    assert error_uris == set(zoo["broken"].values())
    all_uris = set(zoo["good"].values()) | set(zoo["broken"].values())
    assert set(zoo["videos"]["video_uri"].to_pylist()) == all_uris
    assert zoo["videos"].num_rows == len(all_uris)  # one row per video, README.txt not listed


def test_run_record_and_summary(zoo):
    record = run_record(zoo["out"], "zoo-run")
    n_good, n_broken = len(zoo["good"]), len(zoo["broken"])
    counts = record["counts"]
    assert counts["listed"] == n_good + n_broken
    assert counts["processed"] == n_good
    assert counts["failed"] == n_broken
    assert counts["clips"] == zoo["clips"].num_rows
    assert record["run_id"] == "zoo-run" and record["status"] == "ok"
    assert record["schema_version"] == schema.SCHEMA_VERSION
    assert record["model_version"] == zoo["summary"].model_version
    assert record["sampling"]["fps"] == SAMPLING.fps
    # how inference ran: the CPU defaults on this 2-CPU Ray (one actor, twice its CPU in threads,
    # one Ray Data call at a time, at idle priority beside decode tasks of half a CPU)
    assert record["inference"] == {
        "device": "cpu", "num_gpus": 0.0, "num_cpus": 1.0, "threads": 2, "max_actors": 1,
        "batch_size": 8, "calls_per_actor": 1, "task_cpus": 0.5, "idle_priority": True,
    }  # fmt: skip
    assert record["cluster"] == {"CPU": 2.0, "GPU": 0, "nodes": 1}
    assert zoo["summary"].counts["processed"] == n_good
    assert "reelay index run zoo-run" in zoo["summary"].line()


def test_record_says_which_reader_decoded_the_units(zoo):
    """B-frame H.264 goes through frame_reader: the 60 s video's 15 units from the MP4's packet
    index, and the short MP4s. VP9, MJPEG and MPEG-4 Part 2 have no B-frames: decord, with
    frame_reader's reason. Units whose frames were never read (the broken zoo) count nowhere."""
    record = run_record(zoo["out"], "zoo-run")
    readers = record["progress"]["readers"]
    assert readers.get("frame_reader", 0) >= 15 + 3, readers
    assert readers.get("decord: no frame reordering: no B-frames to skip", 0) >= 4, readers
    assert sum(readers.values()) <= record["counts"]["units"], readers


def test_layout_and_commit(zoo):
    out = zoo["out"]
    record = run_record(out, "zoo-run")
    run_date = datetime.fromisoformat(record["started_at"]).strftime("%Y-%m-%d")
    for table in (schema.VIDEOS, schema.CLIPS, schema.ERRORS):
        files = table_files(out, table)
        assert files, table
        names = []
        for f in files:
            assert f.parent == out / table / f"run_date={run_date}", f
            m = FILE_NAME.match(f.name)
            assert m and m["run"] == "zoo-run", f.name
            names.append(m["n"])
        assert len(set(names)) == len(names)
    # The record lists exactly the committed files, and they exist.
    listed = {Path(p) for p in record["files"]}
    on_disk = {p for p in out.rglob("*.parquet") if schema.STAGING not in p.parts}
    on_disk |= set((out / schema.SEARCH).rglob("*.faiss"))  # the run's search graphs
    assert listed == on_disk and all(p.exists() for p in listed)
    # No staging leftovers.
    assert not list(out.rglob(f"*{schema.STAGING}*"))


def test_output_schemas_match_the_contract(zoo):
    dim = zoo["videos"].schema.field("embedding").type.list_size
    assert dim > 0
    expected = {
        schema.VIDEOS: schema.videos_schema(dim),
        schema.CLIPS: schema.clips_schema(dim),
        schema.ERRORS: schema.ERRORS_SCHEMA,
    }
    for table, want in expected.items():
        for f in table_files(zoo["out"], table):
            got = pq.read_schema(f)
            assert_same_fields(got, want)
            # Ray Data's writer (clips, videos) and ours (errors) both keep the version
            assert got.metadata[b"reelay.schema_version"] == str(schema.SCHEMA_VERSION).encode(), f
    emb_type = zoo["clips"].schema.field("embedding").type
    assert pa.types.is_fixed_size_list(emb_type) and emb_type.value_type == pa.float32()


def test_duckdb_reads_what_pyarrow_reads(zoo):
    out = zoo["out"]
    con = duckdb.connect()
    videos = con.execute(
        f"""SELECT video_uri, status, num_frames, num_clips, embedding, run_date
            FROM read_parquet('{out}/videos/**/*.parquet', hive_partitioning = true)
            ORDER BY video_uri"""
    ).fetchall()
    expected = sorted(zoo["videos"].to_pylist(), key=lambda r: r["video_uri"])
    assert [r[0] for r in videos] == [r["video_uri"] for r in expected]
    run_date = datetime.fromisoformat(run_record(out, "zoo-run")["started_at"]).date()
    for got, want in zip(videos, expected, strict=True):
        assert got[1:4] == (want["status"], want["num_frames"], want["num_clips"])
        if want["embedding"] is None:
            assert got[4] is None
        else:
            np.testing.assert_array_equal(np.asarray(got[4], np.float32), want["embedding"])
        assert str(got[5]) == str(run_date)
    # A join analysts write: clips per video agrees with videos.num_clips.
    mismatches = con.execute(
        f"""SELECT v.video_uri, v.num_clips, count(c.clip_index) AS n
            FROM read_parquet('{out}/videos/**/*.parquet', hive_partitioning = true) v
            LEFT JOIN read_parquet('{out}/clips/**/*.parquet', hive_partitioning = true) c
              USING (video_uri)
            GROUP BY ALL HAVING v.num_clips != count(c.clip_index)"""
    ).fetchall()
    assert mismatches == []
    n_errors = con.execute(
        f"SELECT count(*) FROM read_parquet('{out}/errors/**/*.parquet') WHERE stage IN "
        "('plan', 'decode')"
    ).fetchone()[0]
    assert n_errors == len(zoo["broken"])


# ---------------------------------------------------------------------------------- long video


@pytest.fixture(scope="module")
def whole_runs(zoo):
    """The 60 s video and one broken file (named by a manifest), uncut, twice, same seed."""
    root = zoo["root"]
    long_uri, broken_uri = zoo["good"]["long"], zoo["broken"]["text"]
    manifest = root / "lists" / "long.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"uri\n{long_uri}\n../in/broken/{Path(broken_uri).name}\n")

    def index(name: str, max_failure_fraction: float):
        cfg = IndexConfig(
            input_uri=str(manifest),
            output_uri=str(root / name),
            sampling=SAMPLING,
            plan=PlanConfig(unit_frames=10_000),
            max_failure_fraction=max_failure_fraction,
            run_id=name,
        )
        try:
            return run(cfg), None
        except FailureThresholdExceeded as e:
            return e.summary, e

    runs = {"whole-a": index("whole-a", 0.0)}
    with pytest.MonkeyPatch.context() as patch:  # whole-b merges its sums with a groupby
        patch.setattr("pipeline.index.write.DRIVER_SUMS_BYTES", 0)
        runs["whole-b"] = index("whole-b", 1.0)
    return {
        "long": long_uri,
        "broken": broken_uri,
        "root": root,
        "runs": runs,
        "clips": {name: read_table(root / name, schema.CLIPS) for name in runs},
        "videos": {name: read_table(root / name, schema.VIDEOS) for name in runs},
    }


def test_long_video_is_planned_as_many_units(zoo):
    (entry,) = list_videos(zoo["good"]["long"])
    row = {"uri": entry.uri, "size": entry.size, "fingerprint": entry.fingerprint}
    split = PlanVideo(SAMPLING, PlanConfig(unit_frames=UNIT_FRAMES), StorageConfig())(row)
    whole = PlanVideo(SAMPLING, PlanConfig(unit_frames=10_000), StorageConfig())(row)
    assert len(whole) == 1 and whole[0]["clip_end"] == LONG_CLIPS
    assert len(split) == 15  # 240 sampled frames, 16 per unit
    ranges = [(u["clip_start"], u["clip_end"]) for u in split]
    assert ranges == [(i, i + 4) for i in range(0, LONG_CLIPS, 4)]  # contiguous, no overlap
    assert all(u["sampled_frames"] <= UNIT_FRAMES and not u["error_stage"] for u in split)


def test_cut_run_gives_the_same_clips_as_an_uncut_run(zoo, whole_runs):
    uri = zoo["good"]["long"]
    cut = clips_of(zoo["clips"], uri)
    whole = clips_of(whole_runs["clips"]["whole-a"], uri)
    assert [c["clip_index"] for c in cut] == list(range(LONG_CLIPS))
    assert [c["frame_indices"] for c in cut] == [c["frame_indices"] for c in whole]
    assert [c["start_s"] for c in cut] == pytest.approx([c["start_s"] for c in whole])
    assert [c["end_s"] for c in cut] == pytest.approx([c["end_s"] for c in whole])
    a, b = embedding_matrix(cut), embedding_matrix(whole)
    # The embeddings depend on the pixels (the square moves), so equal embeddings mean the
    # same frames were decoded whether a unit started at frame 0 or after a seek.
    assert not np.allclose(a[0], a[LONG_CLIPS // 2], atol=1e-4)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    (v_cut,) = rows_by(zoo["videos"])[uri]
    (v_whole,) = rows_by(whole_runs["videos"]["whole-a"])[uri]
    assert v_cut["num_clips"] == v_whole["num_clips"] == LONG_CLIPS
    np.testing.assert_allclose(v_cut["embedding"], v_whole["embedding"], rtol=1e-4, atol=1e-5)


def test_same_input_same_seed_same_embeddings(whole_runs):
    uri = whole_runs["long"]
    summary_a, _ = whole_runs["runs"]["whole-a"]
    summary_b, _ = whole_runs["runs"]["whole-b"]
    assert summary_a.model_version == summary_b.model_version
    a = clips_of(whole_runs["clips"]["whole-a"], uri)
    b = clips_of(whole_runs["clips"]["whole-b"], uri)
    assert len(a) == len(b) == LONG_CLIPS
    # Bitwise equal in practice; the tolerance only forgives last-bit float differences a
    # different batch composition could bring.
    np.testing.assert_allclose(embedding_matrix(a), embedding_matrix(b), rtol=1e-6, atol=1e-7)
    assert [c["label"] for c in a] == [c["label"] for c in b]
    assert {r["model_version"] for r in whole_runs["videos"]["whole-b"].to_pylist()} == {
        summary_a.model_version
    }


def test_driver_merge_and_groupby_merge_give_the_same_videos(whole_runs):
    a, b = (rows_by(whole_runs["videos"][name]) for name in ("whole-a", "whole-b"))
    assert set(a) == set(b) == {whole_runs["long"], whole_runs["broken"]}
    for uri in a:
        (row_a,), (row_b,) = a[uri], b[uri]
        for key in ("status", "num_clips", "label", "num_frames", "width", "fingerprint"):
            assert row_a[key] == row_b[key], key
    assert a[whole_runs["broken"]][0]["embedding"] is None
    np.testing.assert_allclose(
        a[whole_runs["long"]][0]["embedding"], b[whole_runs["long"]][0]["embedding"], rtol=1e-6
    )
    assert a[whole_runs["long"]][0]["score"] == pytest.approx(b[whole_runs["long"]][0]["score"])


def test_model_version_follows_the_seed():
    base = IndexConfig(input_uri="x", output_uri="y")
    same = resolve_model(IndexConfig(input_uri="x", output_uri="y"))[0].model_version
    other = resolve_model(IndexConfig(input_uri="x", output_uri="y", seed=1))[0].model_version
    assert resolve_model(base)[0].model_version == same != other


def test_failure_threshold_raises_after_committing_the_good_videos(whole_runs):
    summary, error = whole_runs["runs"]["whole-a"]
    assert isinstance(error, FailureThresholdExceeded)
    assert "1 of 2 videos failed" in str(error)
    assert summary.status == "failed_threshold"
    assert whole_runs["runs"]["whole-b"][1] is None  # max_failure_fraction=1.0 tolerates it
    out = whole_runs["root"] / "whole-a"
    record = run_record(out, "whole-a")  # committed despite the threshold
    assert record["status"] == "failed_threshold"
    assert record["counts"]["processed"] == 1 and record["counts"]["failed"] == 1
    videos = rows_by(whole_runs["videos"]["whole-a"])
    assert videos[whole_runs["long"]][0]["status"] == "ok"
    assert videos[whole_runs["broken"]][0]["status"] == "error"
    assert len(clips_of(whole_runs["clips"]["whole-a"], whole_runs["long"])) == LONG_CLIPS
    errors = read_table(out, schema.ERRORS).to_pylist()
    assert [e["video_uri"] for e in errors] == [whole_runs["broken"]]  # manifest path resolved
    assert not list(out.rglob(f"*{schema.STAGING}*"))


# ---------------------------------------------------------------------------------- the CLI


def test_cli_missing_input_exits_2(cli, tmp_path: Path):
    missing = tmp_path / "no_such_folder"
    code, logs, out = cli("--input", str(missing), "--output", str(tmp_path / "out"))
    assert code == 2
    assert "does not exist" in logs and str(missing) in logs
    assert "reelay index run" not in out
    assert not (tmp_path / "out" / schema.RUNS).exists()


def test_cli_unknown_encoder_exits_2_listing_the_known_names(cli, tmp_path: Path):
    from pipeline.models import list_encoders

    code, logs, _ = cli(
        "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--encoder", "resnet9000"
    )
    assert code == 2
    assert "resnet9000" in logs
    for name in list_encoders():
        assert name in logs


def test_flags_and_driver_modules_leave_torch_to_the_model():
    """Parsing the flags and importing the job's modules must not import torch: a bad flag
    fails at once, and the plan and decode workers that unpickle the job's functions never
    import it."""
    code = (
        "import jobs.index as job; import pipeline.index; "
        "job.build_config(job.parse_args(['--input', 'x', '--output', 'y', "
        "'--encoder', 'resnet18', '--temporal', 'attention']))"
    )
    assert modules_imported_by(code, ("torch", "torchvision")) == []


def test_cli_path_like_run_id_exits_2(cli, tmp_path: Path):
    (tmp_path / "in").mkdir()
    code, logs, _ = cli(
        "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--run-id", "../evil"
    )
    assert code == 2
    assert "--run-id" in logs and "../evil" in logs
    assert not list(tmp_path.rglob("*evil*"))
    with pytest.raises(ConfigError):
        IndexConfig(input_uri="x", output_uri="y", run_id="a/b")


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--gpus-per-actor", "0"], "--gpus-per-actor"),
        (["--gpus-per-actor", "2"], "--gpus-per-actor"),
        (["--calls-per-actor", "0"], "--calls-per-actor"),
        (["--cpus-per-task", "0"], "--cpus-per-task"),
        (["--max-actors", "0"], "--max-actors"),  # 0 once meant the default, silently
        (["--max-actors", "-1"], "--max-actors"),
        (["--decode-timeout", "0"], "--decode-timeout"),  # once a traceback, exit 1
        (["--hidden-dim", "0"], "--hidden-dim"),
        (["--num-classes", "0"], "--num-classes"),
        (["--temporal", "attention", "--hidden-dim", "250"], "--hidden-dim must be a multiple"),
        (["--commit-every", "-1"], "--commit-every"),
        (["--stall-timeout", "60", "--decode-timeout", "60"], "--stall-timeout 60 must be"),
        (["--modalities", "sound"], "--modalities must be one of video, audio, video,audio"),
        (["--modalities", "video,audio", "--fusion", "sum"], "--fusion must be one of"),
        (["--modalities", "audio", "--audio-encoder", "wav2vec"], "unknown audio encoder"),
        (["--audio-weights", "/no/cnn14.pth"], "--audio-weights needs a model that hears"),
        (["--modalities", "audio", "--keep-frame-features"], "--keep-frame-features"),
    ],
)
def test_cli_bad_resource_and_model_flags_exit_2_naming_the_flag(
    cli, tmp_path: Path, flags: list[str], named: str
):
    (tmp_path / "in").mkdir()
    code, logs, _ = cli("--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"), *flags)
    assert code == 2 and named in logs
    assert not (tmp_path / "o").exists()  # a bad flag fails before anything is written
    with pytest.raises(ConfigError, match="--precision"):
        InferConfig(precision="fp8")


def test_cli_missing_audio_weights_exit_2_naming_the_file(cli, tmp_path: Path):
    (tmp_path / "in").mkdir()
    flags = ("--modalities", "audio", "--audio-weights", str(tmp_path / "cnn14.pth"))
    code, logs, _ = cli("--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"), *flags)
    assert code == 2 and f"--audio-weights {tmp_path / 'cnn14.pth'}: no such file" in logs
    assert not list(tmp_path.glob("o/_runs/*.json"))  # nothing committed


def test_cli_refuses_an_output_that_another_live_run_is_writing(cli, tmp_path: Path):
    """A second run on an output stops before its recovery: the live run's staged files stay
    (recovery would have taken them for a crashed run's), and nothing is committed."""
    (tmp_path / "in").mkdir()
    out = tmp_path / "o"
    staged = out / schema.STAGING / "nightly" / schema.CLIPS / "part-00000.parquet"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"staged by the live run")
    with WriterLease(str(out), "nightly", StorageConfig()):
        code, logs, _ = cli("--input", str(tmp_path / "in"), "--output", str(out))
    assert code == 2
    assert "run nightly" in logs and "is writing" in logs and "--output" in logs
    assert "would index the same videos twice" in logs
    assert staged.exists()
    assert not (out / schema.RUNS).exists()

    code, logs, _ = cli("--input", str(tmp_path / "in"), "--output", str(out))  # it has ended
    assert code == 0
    assert not staged.exists()  # now a crashed run's leftovers: recovery removed them
    assert not (out / schema.ACTIVE).exists()


def test_gpu_actor_sizing(ray_local, caplog):
    """--device cuda sizes the actor pool by GPUs: --gpus-per-actor 0.5 packs two actors on
    each GPU (one GPU is assumed while none has joined the cluster yet, with a warning)."""
    from pipeline.ray_env import inference_resources

    with caplog.at_level(logging.WARNING):
        res = inference_resources(InferConfig(device="cuda", gpus_per_actor=0.5))
    assert "no GPU in the cluster" in caplog.text
    assert (res.device, res.num_gpus, res.max_actors, res.threads) == ("cuda", 0.5, 2, 1)
    # GPU actors take bigger batches, and make the next one while the model runs
    assert (res.batch_size, res.calls_per_actor) == (32, 2)
    third = inference_resources(
        InferConfig(
            device="cuda", gpus_per_actor=1 / 3, max_actors=5, batch_size=4, calls_per_actor=1
        )
    )
    assert (third.num_gpus, third.max_actors, third.batch_size, third.calls_per_actor) == (
        1 / 3,
        5,
        4,
        1,
    )  # flags win
    cpu = inference_resources(InferConfig(device="auto", gpus_per_actor=0.5))
    assert (cpu.device, cpu.num_gpus, cpu.batch_size, cpu.calls_per_actor) == ("cpu", 0.0, 8, 1)
    # beside GPU actors a decode task takes a CPU; beside CPU actors half of one, and the
    # actors' threads yield to decoding (pipeline.cpu_priority)
    assert (res.task_cpus, res.idle_priority) == (1.0, False)
    assert (cpu.task_cpus, cpu.idle_priority) == (0.5, True)
    whole = inference_resources(InferConfig(device="cpu", cpus_per_task=1))  # as before
    assert (whole.task_cpus, whole.idle_priority) == (1.0, False)
    with pytest.raises(ConfigError, match="--cpus-per-task 3"):  # this Ray has 2 CPUs
        inference_resources(InferConfig(device="cpu", cpus_per_task=3))


def test_cli_reusing_a_committed_run_id_exits_2_and_touches_nothing(cli, zoo):
    files = {p: p.stat().st_mtime_ns for p in zoo["out"].rglob("*") if p.is_file()}
    code, logs, _ = cli(
        "--input", zoo["good"]["h264"], "--output", str(zoo["out"]), "--run-id", "zoo-run"
    )
    assert code == 2
    assert "zoo-run" in logs and "--run-id" in logs
    assert {p: p.stat().st_mtime_ns for p in zoo["out"].rglob("*") if p.is_file()} == files
