"""Incremental runs: the ledger decides what a rerun processes (local folder and S3).

In-process runs of `pipeline.index.run` on the session's local Ray (`ray_local`). Each run
costs a few seconds, so one test walks a growing folder through several runs. Also checks the
scheduling examples under `deploy/` (YAML parses, the RayJob is incremental, the cron wrapper
maps exit codes) without a cluster.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest

from pipeline import schema, storage
from pipeline.config import IndexConfig, RunMode, SamplingConfig
from pipeline.index.ledger import read_ledger
from pipeline.runs import committed_runs
from pipeline.samples import VideoSpec, write_video

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SAMPLING = SamplingConfig(fps=2.0, clip_frames=4, image_size=32)  # 2 s video -> 1 clip


def tiny_video(path: Path, seed: int) -> Path:
    """A 2 s, 64x48 video: 4 sampled frames at --fps 2, one clip of 4."""
    return write_video(VideoSpec(width=64, height=48, fps=10, seconds=2.0, seed=seed), path)


def index_config(input_uri: str, output_uri: str, *, seed: int = 0, **mode) -> IndexConfig:
    return IndexConfig(
        input_uri=input_uri,
        output_uri=output_uri,
        sampling=SAMPLING,
        mode=RunMode(**mode),
        seed=seed,
        max_failure_fraction=1.0,
    )


def run_index(input_uri: str, output_uri: str, **kw):
    from pipeline import index

    return index.run(index_config(input_uri, output_uri, **kw))


def record_of(output_uri: str, run_id: str) -> dict:
    (record,) = [r for r in committed_runs(output_uri, storage.NO_OPTIONS) if r["run_id"] == run_id]
    return record


def committed_table(output_uri: str, table: str, run_id: str | None = None) -> pa.Table:
    """Rows of `table` in the files that committed run records list (the readers' view)."""
    fs = storage.filesystem(output_uri)
    prefix = storage.strip_scheme(storage.join(output_uri, table)) + "/"
    parts = [
        pq.read_table(fs.open(storage.strip_scheme(uri), "rb"))
        for record in committed_runs(output_uri, storage.NO_OPTIONS)
        if run_id is None or record["run_id"] == run_id
        for uri in record["files"]
        if storage.strip_scheme(uri).startswith(prefix)
    ]
    if not parts:
        return pa.table({"video_uri": pa.array([], pa.string())})
    return pa.concat_tables(parts, promote_options="permissive")


def uris(table: pa.Table) -> list[str]:
    return sorted(table.column("video_uri").to_pylist())


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (relative path -> sha256) plus every folder (-> 'dir')."""
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_counts(summary, **expected) -> None:
    got = {k: summary.counts.get(k) for k in expected}
    assert got == expected, f"run {summary.run_id}: counts {summary.counts}"
    c = summary.counts
    if "processed" in c:
        assert c["listed"] == c["skipped"] + c["processed"] + c["failed"], c


def test_growing_folder_dry_run_and_model_change(ray_local, tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "index"
    for i in range(3):
        tiny_video(corpus / f"v{i}.mp4", seed=i)
    listed = [str(corpus / f"v{i}.mp4") for i in range(3)]

    # A dry run before anything exists: reports 3 new videos, writes nothing, no estimate yet.
    dry = run_index(str(corpus), str(out), incremental=True, dry_run=True)
    assert dry.status == "dry_run"
    assert dry.plan["new_videos"] == 3
    assert dry.plan["total_bytes"] == sum(os.path.getsize(p) for p in listed)
    assert dry.plan["work_units"] == 3 and dry.plan["clips"] == 3
    assert dry.plan["video_hours"] == pytest.approx(3 * 2.0 / 3600, rel=0.1)
    assert dry.plan["estimated_seconds"] is None
    assert not out.exists(), "a dry run must not create the output"

    # Run 1: everything is new.
    run1 = run_index(str(corpus), str(out), incremental=True)
    assert_counts(run1, listed=3, skipped=0, processed=3, failed=0)
    assert uris(committed_table(str(out), schema.VIDEOS)) == listed
    ledger = read_ledger(str(out), storage.NO_OPTIONS)
    assert sorted(ledger.column("video_uri").to_pylist()) == listed
    assert all(fp.startswith("size:") for fp in ledger.column("fingerprint").to_pylist())
    assert set(ledger.column("model_version").to_pylist()) == {run1.model_version}

    # Run 2: nothing new -> nothing processed, no new videos/clips rows, yet a run record.
    videos_before = sorted((out / schema.VIDEOS).rglob("*.parquet"))
    run2 = run_index(str(corpus), str(out), incremental=True)
    assert_counts(run2, listed=3, skipped=3, processed=0, failed=0, units=0)
    assert sorted((out / schema.VIDEOS).rglob("*.parquet")) == videos_before
    published = [
        f
        for f in record_of(str(out), run2.run_id)["files"]
        if f"/{schema.ERRORS}/" not in f  # an (empty) errors file is written by every run
    ]
    assert published == [], "a run with nothing new published rows"
    assert committed_table(str(out), schema.ERRORS, run2.run_id).num_rows == 0
    assert record_of(str(out), run2.run_id)["counts"]["skipped"] == 3

    # One new file and one rewritten file (different content: new size and mtime).
    tiny_video(corpus / "v3.mp4", seed=3)
    old = os.stat(corpus / "v0.mp4")
    tiny_video(corpus / "v0.mp4", seed=100)
    os.utime(corpus / "v0.mp4", (old.st_atime + 10, old.st_mtime + 10))  # coarse-mtime file systems
    changed = sorted([str(corpus / "v0.mp4"), str(corpus / "v3.mp4")])

    # Dry run with a committed run behind it: 2 new, an estimate, the output byte-identical.
    before = snapshot(out)
    dry = run_index(str(corpus), str(out), incremental=True, dry_run=True)
    assert snapshot(out) == before, "a dry run must not write, move or delete anything"
    assert dry.plan["new_videos"] == 2
    assert dry.plan["total_bytes"] == sum(os.path.getsize(p) for p in changed)
    assert dry.plan["work_units"] == 2
    assert dry.counts["listed"] == 4 and dry.counts["skipped"] == 2
    assert dry.plan["estimated_seconds"] is not None and dry.plan["estimated_seconds"] > 0

    # Run 3: exactly the new and the changed video.
    run3 = run_index(str(corpus), str(out), incremental=True)
    assert_counts(run3, listed=4, skipped=2, processed=2, failed=0)
    assert uris(committed_table(str(out), schema.VIDEOS, run3.run_id)) == changed
    assert uris(committed_table(str(out), schema.CLIPS, run3.run_id)) == changed

    # Run 4: another model (seed) has indexed nothing yet -> everything is reprocessed.
    run4 = run_index(str(corpus), str(out), incremental=True, seed=1)
    assert run4.model_version != run1.model_version
    assert_counts(run4, listed=4, skipped=0, processed=4, failed=0)
    rows = committed_table(str(out), schema.VIDEOS, run4.run_id)
    assert uris(rows) == sorted(listed[1:] + changed)
    assert set(rows.column("model_version").to_pylist()) == {run4.model_version}

    # Run 5: the same new model again -> nothing to do.
    run5 = run_index(str(corpus), str(out), incremental=True, seed=1)
    assert_counts(run5, listed=4, skipped=4, processed=0, failed=0)
    # runs 2, 3 and 5 took the seeded model's version from the run before (same flags, seed,
    # torch): run 3's actors built the model and found the same version, or it would have failed
    assert run2.model_version == run3.model_version == run1.model_version
    assert run5.model_version == run4.model_version
    assert record_of(str(out), run5.run_id)["environment"]["torch"]

    # A nightly run with nothing new, as the CLI runs it: torch is never imported on the driver.
    flags = ["--input", str(corpus), "--output", str(out), "--incremental", "--seed", "1",
             "--fps", "2", "--clip-frames", "4", "--image-size", "32"]  # fmt: skip
    night = (
        "import runpy, sys; sys.argv = ['index.py', *sys.argv[1:]]\n"
        "try:\n    runpy.run_path('jobs/index.py', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('torch imported:', 'torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", night, *flags], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch imported: False" in done.stdout, done.stderr[-2000:]

    # Every (video, model) is committed once per fingerprint; nothing is left in staging.
    videos = committed_table(str(out), schema.VIDEOS).to_pylist()
    keys = [(r["video_uri"], r["fingerprint"], r["model_version"]) for r in videos]
    assert len(keys) == len(set(keys)) == 3 + 2 + 4
    assert not (out / schema.STAGING).exists()


@pytest.fixture(scope="module")
def broken_corpus_runs(ray_local, tmp_path_factory):
    """Two good videos and one that never opens; an incremental run, then --retry-errors."""
    root = tmp_path_factory.mktemp("retry")
    corpus, out = root / "corpus", root / "index"
    tiny_video(corpus / "good_0.mp4", seed=0)
    tiny_video(corpus / "good_1.mp4", seed=1)
    (corpus / "broken.mp4").write_bytes(os.urandom(4096))
    first = run_index(str(corpus), str(out), incremental=True)
    retry = run_index(str(corpus), str(out), retry_errors=True)
    return corpus, out, first, retry


def test_retry_errors_retries_only_the_failed_video(broken_corpus_runs):
    corpus, out, first, retry = broken_corpus_runs
    broken = str(corpus / "broken.mp4")
    assert_counts(first, listed=3, skipped=0, processed=2, failed=1)
    errors = committed_table(str(out), schema.ERRORS, first.run_id)
    assert uris(errors) == [broken]

    # The broken file is attempted again (and fails again); the good ones are skipped.
    # `processed` counts videos indexed successfully, so listed = skipped + processed + failed.
    assert_counts(retry, listed=3, skipped=2, processed=0, failed=1)
    assert uris(committed_table(str(out), schema.ERRORS, retry.run_id)) == [broken]
    assert uris(committed_table(str(out), schema.VIDEOS, retry.run_id)) == [broken]
    assert committed_table(str(out), schema.CLIPS, retry.run_id).num_rows == 0
    assert record_of(str(out), retry.run_id)["config"]["mode"]["retry_errors"] is True


def test_retry_errors_forgets_a_failure_fixed_by_a_new_file():
    """A video that failed, was replaced (new fingerprint) and then indexed is not retried.

    Pure ledger logic: the history broken (error, twice) -> replaced -> indexed ok."""
    from pipeline.index.ledger import select_videos
    from pipeline.listing import VideoEntry

    rows = [
        ("/c/broken.mp4", "size:4096:mtime:1", "error", "run-a"),
        ("/c/broken.mp4", "size:4096:mtime:1", "error", "run-b"),  # --retry-errors, failed again
        ("/c/broken.mp4", "size:9000:mtime:2", "ok", "run-c"),  # replaced upstream, indexed
        ("/c/good.mp4", "size:10:mtime:1", "ok", "run-a"),
    ]
    ledger = pa.Table.from_pylist(
        [
            {"video_uri": u, "fingerprint": f, "model_version": "m1", "status": s, "run_id": r}
            for u, f, s, r in rows
        ],
        schema=schema.LEDGER_SCHEMA,
    )
    listed = [
        VideoEntry("/c/broken.mp4", 9000, "size:9000:mtime:2"),
        VideoEntry("/c/good.mp4", 10, "size:10:mtime:1"),
    ]
    selection = select_videos(listed, ledger, "m1", retry_errors=True)
    assert selection.todo == [] and selection.skipped == 2
    # Still failing under its current fingerprint: retried.
    failing = ledger.filter(pa.compute.not_equal(ledger["run_id"], "run-c"))
    listed_old = [VideoEntry("/c/broken.mp4", 4096, "size:4096:mtime:1"), listed[1]]
    selection = select_videos(listed_old, failing, "m1", retry_errors=True)
    assert [e.uri for e in selection.todo] == ["/c/broken.mp4"] and selection.skipped == 1
    # Another model's failures are not this model's to retry.
    assert select_videos(listed_old, failing, "m2", retry_errors=True).todo == []


def test_incremental_over_s3_uses_etags(ray_local, s3_server, s3_bucket, tmp_path):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for i in range(2):
        s3.upload_file(
            str(tiny_video(tmp_path / f"s{i}.mp4", seed=10 + i)), s3_bucket, f"raw/s{i}.mp4"
        )
    inp, out = f"s3://{s3_bucket}/raw/", f"s3://{s3_bucket}/lake/index"

    run1 = run_index(inp, out, incremental=True)
    assert_counts(run1, listed=2, skipped=0, processed=2, failed=0)
    ledger = read_ledger(out, storage.NO_OPTIONS)
    fingerprints = ledger.column("fingerprint").to_pylist()
    assert len(fingerprints) == 2 and all(fp.startswith("etag:") for fp in fingerprints)

    s3.upload_file(str(tiny_video(tmp_path / "s2.mp4", seed=12)), s3_bucket, "raw/s2.mp4")
    run2 = run_index(inp, out, incremental=True)
    assert_counts(run2, listed=3, skipped=2, processed=1, failed=0)
    assert uris(committed_table(out, schema.VIDEOS, run2.run_id)) == [
        f"s3://{s3_bucket}/raw/s2.mp4"
    ]
    all_videos = uris(committed_table(out, schema.VIDEOS))
    assert all_videos == [f"s3://{s3_bucket}/raw/s{i}.mp4" for i in range(3)]
    keys = s3.list_objects_v2(Bucket=s3_bucket, Prefix="lake/index/")["Contents"]
    assert not [k["Key"] for k in keys if "/_staging/" in k["Key"]]


# --- the command line ----------------------------------------------------------------------


def test_mode_flags_reach_the_config():
    sys.path.insert(0, str(REPO / "jobs"))
    try:
        import index as job  # jobs/index.py
    finally:
        sys.path.remove(str(REPO / "jobs"))
    base = ["--input", "in/", "--output", "out/"]
    mode = job.build_config(job.parse_args([*base, "--incremental"])).mode
    assert mode == RunMode(incremental=True)
    mode = job.build_config(job.parse_args([*base, "--incremental", "--reindex"])).mode
    assert mode == RunMode(incremental=False), "--reindex overrides --incremental"
    mode = job.build_config(job.parse_args([*base, "--retry-errors"])).mode
    assert mode == RunMode(retry_errors=True)
    mode = job.build_config(job.parse_args([*base, "--incremental", "--dry-run"])).mode
    assert mode == RunMode(incremental=True, dry_run=True)
    assert job.build_config(job.parse_args(base)).mode == RunMode()


# --- deploy/: scheduling examples ----------------------------------------------------------


def yaml_documents() -> list[tuple[Path, dict]]:
    yaml = pytest.importorskip("yaml")
    docs = []
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        with open(path, encoding="utf-8") as f:
            docs += [(path, d) for d in yaml.safe_load_all(f) if d is not None]
    return docs


def embedded_rayjobs() -> list[dict]:
    """RayJobs in the manifests, including templates held as text in ConfigMaps."""
    import yaml

    found = []
    for _, doc in yaml_documents():
        if doc.get("kind") == "RayJob":
            found.append(doc)
        for text in (doc.get("data") or {}).values() if doc.get("kind") == "ConfigMap" else []:
            found += [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "RayJob"]
    return found


def test_deploy_yaml_parses_and_the_rayjob_is_incremental():
    docs = yaml_documents()
    kinds = {d["kind"] for _, d in docs}
    assert {"CronJob", "ServiceAccount", "Role", "RoleBinding"} <= kinds, kinds
    for path, doc in docs:
        meta = doc.get("metadata") or {}
        assert doc.get("apiVersion") and (meta.get("name") or meta.get("generateName")), path
    (rayjob,) = embedded_rayjobs()
    spec = rayjob["spec"]
    assert "jobs/index.py" in spec["entrypoint"] and "--incremental" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    groups = cluster["workerGroupSpecs"]
    gpu_limits = [
        c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        for g in groups
        for c in g["template"]["spec"]["containers"]
    ]
    assert len(groups) >= 2 and any(gpu_limits) and not all(gpu_limits), gpu_limits

    (cronjob,) = [d for _, d in docs if d["kind"] == "CronJob"]
    assert len(cronjob["spec"]["schedule"].split()) == 5
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid", "one writer per output at a time"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (binding,) = [d for _, d in docs if d["kind"] == "RoleBinding"]
    assert pod["serviceAccountName"] == binding["subjects"][0]["name"]
    (role,) = [d for _, d in docs if d["kind"] == "Role"]
    rayjob_rules = [r for r in role["rules"] if "rayjobs" in r["resources"]]
    assert rayjob_rules and "create" in rayjob_rules[0]["verbs"]


def test_cron_line_and_wrapper_script(tmp_path):
    cron = (DEPLOY / "cron" / "reelay-nightly.cron").read_text()
    lines = [ln for ln in cron.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    jobs = [ln for ln in lines if "nightly.sh" in ln]
    assert len(jobs) == 1 and len(jobs[0].split()) >= 6, jobs
    script = DEPLOY / "cron" / "nightly.sh"
    assert os.stat(script).st_mode & stat.S_IXUSR, "nightly.sh must be executable"
    subprocess.run(["bash", "-n", str(script)], check=True)


FAKE_RAY = """#!/usr/bin/env bash
# Stand-in for the `ray` CLI: records its calls, plays one scenario.
echo "$*" >> "$FAKE_DIR/calls"
case "$1 $2" in
    "job submit")
        printf "%s\\n" "$@" > "$FAKE_DIR/submit_args"
        [ "$SCENARIO" = unreachable ] && { echo "ConnectionError: no cluster" >&2; exit 1; }
        echo "Job '$5' submitted successfully" ;;
    "job logs") echo "reelay index run fake: 3 videos ok, 0 failed" ;;
    "job status")
        case "$SCENARIO" in
            ok) echo "Job 'x' succeeded" ;;
            lost) echo "Job 'x' failed"; echo "Status message: Job supervisor actor died" ;;
            *) echo "Job 'x' failed"
               echo "Status message: Job entrypoint command failed with exit code $SCENARIO" ;;
        esac ;;
    *) exit 64 ;;
