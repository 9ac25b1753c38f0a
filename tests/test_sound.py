"""Sound as a second modality, end to end on the local Ray.

In `make test`: an index made by a seeded model of picture and sound over new videos (one
without sound, one whose audio stream is broken): the sound columns, the errors, and the query
ranking by picture, sound or both (parts that are equal for equal inputs, trained or not); and
the training stages carrying each clip's sound, from the decode stage to a checkpoint.

In the slow suite: a model of picture and sound trained by the training job on labels that need
both, the index job following its checkpoint, and what each modality learns alone
(benchmarks/sound_accuracy.py measures the same on larger corpora)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import schema
from pipeline.config import IndexConfig, SamplingConfig
from pipeline.models import ModelConfig, load_checkpoint
from pipeline.samples import (
    VideoSpec,
    encode_video,
    render_frames,
    sound_corpus,
    write_broken_audio,
)
from pipeline.train import OptimConfig, TrainConfig, WorkersConfig, run

BOTH = "video,audio"
SAMPLING = SamplingConfig(fps=2, clip_frames=8, image_size=32, modalities=BOTH)  # 2 clips a video
MODEL = ModelConfig(encoder="small_cnn", hidden_dim=32, modalities=BOTH)


def new_videos(folder: Path) -> Path:
    """2 videos of each label (red|blue x rising|falling), one without sound, one whose audio
    stream cannot be decoded."""
    sound_corpus(folder, "both", 2, seed=7)
    mute = render_frames(VideoSpec(seconds=8.0, fps=8, width=64, height=64))
    encode_video(mute, folder / "mute.mp4", fps=8)
    write_broken_audio(folder / "broken.mp4", seconds=8.0)
    return folder


@pytest.fixture(scope="module")
def sound_index(ray_local, tmp_path_factory):
    """The index output of a seeded model of picture and sound over `new_videos`."""
    from pipeline import index

    base = tmp_path_factory.mktemp("sound")
    new, out = new_videos(base / "new"), base / "index"
    index.run(IndexConfig(input_uri=str(new), output_uri=str(out), sampling=SAMPLING, model=MODEL))
    return out


@pytest.fixture(scope="module")
def trained_index(ray_local, tmp_path_factory):
    """(training config, its summary, the index run's summary, its output): a model of picture
    and sound trained on `both` (8 videos a label), then the index job with its checkpoint."""
    from pipeline import index

    base = tmp_path_factory.mktemp("trained")
    sound_corpus(base / "train", "both", 8, seed=0)
    cfg = TrainConfig(
        data_uri=str(base / "train"),
        output_uri=str(base / "model"),
        sampling=SAMPLING,
        model=MODEL,
        optim=OptimConfig(epochs=8, batch_size=8),
        workers=WorkersConfig(num_workers=1, cpus_per_worker=2),
    )
    summary = run(cfg)
    new, out = new_videos(base / "new"), base / "index"
    result = index.run(
        IndexConfig(input_uri=str(new), output_uri=str(out), checkpoint_uri=cfg.output_uri)
    )
    return cfg, summary, result, out


def by_name(out: Path, table: str) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in pq.read_table(out / table).to_pylist():
        rows.setdefault(Path(row["video_uri"]).name, []).append(row)
    return rows


def test_the_training_stages_carry_each_clips_sound(ray_local, tmp_path):
    """The training job's stages with a model of picture and sound, in this process: the decode
    stage (Ray Data) keeps each clip's sound, the loop feeds (frames, sound) to the model and it
    learns the sound classes from it, and the evaluation actor rebuilds the checkpoint and
    reads the sound too. (Ray Train's workers run the same loop: the slow suite runs them.)"""
    import torch

    from pipeline.config import PlanConfig, StorageConfig
    from pipeline.models import Checkpoint, build_model, save_checkpoint
    from pipeline.train.data import AUDIO, FRAMES, decode_split
    from pipeline.train.evaluate import evaluate_checkpoint
    from pipeline.train.forward import ModelInput
    from pipeline.train.inputs import list_labeled
    from pipeline.train.loop import train_one_epoch

    sound_corpus(tmp_path / "data", "sound", 2, seed=3)  # 4 labels told apart by sound only
    data = list_labeled(str(tmp_path / "data"), StorageConfig(), 0.5, 0)
    split = decode_split(
        list(data.videos), data.labels, SAMPLING, PlanConfig(), StorageConfig(), 0, None
    )
    assert split.num_clips == 16 and set(split.clips.schema().names) == {FRAMES, AUDIO, "label"}
    batch = next(iter(split.clips.iter_torch_batches(batch_size=16)))
    assert batch[AUDIO].shape == (16, SAMPLING.audio_samples) and batch[AUDIO].abs().max() > 0.1

    config = ModelConfig(encoder="small_cnn", hidden_dim=32, modalities=BOTH, num_classes=4)
    model = build_model(config, seed=0)
    to_input = ModelInput.create("frames", (0.5,) * 3, (0.25,) * 3, torch.device("cpu"), BOTH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(15):
        totals = train_one_epoch(model, optimizer, [batch], to_input)
    assert totals.accuracy == 1.0  # the pictures are shared: only the sound tells them apart

    checkpoint = tmp_path / "best.pt"
    sampling = SAMPLING.to_dict()
    save_checkpoint(
        Checkpoint.from_model(model, config, data.labels, sampling=sampling), checkpoint
    )
    evaluation = evaluate_checkpoint(
        split.clips, str(checkpoint), data.labels, StorageConfig(),
        inputs="frames", use_gpu=False, cpus=1, batch_size=8,
    )  # fmt: skip
    assert evaluation.confusion.sum() == 16


@pytest.mark.slow
def test_a_model_of_picture_and_sound_learns_labels_that_need_both(trained_index):
    cfg, summary, _, _ = trained_index
    assert summary.val_accuracy >= 0.95  # red/blue x rising/falling: neither alone is enough
    ckpt = load_checkpoint(Path(cfg.output_uri) / "best.pt")
    assert ckpt.model.modalities == BOTH and ckpt.sampling["modalities"] == BOTH
    assert ckpt.sampling["audio_rate"] == 16_000 and ckpt.audio_dim == 32


@pytest.mark.slow
def test_the_index_follows_the_checkpoint_and_labels_new_videos_by_both(trained_index):
    _, _, result, out = trained_index
    videos = by_name(out, schema.VIDEOS)
    labelled = {n: rows[0] for n, rows in videos.items() if n not in ("mute.mp4", "broken.mp4")}
    assert len(labelled) == 8
    right = sum(row["label"] == name.rsplit("_", 1)[0] for name, row in labelled.items())
    assert right >= 7, {n: r["label"] for n, r in labelled.items()}
    record = json.loads(next((out / schema.RUNS).glob("*.json")).read_text())
    assert record["sampling"]["modalities"] == BOTH and record["audio_dim"] == 32
    assert result.counts["failed"] == 0


def test_sound_columns_say_what_was_heard(sound_index):
    out = sound_index
    videos = {n: rows[0] for n, rows in by_name(out, schema.VIDEOS).items()}
    clips = by_name(out, schema.CLIPS)
    assert not videos["mute.mp4"]["has_audio"] and videos["broken.mp4"]["has_audio"]
    assert videos["red_rising_0.mp4"]["has_audio"]
    for row in clips["red_rising_0.mp4"]:
        assert 0.1 < row["audio_rms"] < 0.6  # the corpus' amplitudes, 0.2-0.6, as RMS
        assert len(row[schema.AUDIO_EMBEDDING]) == 32
        np.testing.assert_allclose(row[schema.AUDIO_EMBEDDING], row["embedding"][-32:])
    for name in ("mute.mp4", "broken.mp4"):  # indexed on their pictures, heard nothing
        assert clips[name] and all(r["audio_rms"] is None for r in clips[name])
        assert all(r[schema.AUDIO_EMBEDDING] is None for r in clips[name])
        assert all(r["label"] is not None for r in clips[name])
    errors = pq.read_table(out / schema.ERRORS).to_pylist()
    assert [(Path(e["video_uri"]).name, e["stage"], e["error_type"]) for e in errors] == [
        ("broken.mp4", "decode", "UnreadableAudio")
    ]
    assert videos["broken.mp4"]["status"] == "partial" and videos["mute.mp4"]["status"] == "ok"


def test_similar_ranks_by_picture_sound_or_both(sound_index, capsys):
    """In the corpus, red_rising_0 and blue_rising_0 share their sound exactly, and
    red_rising_0 and red_falling_0 their picture: each is the other's nearest by that part."""
    from jobs.query import main

    out = sound_index
    query = str(out.parent / "new" / "red_rising" / "red_rising_0.mp4")

    def nearest(*flags: str) -> list[str]:
        args = [str(out), "--similar", query, "--exclude-self", "-k", "3", "--format", "json"]
        assert main([*args, *flags]) == 0
        return [Path(r["video_uri"]).name for r in json.loads(capsys.readouterr().out)]

    assert nearest("--by", "sound")[0] == "blue_rising_0.mp4"
    assert nearest("--by", "picture")[0] == "red_falling_0.mp4"
    assert nearest("--by", "both") == nearest()  # the whole embedding, the default
    assert main([str(out), "--similar", query, "--by", "sound", "--search", "ann"]) == 2
    assert "searches exactly" in capsys.readouterr().err


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """{kind: folder}: classes that differ only in sound, and only in picture."""
    base = tmp_path_factory.mktemp("corpora")
    for kind in KINDS:
        sound_corpus(base / kind, kind, 24, seed=1)
    return {kind: base / kind for kind in KINDS}


KINDS = ("sound", "picture")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "modalities", "learns"),
    [
        ("sound", "video", False),
        ("sound", "audio", True),
        ("sound", BOTH, True),
        ("picture", "audio", False),
        ("picture", "video", True),
        ("picture", BOTH, True),
    ],
)
def test_each_modality_learns_what_it_carries(
    ray_local, corpora, tmp_path, kind, modalities, learns
):
    """4 classes (chance 0.25) told apart by one modality: a model of it, or of both, learns
    them; a model of the other stays near chance (40 val clips: 0.45 is 3 sd above it)."""
    summary = run(
        TrainConfig(
            data_uri=str(corpora[kind]),
            output_uri=str(tmp_path / "model"),
            sampling=SamplingConfig(fps=2, clip_frames=8, image_size=64, modalities=modalities),
            model=ModelConfig(encoder="small_cnn", hidden_dim=64, modalities=modalities),
            optim=OptimConfig(epochs=10, batch_size=16),
            workers=WorkersConfig(num_workers=1, cpus_per_worker=2),
        )
    )
    if learns:
        assert summary.val_accuracy >= 0.95
    else:
        assert summary.val_accuracy <= 0.45
