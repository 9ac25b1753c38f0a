"""Stage 4 of training, evaluate (Ray Data actor, 1 clip : 1 row): best.pt on the val clips.

The model is rebuilt from the written best.pt, exactly as the index job will load it, and fed
what the val clips hold: decoded frames (the whole model runs) or stored frame features (the
head only; see forward.py).
"""

from __future__ import annotations

import numpy as np
import ray

from pipeline.config import StorageConfig
from pipeline.models.inference import read_only_tensor
from pipeline.train.data import AUDIO, LABEL
from pipeline.train.metrics import Evaluation


class ClipPredictor:
    """Callable class: a numpy batch {frames or features, label} -> {label, predicted}."""

    def __init__(
        self, checkpoint_uri: str, storage: StorageConfig, device: str, threads: int, inputs: str
    ):
        import torch

        from pipeline.models.source import read_checkpoint
        from pipeline.train.forward import ModelInput, wrap

        torch.set_num_threads(max(1, threads))
        ckpt = read_checkpoint(checkpoint_uri, storage)
        self.torch, self.inputs = torch, inputs
        device = torch.device(device)
        self.model = wrap(ckpt.build_model().to(device), inputs).eval()
        norm = ckpt.normalization
        self.to_input = ModelInput.create(
            inputs, norm["mean"], norm["std"], device, ckpt.model.modalities
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        names = [self.inputs, *([AUDIO] if AUDIO in batch else [])]
        x = {k: read_only_tensor(np.ascontiguousarray(batch[k])) for k in names}  # only read
        with torch.inference_mode():
            _, logits = self.model(*self.to_input(x))  # (B, K)
        return {LABEL: batch[LABEL], "predicted": logits.argmax(dim=1).cpu().numpy()}


def evaluate_checkpoint(
    clips: ray.data.Dataset,
    checkpoint_uri: str,
    labels: tuple[str, ...],
    storage: StorageConfig,
    *,
    inputs: str,
    use_gpu: bool,
    cpus: float,
    batch_size: int,
) -> Evaluation:
    preds = clips.map_batches(
        ClipPredictor,
        fn_constructor_kwargs={
            "checkpoint_uri": checkpoint_uri,
            "storage": storage,
            "device": "cuda" if use_gpu else "cpu",
            "threads": max(1, int(cpus)),
            "inputs": inputs,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=cpus,
        num_gpus=1 if use_gpu else 0,
    )
    y_true, y_pred = [], []
    for batch in preds.iter_batches(batch_format="numpy", batch_size=None):
        y_true.append(batch[LABEL])
        y_pred.append(batch["predicted"])
    return Evaluation.from_predictions(
        np.concatenate(y_true) if y_true else np.zeros(0, np.int64),
        np.concatenate(y_pred) if y_pred else np.zeros(0, np.int64),
        labels,
    )
