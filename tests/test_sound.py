"""Sound as a second modality, end to end on the local Ray: a model of picture and sound trained
on labels that need both, the index job following its checkpoint over new videos (one without
sound, one whose audio stream is broken), and the query ranking by picture, sound or both.

The models of one modality alone on these corpora (at chance where their modality carries
nothing) are measured by benchmarks/sound_accuracy.py and the slow suite."""

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
TRAIN_PER_CLASS = 8  # x 4 labels x 2 clips a video


@pytest.fixture(scope="module")
def sound_index(ray_local, tmp_path_factory):
    """(training config, its summary, the index run's summary, the index's output folder)."""
    from pipeline import index

    base = tmp_path_factory.mktemp("sound")
    sound_corpus(base / "train", "both", TRAIN_PER_CLASS, seed=0)
    cfg = TrainConfig(
        data_uri=str(base / "train"),
        output_uri=str(base / "model"),
        sampling=SamplingConfig(fps=2, clip_frames=8, image_size=32, modalities=BOTH),
        model=ModelConfig(encoder="small_cnn", hidden_dim=32, modalities=BOTH),
        optim=OptimConfig(epochs=8, batch_size=8),
        workers=WorkersConfig(num_workers=1, cpus_per_worker=2),
    )
    summary = run(cfg)
    new = base / "new"
    sound_corpus(new, "both", 2, seed=7)  # videos the model never saw
    mute = render_frames(VideoSpec(seconds=8.0, fps=8, width=64, height=64))
    encode_video(mute, new / "mute.mp4", fps=8)
    write_broken_audio(new / "broken.mp4", seconds=8.0)
    out = base / "index"
    result = index.run(
        IndexConfig(input_uri=str(new), output_uri=str(out), checkpoint_uri=cfg.output_uri)
    )
    return cfg, summary, result, out


def by_name(out: Path, table: str) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in pq.read_table(out / table).to_pylist():
        rows.setdefault(Path(row["video_uri"]).name, []).append(row)
    return rows


def test_a_model_of_picture_and_sound_learns_labels_that_need_both(sound_index):
    cfg, summary, _, _ = sound_index
    assert summary.val_accuracy >= 0.95  # red/blue x rising/falling: neither alone is enough
    ckpt = load_checkpoint(Path(cfg.output_uri) / "best.pt")
    assert ckpt.model.modalities == BOTH and ckpt.sampling["modalities"] == BOTH
    assert ckpt.sampling["audio_rate"] == 16_000 and ckpt.audio_dim == 32


def test_the_index_follows_the_checkpoint_and_labels_new_videos_by_both(sound_index):
    _, _, result, out = sound_index
    videos = by_name(out, schema.VIDEOS)
    labelled = {n: rows[0] for n, rows in videos.items() if n not in ("mute.mp4", "broken.mp4")}
    assert len(labelled) == 8
    right = sum(row["label"] == name.rsplit("_", 1)[0] for name, row in labelled.items())
    assert right >= 7, {n: r["label"] for n, r in labelled.items()}
    record = json.loads(next((out / schema.RUNS).glob("*.json")).read_text())
    assert record["sampling"]["modalities"] == BOTH and record["audio_dim"] == 32
    assert result.counts["failed"] == 0


def test_sound_columns_say_what_was_heard(sound_index):
    _, _, _, out = sound_index
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

    _, _, _, out = sound_index
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
