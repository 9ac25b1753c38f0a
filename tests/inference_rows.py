"""A model spec and numpy batches of clip rows, as the decode stage hands them to inference."""

from __future__ import annotations

import numpy as np


def spec_for(encoder: str = "resnet18", temporal: str = "gru", size: int = 64):
    from pipeline.config import IndexConfig, SamplingConfig
    from pipeline.models import ModelConfig
    from pipeline.models.source import resolve_model

    cfg = IndexConfig(
        input_uri="unused",
        output_uri="unused",
        sampling=SamplingConfig(clip_frames=8, image_size=size),
        model=ModelConfig(encoder=encoder, temporal=temporal),
    )
    return resolve_model(cfg)[0]


def clip_rows(n: int, frames: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """A numpy batch of clip rows as the decode stage hands them on (random frames)."""
    from pipeline.models.inference import PASS_THROUGH
    from pipeline.video.decode import UNIT_META

    rng = np.random.default_rng(seed)
    rows = {name: np.zeros(n, dtype=np.int64) for name in (*UNIT_META, *PASS_THROUGH)}
    rows |= {
        "video_uri": np.asarray([f"/v/{i}.mp4" for i in range(n)]),
        "error_stage": np.asarray([""] * n),
        "error_type": np.asarray([""] * n),
        "error_message": np.asarray([""] * n),
        "frame_indices": np.tile(np.arange(frames, dtype=np.int32), (n, 1)),
        "shot_index": np.full(n, -1),  # fixed windows
        "frame_hashes": np.zeros((n, frames, 2), dtype=np.int64),
        "frames": rng.integers(0, 256, (n, frames, size, size, 3), dtype=np.uint8),
    }
    return rows
