"""`--encoder clip`: a tiny CLIP built from a config with random weights (tests/tiny_clip.py)
proves the plumbing: an index run through its image tower, a text query through its text tower
returning k rows sorted by score, zero-shot labels from text, and the refusals. What the
answers mean comes from a user's pretrained weights, not from this model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.samples import VideoSpec, write_video
from tests.tiny_clip import write_tiny_clip

FLAGS = ["--fps", "2", "--clip-frames", "2", "--image-size", "32", "--temporal", "mean"]
LABELS = ("red square", "blue circle", "green thing")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "clip")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clip-corpus")
    for i, shape in enumerate(("square", "circle", "square")):
        spec = VideoSpec(width=64, height=48, seconds=2.0, shape=shape, seed=i)
        write_video(spec, folder / f"v{i}.mp4")
    return folder


@pytest.fixture(scope="module")
def clip_index(ray_local, clip_folder, corpus, tmp_path_factory):
    from jobs.index import main

    out = tmp_path_factory.mktemp("clip-index") / "index"
    labels = ",".join(LABELS)
    code = main(
        ["--input", str(corpus), "--output", str(out), "--encoder", "clip"]
        + ["--weights", str(clip_folder), "--labels", labels, *FLAGS]
    )
    assert code == 0
    return out


def query(*argv: str, capsys) -> tuple[int, str, str]:
    from jobs.query import main

    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_clip_index_embeds_frames_in_clips_space_and_labels_zero_shot(clip_index, clip_folder):
    videos = pq.read_table(clip_index / "videos").to_pylist()
    assert len(videos) == 3 and {v["status"] for v in videos} == {"ok"}
    assert all(v["model_version"].startswith("pretrained-clip-mean-s0-") for v in videos)
    assert {v["label"] for v in videos} <= set(LABELS)
    clips = pq.read_table(clip_index / "clips").to_pylist()
    assert all(len(c["embedding"]) == 16 for c in clips)  # the projection's size
    # a clip of one frame... of two frames here: the mean of unit vectors, norm <= 1
    norms = [float(np.linalg.norm(c["embedding"])) for c in clips]
    assert all(0.5 < n <= 1.0 + 1e-5 for n in norms), norms
    record = json.loads(next((clip_index / "_runs").glob("*.json")).read_text())
    assert record["labels"] == list(LABELS)


def test_the_zero_shot_scores_are_clips_cosine_with_the_prompts(clip_index, clip_folder):
    """The label of a clip is the prompt whose text embedding is nearest its embedding."""
    from pipeline.models.clip import PROMPT, ClipFolder, text_embeddings

    files = {p.name: p.read_bytes() for p in clip_folder.iterdir()}
    folder = ClipFolder(files)
    texts = text_embeddings(folder.model(), folder.tokenizer(), [PROMPT.format(x) for x in LABELS])
    for clip in pq.read_table(clip_index / "clips").to_pylist():
        cosine = texts.numpy() @ np.asarray(clip["embedding"], dtype=np.float32)
        assert clip["label"] == LABELS[int(np.argmax(cosine))]


def test_a_text_query_returns_k_rows_best_first(clip_index, capsys):
    for level, k in (("video", 2), ("clip", 4)):
        code, out, err = query(
            str(clip_index), "--text", "a red square", "-k", str(k), "--level", level,
            "--format", "json", capsys=capsys,
        )  # fmt: skip
        assert code == 0, err
        rows = json.loads(out)
        assert len(rows) == k
        scores = [r["score"] for r in rows]
        assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)


def test_the_text_embedding_is_the_clip_text_towers(clip_index, clip_folder, capsys):
    """The top video's score is the cosine of its embedding with the text's."""
    from pipeline.models.clip import ClipFolder, text_embeddings

    folder = ClipFolder({p.name: p.read_bytes() for p in clip_folder.iterdir()})
    text = text_embeddings(folder.model(), folder.tokenizer(), ["a blue circle"])[0].numpy()
    code, out, _ = query(
        str(clip_index), "--text", "a blue circle", "--format", "json", capsys=capsys
    )
    top = json.loads(out)[0]
    (video,) = [
        v
        for v in pq.read_table(clip_index / "videos").to_pylist()
        if v["video_uri"] == top["video_uri"]
    ]
    emb = np.asarray(video["embedding"], dtype=np.float32)
    assert top["score"] == pytest.approx(float(text @ emb / np.linalg.norm(emb)), abs=1e-5)


def test_a_text_query_on_another_encoders_index_is_refused(ray_local, corpus, tmp_path, capsys):
    from jobs.index import main

    out = tmp_path / "cnn"
    assert main(["--input", str(corpus), "--output", str(out), *FLAGS]) == 0
    code, _, err = query(str(out), "--text", "a dog", capsys=capsys)
    assert code == 2
    assert "--text needs an index made by a CLIP model" in err and "small_cnn" in err


def test_a_changed_clip_folder_is_refused(clip_index, clip_folder, tmp_path, capsys):
    """The query rebuilds the index's model from its record: other weights there are caught."""
    import shutil

    moved = tmp_path / "clip"
    shutil.copytree(clip_folder, moved)
    write_tiny_clip(clip_folder, seed=1)  # the folder the record names now holds other weights
    try:
        code, _, err = query(str(clip_index), "--text", "a dog", capsys=capsys)
    finally:
        shutil.rmtree(clip_folder)
        shutil.copytree(moved, clip_folder)
    assert code == 2 and "it changed since" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--encoder", "clip"], "--encoder clip needs --weights"),
        (["--labels", "cat,dog"], "--labels gives zero-shot labels from a CLIP model's text"),
        (["--encoder", "clip", "--weights", "/nonexistent/clip"], "not a folder"),
    ],
)
def test_clip_flags_that_cannot_work_are_one_line_exit_2(
    ray_local, corpus, tmp_path, capsys, argv, message
):
    from jobs.index import main

    capsys.readouterr()
    code = main(["--input", str(corpus), "--output", str(tmp_path / "o"), *FLAGS, *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err


def test_clip_encoder_forward_is_normalised(clip_folder):
    from pipeline.models.clip import ClipFolder, ClipImageEncoder

    encoder = ClipImageEncoder(
        ClipFolder({p.name: p.read_bytes() for p in clip_folder.iterdir()}).model()
    )
    with torch.no_grad():
        out = encoder(torch.randn(3, 3, 48, 48))  # not the model's 32 px: interpolated
    assert out.shape == (3, 16)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


def test_labels_come_from_a_list_or_a_file(tmp_path):
    from jobs.index import zero_shot_labels
    from pipeline.config import ConfigError

    assert zero_shot_labels("cat, dog,cat,,car") == ("cat", "dog", "car")
    listed = tmp_path / "labels.txt"
    listed.write_text("a red car\n\na dog, running\n")
    assert zero_shot_labels(str(listed)) == ("a red car", "a dog, running")
    with pytest.raises(ConfigError, match="at least two labels"):
        zero_shot_labels("cat")


def test_training_on_clip_is_refused_with_a_reason():
    from pipeline.config import ConfigError
    from pipeline.models import ModelConfig
    from pipeline.train.config import TrainConfig

    with pytest.raises(ConfigError, match="training on it is not supported"):
        TrainConfig("data.csv", "out", model=ModelConfig(encoder="clip", pretrained_weights="f"))