esac
"""


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [("ok", 0), ("2", 2), ("3", 3), ("4", 5), ("1", 1), ("lost", 1), ("unreachable", 1)],
)
def test_nightly_script_submits_incremental_and_maps_exit_codes(tmp_path, scenario, expected):
    """nightly.sh against a stand-in `ray`: the submitted command, the log, the exit code."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ray").write_text(FAKE_RAY)
    (bin_dir / "ray").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_DIR": str(tmp_path),
        "SCENARIO": scenario,
        "REELAY_INPUT": "s3://corpus/raw/",
        "REELAY_OUTPUT": "s3://lake/video_index",
        "REELAY_EXTRA_ARGS": "--fps 2 --max-failure-fraction 0.1",
        "REELAY_LOG_DIR": str(tmp_path / "logs"),
        "REELAY_LOCK": str(tmp_path / "lock"),
        "REELAY_REPO": str(REPO),
    }
    script = str(DEPLOY / "cron" / "nightly.sh")
    proc = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == expected, proc.stdout + proc.stderr
    args = (tmp_path / "submit_args").read_text().splitlines()
    assert args[:2] == ["job", "submit"]
    assert args[args.index("--working-dir") + 1] == str(REPO)
    entry = args[args.index("--") + 1 :]
    assert entry[:2] == ["python", "jobs/index.py"]
    assert "--incremental" in entry and entry[-4:] == [
        "--fps",
        "2",
        "--max-failure-fraction",
        "0.1",
    ]
    assert entry[entry.index("--input") + 1] == "s3://corpus/raw/"
    assert entry[entry.index("--output") + 1] == "s3://lake/video_index"
    (log,) = (tmp_path / "logs").glob("reelay-nightly-*.log")
    if scenario != "unreachable":
        assert "reelay index run fake" in log.read_text()


