"""The inference actor's callable on the CPU: each distinct frame through the CNN once."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline.models.inference import ClipInferencer
from tests.inference_rows import clip_rows, spec_for


@pytest.fixture(scope="module")
def spec():
    return spec_for("small_cnn", "gru", size=32)


def padded_and_overlapping(size: int) -> dict[str, np.ndarray]:
    """Three clips of 8 frames: clip 0 and 1 of one video overlap by 4 frames, clip 2 of
    another video is padded (its last frame repeated 5 times), as the decode stage makes them."""
    rows = clip_rows(3, 8, size, seed=5)
    rows["video_uri"] = np.asarray(["/v/a.mp4", "/v/a.mp4", "/v/b.mp4"])
    rows["frame_indices"] = np.asarray(
        [[0, 1, 2, 3, 4, 5, 6, 7], [4, 5, 6, 7, 8, 9, 10, 11], [0, 1, 2, 3, 3, 3, 3, 3]],
        dtype=np.int32,
    )
    rows["frames"][1, :4] = rows["frames"][0, 4:]
    rows["frames"][2, 4:] = rows["frames"][2, 3]
    return rows


def test_each_distinct_frame_meets_the_cnn_once(spec):
    import torch

    rows = padded_and_overlapping(32)
    inferencer = ClipInferencer(spec, "cpu", 1, "r", keep_frame_features=True)
    seen = []
    encode = inferencer.model.encode_images
    inferencer.model.encode_images = lambda x: seen.append(len(x)) or encode(x)
    table = inferencer(rows)
    assert seen == [8 + 4 + 4]  # 24 frames, 16 distinct

    # what the model computes on the whole clips, every frame through the CNN
    x = torch.from_numpy(rows["frames"]).permute(0, 1, 4, 2, 3).float().div(255)
    x = (x - torch.tensor(spec.mean).view(1, 1, 3, 1, 1)) / torch.tensor(spec.std).view(
        1, 1, 3, 1, 1
    )
    with torch.inference_mode():
        feats = inferencer.model.encode_frames(x)
        emb, _ = inferencer.model.forward_features(feats)
    got = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert np.allclose(got, emb.numpy(), atol=1e-5)
    kept = np.asarray(
        [[f for f in clip] for clip in table.column("frame_features").to_pylist()], np.float32
    )
    assert np.allclose(kept, feats.numpy(), atol=1e-5)


def test_error_rows_stay_null_beside_deduplicated_clips(spec):
    rows = padded_and_overlapping(32)
    rows["error_stage"] = np.asarray(["", "decode", ""])
    table = ClipInferencer(spec, "cpu", 1, "r")(rows)
    assert table.column("embedding").null_count == 1
    assert table.column("embedding")[1].as_py() is None


def test_actor_pool_with_two_calls_per_actor_computes_what_one_call_does(ray_local, spec):
    """GPU actors take two Ray Data calls at once (the next batch is made while the model
    runs): the rows that come out are those of the inferencer called directly, one batch at
    a time, whichever thread Ray Data batches on."""
    from pipeline.config import InferConfig
    from pipeline.ray_env import size_inference

    res = size_inference(InferConfig(device="cpu", calls_per_actor=2, batch_size=2), 2, 0)
    assert res.calls_per_actor == 2
    rows = clip_rows(10, 8, 32, seed=3)
    items = [{k: v[i] for k, v in rows.items()} for i in range(10)]
    out = (
        ray_local.data.from_items(items, override_num_blocks=5)
        .map_batches(
            ClipInferencer,
            fn_constructor_kwargs={"spec": spec, "device": "cpu", "threads": 1, "run_id": "r"},
            batch_size=res.batch_size,
            batch_format="numpy",
            compute=res.actor_pool(),
            num_cpus=0.5,
        )
        .to_arrow_refs()
    )
    got = pa.concat_tables(ray_local.get(out)).sort_by("video_uri")
    want = ClipInferencer(spec, "cpu", 1, "r")(rows).sort_by("video_uri")
    assert got.num_rows == 10
    np.testing.assert_allclose(
        np.asarray(got["embedding"].to_pylist()),
        np.asarray(want["embedding"].to_pylist()),
        rtol=1e-4,
        atol=1e-5,
    )
    assert got["label"].to_pylist() == want["label"].to_pylist()


def test_an_actor_refuses_a_seeded_model_that_its_node_builds_differently(spec):
    """A seeded model is rebuilt on every actor from the driver's spec; a node whose torch
    builds other weights (a mixed cluster) must not index under the driver's model_version."""
    from dataclasses import replace

    ClipInferencer(spec, "cpu", 1, "r")  # the same weights: accepted
    other = replace(spec, model_version=spec.model_version + "-other-node")
    with pytest.raises(RuntimeError, match="differ in torch or torchvision"):
        ClipInferencer(other, "cpu", 1, "r")
