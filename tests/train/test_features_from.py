"""jobs/train.py --features-from: a new head trained on an index's stored frame features.

One index run (--keep-frame-features, seeded small_cnn, one unreadable video) and one 2-worker
training run on it are shared by the tests; the index job then loads the trained checkpoint and
must reproduce, from decoded frames, what the head predicted from the stored features.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from pipeline import index
from pipeline.config import IndexConfig, InferConfig, SamplingConfig
from pipeline.listing import InputError
from pipeline.models import ModelConfig, build_model, load_checkpoint
from pipeline.runs import Run
from pipeline.train import OptimConfig, TrainConfig, WorkersConfig, run
from pipeline.train.features import video_key
from pipeline.train.index_source import select_runs

SAMPLING = SamplingConfig(fps=10.0, clip_frames=16, image_size=64)  # the training defaults
INDEX_MODEL = ModelConfig(encoder="small_cnn")  # the index job's default head: mean, 8 classes
INDEX_SEED = 7
HEAD = ModelConfig(encoder="small_cnn", temporal="gru", hidden_dim=32, num_classes=2)


def write_manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["uri", "label", "split"])
        w.writerows(rows)
    return path


def corpus_rows(corpus: Path) -> list[tuple[str, str, str]]:
    with open(corpus / "manifest.csv", newline="") as f:
        return [(str(corpus / r["uri"]), r["label"], r["split"]) for r in csv.DictReader(f)]


def features_cfg(data: Path, output: Path, index_uri: Path | str, **kw) -> TrainConfig:
    return TrainConfig(
        data_uri=str(data),
        output_uri=str(output),
        features_from=str(index_uri),
        # not the index's sampling: --features-from must use the index run's own
        sampling=SamplingConfig(fps=5.0, clip_frames=8, image_size=32),
        model=HEAD,
        optim=OptimConfig(epochs=6, batch_size=4, lr=1e-2),
        seed=1,
        **kw,
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features_from")


@pytest.fixture(scope="module")
def broken(base) -> Path:
    path = base / "broken.mp4"
    path.write_text("not a video\n" * 10)
    return path


@pytest.fixture(scope="module")
def indexed(ray_local, sample_corpus, base, broken) -> Path:
    """The corpus plus one unreadable video, indexed with --keep-frame-features."""
    rows = [(uri, "", "") for uri, _, _ in corpus_rows(sample_corpus)] + [(str(broken), "", "")]
    out = base / "index"
    index.run(
        IndexConfig(
            input_uri=str(write_manifest(base / "index_input.csv", rows)),
            output_uri=str(out),
            sampling=SAMPLING,
            model=INDEX_MODEL,
            infer=InferConfig(keep_frame_features=True),
            seed=INDEX_SEED,
        )
    )
    return out


@pytest.fixture(scope="module")
def trained(indexed, sample_corpus, base, broken):
    """A gru head on the stored features, DDP over 2 workers; the broken video is labeled."""
    rows = [*corpus_rows(sample_corpus), (str(broken), "left", "train")]
    data = write_manifest(base / "data.csv", rows)
    cfg = features_cfg(data, base / "out", indexed, workers=WorkersConfig(num_workers=2))
    return cfg, run(cfg)


@pytest.fixture(scope="module")
def reindexed(trained, sample_corpus, base) -> Path:
    """The index job on the val videos with the trained checkpoint (no frame features)."""
    cfg, _ = trained
    out = base / "reindex"
    index.run(
        IndexConfig(
            input_uri=str(sample_corpus / "val"), output_uri=str(out), checkpoint_uri=cfg.output_uri
        )
    )
    return out


def test_output_is_a_complete_model_with_the_index_encoder(trained, indexed) -> None:
    cfg, summary = trained
    out = Path(cfg.output_uri)
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.labels == ["left", "right"] and ckpt.model_version == summary.model_version
    assert (ckpt.model.encoder, ckpt.model.temporal, ckpt.model.hidden_dim) == (
        "small_cnn",
        "gru",
        32,
    )
    assert SamplingConfig.from_dict(ckpt.sampling) == SAMPLING  # the index run's, not the flags'
    # the encoder is the index run's, bit for bit; the head and classifier were trained
    index_encoder = build_model(INDEX_MODEL, seed=INDEX_SEED).encoder.state_dict()
    for name, tensor in index_encoder.items():
        assert torch.equal(ckpt.state_dict[f"encoder.{name}"], tensor), name
    init = build_model(ckpt.model, seed=cfg.seed).state_dict()
    for name in ("temporal.rnn.weight_ih_l0", "temporal.rnn.weight_hh_l0", "classifier.weight"):
        assert not torch.equal(ckpt.state_dict[name], init[name]), name

    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [m["epoch"] for m in metrics] == list(range(1, 7))
    assert {m["num_workers"] for m in metrics} == {2}
    assert metrics[0]["train_clips"] == summary.counts["train_clips"] == 8  # 4 videos x 2 clips
    assert metrics[-1]["val_clips"] == 4 and metrics[-1]["skipped_videos"] == 1
    confusion = pq.read_table(out / "confusion_matrix.parquet").to_pylist()
    assert len(confusion) == 4 and sum(r["count"] for r in confusion) == 4
    image = np.asarray(Image.open(io.BytesIO((out / "confusion_matrix.png").read_bytes())))
    assert image.ndim == 3 and image.std() > 10

    record = json.loads((out / "train_run.json").read_text())
    index_runs = [json.loads(p.read_text()) for p in (indexed / "_runs").glob("*.json")]
    assert record["status"] == "done" and record["mode"] == "features"
    assert record["features"]["index_uri"] == str(indexed)
    assert record["features"]["run_ids"] == [r["run_id"] for r in index_runs]
    assert record["index_model_version"] == index_runs[0]["model_version"]
    assert record["timings_s"]["features"] > 0 and "decode" not in record["timings_s"]
    assert ckpt.extra["mode"] == "features"


def test_video_the_index_failed_on_is_skipped_and_counted(trained, broken) -> None:
    cfg, summary = trained
    skipped = pq.read_table(Path(cfg.output_uri) / "skipped.parquet").to_pylist()
    assert [s["video_uri"] for s in skipped] == [str(broken)]
    assert skipped[0]["split"] == "train" and skipped[0]["error_stage"] == "plan"
    assert "index run" in skipped[0]["error_message"]
    assert summary.counts["skipped_videos"] == 1


def test_index_job_with_the_checkpoint_reproduces_the_features_path(
    trained, indexed, reindexed, sample_corpus
) -> None:
    cfg, _ = trained
    ckpt = load_checkpoint(Path(cfg.output_uri) / "best.pt")
    key = ("video_uri", "clip_index")
    new = {tuple(r[k] for k in key): r for r in pq.read_table(reindexed / "clips").to_pylist()}
    old = {tuple(r[k] for k in key): r for r in pq.read_table(indexed / "clips").to_pylist()}
    assert len(new) == 4 and set(new) <= set(old)
    clips = sorted(new)
    # the head on the stored features (float32, CPU) ...
    feats = torch.tensor(np.asarray([old[c]["frame_features"] for c in clips], np.float32))
    with torch.no_grad():
        _, logits = ckpt.build_model().forward_features(feats)  # (4, 2)
    probs = torch.softmax(logits, dim=1).numpy()
    # ... and the full model on the decoded frames (the index job) agree
    assert [new[c]["label"] for c in clips] == [ckpt.labels[i] for i in probs.argmax(axis=1)]
    top = np.asarray([new[c]["score"] for c in clips])
    np.testing.assert_allclose(top, probs.max(axis=1), atol=1e-4)
    # and so the index job's accuracy on the val videos is the training evaluation's
    truth = [Path(c[0]).parent.name for c in clips]
    accuracy = np.mean([new[c]["label"] == t for c, t in zip(clips, truth, strict=True)])
    evaluation = json.loads((Path(cfg.output_uri) / "evaluation.json").read_text())
    assert evaluation["clips"] == 4 and accuracy == pytest.approx(evaluation["accuracy"])


def test_index_without_frame_features_fails_clearly(reindexed, sample_corpus, base) -> None:
    cfg = features_cfg(sample_corpus / "manifest.csv", base / "no_features", reindexed)
    with pytest.raises(InputError, match="index it again with jobs/index.py --keep-frame-features"):
        run(cfg)


def test_videos_not_in_the_index_fail_clearly(indexed, sample_corpus, base) -> None:
    other = base / "elsewhere" / "right_9.mp4"
    other.parent.mkdir()
    other.write_bytes((sample_corpus / "val" / "right" / "right_2.mp4").read_bytes())
    data = write_manifest(
        base / "other.csv", [*corpus_rows(sample_corpus), (str(other), "right", "train")]
    )
    cfg = features_cfg(data, base / "not_indexed", indexed)
    with pytest.raises(InputError, match=r"1 of 7 --data videos have no frame features") as e:
        run(cfg)
    assert str(other) in str(e.value) and "--keep-frame-features" in str(e.value)


def test_class_without_training_features_fails_clearly(
    indexed, sample_corpus, base, broken, s3_bucket
) -> None:
    from pipeline import storage

    index_uri = f"s3://{s3_bucket}/index"  # a copy on S3 (moto): read back from there
    storage.filesystem(index_uri).put(str(indexed), storage.strip_scheme(index_uri), recursive=True)
    rows = [r for r in corpus_rows(sample_corpus) if r[1] == "right" or r[2] == "val"]
    data = write_manifest(base / "empty.csv", [*rows, (str(broken), "left", "train")])
    cfg = features_cfg(data, base / "empty_class", index_uri)
    with pytest.raises(InputError, match=r"class\(es\) \['left'\] \(empty class\)"):
        run(cfg)
    skipped = pq.read_table(base / "empty_class" / "skipped.parquet").to_pylist()
    assert [s["video_uri"] for s in skipped] == [str(broken)]


def _run(run_id: str, model_version: str, *, features: bool = True, fps: float = 10.0) -> Run:
    record = {
        "run_id": run_id,
        "model_version": model_version,
        "sampling": {"fps": fps},
        "config": {"infer": {"keep_frame_features": features}},
    }
    return Run(run_id, record, {"clips": (f"/i/clips/run_date=2026-01-01/{run_id}-00000.parquet",)})


def test_runs_of_one_model_and_sampling_are_used_the_newest_ones() -> None:
    runs = [
        _run("a", "m1"),
        _run("b", "m2"),
        _run("c", "m2", features=False),
        _run("d", "m2", fps=5.0),
        _run("e", "m2"),
    ]
    chosen = select_runs(runs)  # the catalog's order: oldest commit first
    assert [r.run_id for r in chosen.used] == ["b", "e"]
    assert [r.run_id for r in chosen.other_models] == ["a", "d"]
    assert [r.run_id for r in chosen.without_features] == ["c"]
    assert select_runs([_run("x", "m1", features=False)]).used == ()


def test_video_uris_match_as_the_index_lists_them() -> None:
    assert video_key("file:///data/a/../b.mp4") == video_key("/data/b.mp4") == "/data/b.mp4"
    assert video_key("s3://bucket/k/v.mp4") == "s3://bucket/k/v.mp4"