def test_nightly_script_refuses_to_overlap_a_running_night(tmp_path):
    lock = tmp_path / "lock"
    env = {
        **os.environ,
        "REELAY_INPUT": "in/",
        "REELAY_OUTPUT": "out/",
        "REELAY_LOG_DIR": str(tmp_path / "logs"),
        "REELAY_LOCK": str(lock),
        "PATH": f"{tmp_path}:{os.environ['PATH']}",  # no `ray` needed: it must not get that far
    }
    with open(lock, "w") as held:
        import fcntl

        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = subprocess.run(
            [str(DEPLOY / "cron" / "nightly.sh")], env=env, capture_output=True, text=True
        )
    assert proc.returncode == 4, proc.stderr
    assert "another run holds" in proc.stderr


FAKE_KUBECTL = """#!/bin/sh
# Stand-in for kubectl: 9 old RayJobs, a new one that ends as $SCENARIO.
echo "$*" >> "$FAKE_DIR/calls"
case "$*" in
    "get rayjobs "*) for i in 1 2 3 4 5 6 7 8 9; do echo "rayjob.ray.io/nightly-old$i"; done ;;
    "delete "*) ;;
    "create -f /template/rayjob.yaml "*) echo "reelay-nightly-new" ;;
    *jobDeploymentStatus*) echo Complete ;;
    *jobStatus*) [ "$SCENARIO" = 0 ] && echo SUCCEEDED || echo FAILED ;;
    *message*) [ "$SCENARIO" = 0 ] || echo "Job entrypoint failed with exit code $SCENARIO" ;;
    *) exit 64 ;;
esac
"""


@pytest.mark.parametrize(("scenario", "expected"), [("0", 0), ("3", 3), ("lost", 1)])
def test_cronjob_pod_script_creates_waits_and_reports(tmp_path, scenario, expected):
    """The CronJob container's shell script against a stand-in kubectl."""
    (cronjob,) = [d for _, d in yaml_documents() if d["kind"] == "CronJob"]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    (tmp_path / "kubectl").write_text(FAKE_KUBECTL)
    (tmp_path / "kubectl").chmod(0o755)
    if scenario == "lost":
        scenario = ""  # failed, and no exit code in the message
    env = {
        **os.environ,
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "FAKE_DIR": str(tmp_path),
        "SCENARIO": scenario,
    }
    proc = subprocess.run(
        ["/bin/sh", "-c", container["args"][0]], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == expected, proc.stdout + proc.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    deleted = [c for c in calls if c.startswith("delete ")]
    assert deleted == ["delete rayjob.ray.io/nightly-old1 rayjob.ray.io/nightly-old2 --wait=false"]
    assert "created rayjob/reelay-nightly-new" in proc.stdout
