"""Slow training claims (make test-all): temporal heads learn time order, the order-blind mean
head cannot, 2-worker DDP matches 1 worker, and outputs on s3:// work."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from pipeline.config import IndexConfig, SamplingConfig
from pipeline.models import ModelConfig, load_checkpoint
from pipeline.train import OptimConfig, TrainConfig, WorkersConfig, run

pytestmark = pytest.mark.slow

SAMPLING = SamplingConfig(fps=10.0, clip_frames=16, image_size=64)  # 2 clips per video


@pytest.fixture(scope="module")
def direction_corpus(tmp_path_factory):
    """300 videos: 'right' and 'left' (exact time reversals), 120 train + 30 val per class."""
    from pipeline.samples import make_sample_corpus

    root = tmp_path_factory.mktemp("directions")
    return make_sample_corpus(root, per_class=150, classes=("right", "left"), val_per_class=30)


def train(corpus, out, temporal: str, workers: int = 1, epochs: int = 8):
    cfg = TrainConfig(
        data_uri=str(corpus / "manifest.csv"),
        output_uri=str(out),
        sampling=SAMPLING,
        model=ModelConfig(encoder="small_cnn", temporal=temporal, hidden_dim=128),
        optim=OptimConfig(epochs=epochs, batch_size=16),
        workers=WorkersConfig(num_workers=workers),
    )
    return run(cfg)


@pytest.mark.parametrize("temporal", ["attention", "gru", "lstm"])
def test_temporal_heads_learn_time_order(ray_local, direction_corpus, tmp_path, temporal):
    summary = train(direction_corpus, tmp_path / "out", temporal)
    assert summary.val_accuracy >= 0.95, summary.history


def test_mean_head_cannot_learn_time_order(ray_local, direction_corpus, tmp_path):
    summary = train(direction_corpus, tmp_path / "out", "mean", epochs=6)
    # Left and right have the same frames (reversed): the mean of frame features is identical.
    assert 0.35 <= summary.val_accuracy <= 0.65, summary.history


def test_two_workers_train_as_well_as_one(ray_local, direction_corpus, tmp_path):
    one = train(direction_corpus, tmp_path / "w1", "gru")
    two = train(direction_corpus, tmp_path / "w2", "gru", workers=2)
    t1 = [m["epoch_time_s"] for m in one.history[1:]]
    t2 = [m["epoch_time_s"] for m in two.history[1:]]
    print(f"epoch time 1 worker {sum(t1) / len(t1):.1f}s, 2 workers {sum(t2) / len(t2):.1f}s")
    assert {m["num_workers"] for m in two.history} == {2}
    assert two.val_accuracy >= 0.95 and one.val_accuracy >= 0.95
    assert abs(two.val_accuracy - one.val_accuracy) <= 0.05


def test_output_on_s3_then_index_from_it(ray_local, s3_bucket, sample_corpus, tmp_path):
    import fsspec

    out = f"s3://{s3_bucket}/runs/small"
    cfg = TrainConfig(
        data_uri=str(sample_corpus / "manifest.csv"),
        output_uri=out,
        sampling=SamplingConfig(fps=5.0, clip_frames=8, image_size=32),
        model=ModelConfig(temporal="gru", hidden_dim=32),
        optim=OptimConfig(epochs=1, batch_size=4),
    )
    summary = run(cfg)
    fs = fsspec.filesystem("s3")
    best = load_checkpoint(io.BytesIO(fs.cat(f"{s3_bucket}/runs/small/best.pt")))
    assert best.model_version == summary.model_version
    assert (
        pq.read_table(io.BytesIO(fs.cat(f"{s3_bucket}/runs/small/metrics.parquet"))).num_rows == 1
    )
    assert json.loads(fs.cat(f"{s3_bucket}/runs/small/evaluation.json"))["clips"] == 4
    assert fs.ls(f"{s3_bucket}/runs/small/checkpoints")

    from pipeline import index

    result = index.run(
        IndexConfig(
            input_uri=str(sample_corpus / "val"),
            output_uri=str(tmp_path / "index"),
            checkpoint_uri=out,
        )
    )
    assert result.model_version == f"ckpt-{best.model_version}"


def test_a_killed_worker_restarts_from_the_last_checkpoint(sample_corpus, tmp_path):
    """--max-failures: a training worker SIGKILLed at the start of epoch 2 (once) costs a
    restart (from epoch 1's checkpoint, or from scratch when Ray Train had not yet taken it
    in); the run finishes all epochs and says where it restarted."""
    from tests.job_process import run_python, small_training

    out, marks = tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    args = small_training(sample_corpus, out, "--max-failures", "1")
    faults = {"REELAY_CRASH_ONCE_AT": "train_epoch:2", "REELAY_FAULT_DIR": str(marks)}
    code, log = run_python(args, faults, tmp_path / "train.log", timeout_s=400)
    assert code == 0, log[-4000:]
    assert (marks / "crashed-train_epoch").exists()
    record = json.loads((out / "train_run.json").read_text())
    assert record["epochs"] == 3 and record["status"] == "done"
    # from epoch 1's checkpoint, or from scratch when the worker died before Ray Train's
    # controller had taken that checkpoint in (it polls the workers' reports)
    (restart,) = record["restarts"]
    assert restart["from_epoch"] in (0, 1), record["restarts"]
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    expected = [(e, 0 if e <= restart["from_epoch"] else 1) for e in (1, 2, 3)]
    assert [(m["epoch"], m["attempt"]) for m in metrics] == expected


def test_a_restart_after_a_lost_worker_keeps_the_accuracy(direction_corpus, tmp_path):
    """A worker killed at the start of epoch 3 (--max-failures 1) on the corpus that learns
    time order: the run restarts from a checkpoint and its best model still separates the
    directions (>= 0.95, as without a failure)."""
    from tests.job_process import run_python

    out, marks = tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    args = [
        "jobs/train.py", "--data", str(direction_corpus / "manifest.csv"), "--output", str(out),
        "--epochs", "6", "--fps", "10", "--clip-frames", "16", "--image-size", "64",
        "--encoder", "small_cnn", "--temporal", "gru", "--hidden-dim", "128",
        "--batch-size", "16", "--max-failures", "1",
    ]  # fmt: skip
    faults = {"REELAY_CRASH_ONCE_AT": "train_epoch:3", "REELAY_FAULT_DIR": str(marks)}
    code, log = run_python(args, faults, tmp_path / "train.log", timeout_s=1500)
    assert code == 0, log[-4000:]
    assert (marks / "crashed-train_epoch").exists()
    record = json.loads((out / "train_run.json").read_text())
    (restart,) = record["restarts"]
    assert restart["from_epoch"] in (0, 1, 2), record["restarts"]
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["accuracy"] >= 0.95, evaluation
