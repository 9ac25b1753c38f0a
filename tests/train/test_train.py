"""End to end on the local Ray: a tiny training run, its output, --resume, and the index job
loading the result with --checkpoint. Kept small: a few videos, 32 px, 8 frames, 1-2 epochs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import schema
from pipeline.config import ConfigError, IndexConfig, SamplingConfig, StorageConfig
from pipeline.listing import InputError
from pipeline.models import ModelConfig, load_checkpoint
from pipeline.runs import OutputError
from pipeline.train import OptimConfig, TrainConfig, run
from pipeline.writer_lease import WriterLease

SMALL = dict(
    # --clips shots: the sample videos have no cut, so their clips are the windows' (2 a video)
    sampling=SamplingConfig(fps=5.0, clip_frames=8, image_size=32, clips="shots"),
    model=ModelConfig(encoder="small_cnn", temporal="gru", hidden_dim=32, num_classes=2),
    optim=OptimConfig(epochs=1, batch_size=4),
)


def manifest_with_broken_video(corpus: Path, folder: Path) -> Path:
    """The corpus' manifest with absolute uris, plus one unreadable training video."""
    folder.mkdir(parents=True, exist_ok=True)
    broken = folder / "broken.mp4"
    broken.write_text("not a video\n" * 10)
    with open(corpus / "manifest.csv", newline="") as f:
        rows = [{**r, "uri": str(corpus / r["uri"])} for r in csv.DictReader(f)]
    rows.append({"uri": str(broken), "label": "right", "split": "train"})
    path = folder / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["uri", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def trained(ray_local, sample_corpus, tmp_path_factory):
    """One small training run (1 epoch) shared by the tests below."""
    base = tmp_path_factory.mktemp("train")
    manifest = manifest_with_broken_video(sample_corpus, base / "data")
    cfg = TrainConfig(data_uri=str(manifest), output_uri=str(base / "out"), **SMALL)
    return cfg, run(cfg)


def test_output_is_complete_and_well_formed(trained) -> None:
    cfg, summary = trained
    out = Path(cfg.output_uri)
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.labels == ["left", "right"]
    assert ckpt.model.temporal == "gru" and ckpt.model.num_classes == 2
    assert SamplingConfig.from_dict(ckpt.sampling) == cfg.sampling
    assert ckpt.extra["trainer"] == "reelay.train" and ckpt.extra["epoch"] == 1
    assert ckpt.model_version == summary.model_version

    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [m["epoch"] for m in metrics] == [1]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_time_s"):
        assert np.isfinite(metrics[0][key])
    assert metrics[0]["train_clips"] == summary.counts["train_clips"] == 8  # 4 videos x 2 clips
    assert metrics[0]["val_clips"] == 4

    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["clips"] == 4 and 0.0 <= evaluation["accuracy"] <= 1.0
    assert set(evaluation["per_class"]) == {"left", "right"}
    confusion = pq.read_table(out / "confusion_matrix.parquet").to_pylist()
    assert len(confusion) == 4 and sum(r["count"] for r in confusion) == 4
    assert pq.read_table(out / "per_class.parquet").column_names[:3] == [
        "label",
        "precision",
        "recall",
    ]
    image = np.asarray(Image.open(io.BytesIO((out / "confusion_matrix.png").read_bytes())))
    assert image.ndim == 3 and image.std() > 10  # opens, and is not blank
    record = json.loads((out / "train_run.json").read_text())
    assert record["status"] == "done" and record["labels"] == ["left", "right"]


def test_unreadable_training_video_is_skipped_and_counted(trained) -> None:
    cfg, summary = trained
    out = Path(cfg.output_uri)
    skipped = pq.read_table(out / "skipped.parquet").to_pylist()
    assert [Path(s["video_uri"]).name for s in skipped] == ["broken.mp4"]
    assert skipped[0]["split"] == "train" and skipped[0]["error_stage"] == "plan"
    assert summary.counts["skipped_videos"] == 1
    assert pq.read_table(out / "metrics.parquet").column("skipped_videos").to_pylist() == [1]


def test_index_job_uses_the_trained_checkpoint(trained, sample_corpus, tmp_path) -> None:
    from pipeline import index

    cfg, _ = trained
    best = load_checkpoint(Path(cfg.output_uri) / "best.pt")
    result = index.run(
        IndexConfig(
            input_uri=str(sample_corpus / "val"),
            output_uri=str(tmp_path / "index"),
            checkpoint_uri=cfg.output_uri,
        )
    )
    assert result.model_version == f"ckpt-{best.model_version}"
    assert best.sampling["clips"] == "shots" and result.counts["shots"] == 2  # as trained
    videos = pq.read_table(tmp_path / "index" / "videos").to_pylist()
    assert len(videos) == 2
    assert {v["label"] for v in videos} <= {"left", "right"}
    assert all(v["model_version"].startswith("ckpt-") for v in videos)
    assert all(v["status"] == "ok" for v in videos)


def test_resume_continues_from_the_last_epoch(trained) -> None:
    cfg, first = trained
    out = Path(cfg.output_uri)
    with pytest.raises(ConfigError, match="already holds a training run; pass --resume"):
        run(cfg)
    before = pq.read_table(out / "metrics.parquet").to_pylist()
    cfg2 = TrainConfig(**{**cfg.__dict__, "optim": OptimConfig(epochs=2, batch_size=4)})
    summary = run(TrainConfig(**{**cfg2.__dict__, "resume": True}))
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[0] == before[0]  # epoch 1 was not trained again
    assert summary.epochs == 2
    changed = TrainConfig(**{**cfg2.__dict__, "resume": True, "sampling": SamplingConfig()})
    with pytest.raises(ConfigError, match="--resume: this run's sampling differ"):
        run(changed)


def test_a_second_run_on_an_output_in_use_is_refused_before_anything(trained) -> None:
    """--resume while another training run holds the output: OutputError, nothing read or
    written (the resume test above passes once the holder has ended)."""
    cfg, _ = trained
    out = Path(cfg.output_uri)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    resume = TrainConfig(**{**cfg.__dict__, "resume": True})
    holder = WriterLease(cfg.output_uri, "train-elsewhere", StorageConfig())
    refused = "run train-elsewhere .* is writing .*; two training runs on one output"
    with holder, pytest.raises(OutputError, match=refused):
        run(resume)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not (out / schema.ACTIVE).exists()


def test_class_with_only_unreadable_videos_fails_clearly(ray_local, sample_corpus, tmp_path):
    rows = [("left", "train"), ("left", "train"), ("left", "val")]
    lines = ["uri,label,split"]
    for i, (label, split) in enumerate(rows):
        (tmp_path / f"bad{i}.mp4").write_bytes(b"\0" * 100)
        lines.append(f"bad{i}.mp4,{label},{split}")
    for p in sorted((sample_corpus / "train" / "right").glob("*.mp4")):
        lines.append(f"{p},right,train")
    lines.append(f"{next((sample_corpus / 'val' / 'right').glob('*.mp4'))},right,val")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    cfg = TrainConfig(data_uri=str(tmp_path / "m.csv"), output_uri=str(tmp_path / "o"), **SMALL)
    with pytest.raises(InputError, match=r"class\(es\) \['left'\] \(empty class\)"):
        run(cfg)
    assert len(pq.read_table(tmp_path / "o" / "skipped.parquet")) == 3
