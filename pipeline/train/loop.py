"""Stage 3 of training, the Ray Train worker loop (DDP): one epoch, one evaluation, one report.

Each worker reads its shard of the materialized train clips, trains the DDP model, and every
epoch reports loss and accuracy; rank 0 evaluates on the whole val split and attaches a
checkpoint folder (see checkpoints.py) to its report. The clips hold uint8 frames (normalised
here; the whole model trains) or, with --features-from, stored frame features (only the head
and classifier train; the index run's encoder rides along frozen): see forward.py.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.faults import crash_point
from pipeline.models import ModelConfig, build_model
from pipeline.train.checkpoints import TrainState, read_epoch_checkpoint, write_epoch_checkpoint
from pipeline.train.forward import ModelInput, trainable, video_model, wrap
from pipeline.train.loop_spec import LoopSpec

TRAIN_SPLIT, VAL_SPLIT = "train", "val"


@dataclass
class Totals:
    """Sums over batches (and over workers after all_reduce)."""

    loss: float = 0.0
    correct: int = 0
    count: int = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        n = len(y)
        self.loss += float(loss) * n
        self.correct += int((logits.argmax(dim=1) == y).sum())
        self.count += n

    def all_reduce(self, device: torch.device) -> Totals:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        t = torch.tensor([self.loss, self.correct, self.count], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return Totals(float(t[0]), int(t[1]), int(t[2]))

    @property
    def mean_loss(self) -> float:
        return self.loss / max(self.count, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[dict[str, torch.Tensor]],
    to_input: ModelInput,
) -> Totals:
    model.train()
    totals = Totals()
    loss_fn = nn.CrossEntropyLoss()
    for batch in batches:
        x = to_input(batch)  # frames (B, T, 3, H, W) [and sound (B, N)], or features (B, T, D)
        y = to_input.labels(batch)  # (B,)
        _, logits = model(*x)  # (B, K)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals.add(loss.detach(), logits.detach(), y)
    return totals


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], to_input: ModelInput
) -> Totals:
    model.eval()
    totals = Totals()
    loss_fn = nn.CrossEntropyLoss()
    for batch in batches:
        x, y = to_input(batch), to_input.labels(batch)
        _, logits = model(*x)
        totals.add(loss_fn(logits, y), logits, y)
    return totals


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DDP keeps the real model in .module


def train_loop_per_worker(config: dict) -> list[dict]:
    """Ray Train entry point; returns (on rank 0) the metrics history of every epoch."""
    import ray.train
    import ray.train.torch

    spec: LoopSpec = config["spec"]
    torch.set_num_threads(spec.threads)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()

    pretrained = ray.get(spec.pretrained) if spec.pretrained is not None else None
    model = build_model(
        spec.model,
        seed=spec.seed,
        load_pretrained=spec.encoder is None,  # FEATURES: the index's encoder replaces it
        pretrained_state=pretrained,
        audio_state=ray.get(spec.audio_pretrained) if spec.audio_pretrained is not None else None,
    )
    if spec.encoder is not None:  # features: the index run's encoder, so checkpoints are whole
        model.encoder.load_state_dict(ray.get(spec.encoder), strict=True)
    start_epoch, history, optim_state = 0, [], None
    resume_from = ray.train.get_checkpoint()
    if resume_from is not None:
        with resume_from.as_directory() as folder:
            ckpt, state = read_epoch_checkpoint(Path(folder))
        _check_resumable(ckpt.model, tuple(ckpt.labels), spec)
        model.load_state_dict(ckpt.state_dict)
        start_epoch, history, optim_state = state.epoch, state.history, state.optimizer
    attempt = 0
    if spec.attempts is not None and rank == 0:
        attempt = ray.get(spec.attempts.begin.remote(start_epoch))
    # channels_last, as in inference: oneDNN's and cuDNN's fast convolution layout (a memory
    # layout only: weights, checkpoints and model versions are the same)
    model = model.to(memory_format=torch.channels_last)
    # moves to the device, wraps in DDP if world > 1; features: only the head is trained
    model = ray.train.torch.prepare_model(wrap(model, spec.inputs))
    device = ray.train.torch.get_device()
    optimizer = torch.optim.AdamW(trainable(model), lr=spec.lr, weight_decay=spec.weight_decay)
    if optim_state is not None:
        optimizer.load_state_dict(optim_state)  # after the move: state follows the params
    to_input = ModelInput.create(spec.inputs, spec.mean, spec.std, device, spec.model.modalities)
    train_shard = ray.train.get_dataset_shard(TRAIN_SPLIT)

    for epoch in range(start_epoch + 1, spec.epochs + 1):  # 1-based
        crash_point("train_epoch", f"{epoch}")
        torch.manual_seed(spec.seed * 100_003 + epoch * 101 + rank)  # dropout, per worker
        t0 = time.perf_counter()
        batches = train_shard.iter_torch_batches(
            batch_size=spec.batch_size,
            local_shuffle_buffer_size=spec.shuffle_buffer,
            local_shuffle_seed=spec.seed * 7919 + epoch,
        )
        train = train_one_epoch(model, optimizer, batches, to_input).all_reduce(device)
        train_time = time.perf_counter() - t0
        metrics = {
            "epoch": epoch,
            "train_loss": train.mean_loss,
            "train_accuracy": train.accuracy,
            "train_clips": train.count,
            "epoch_time_s": train_time,
            "num_workers": world,
            **spec.report_extra,
        }
        if rank != 0:
            ray.train.report(metrics)  # a barrier: every worker reports every epoch
            continue
        t1 = time.perf_counter()
        val_batches = ray.train.get_dataset_shard(VAL_SPLIT).iter_torch_batches(
            batch_size=spec.batch_size
        )
        val = evaluate(_unwrap(model), val_batches, to_input)
        metrics |= {
            "attempt": attempt,  # > 0: a worker group restarted after a failure
            "val_loss": val.mean_loss,
            "val_accuracy": val.accuracy,
            "val_clips": val.count,
            "val_time_s": time.perf_counter() - t1,
        }
        history = [*history, metrics]
        with tempfile.TemporaryDirectory() as folder:
            write_epoch_checkpoint(
                Path(folder),
                video_model(model),  # the complete model (features: index encoder + new head)
                spec.model,
                list(spec.labels),
                sampling=spec.sampling,
                normalization=spec.normalization,
                extra={**spec.extra, "epoch": epoch, "metrics": metrics},
                state=TrainState(epoch, optimizer.state_dict(), history),
            )
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
    return history


def _check_resumable(model: ModelConfig, labels: tuple[str, ...], spec: LoopSpec) -> None:
    if labels != spec.labels or model != spec.model:
        raise ValueError(
            "--resume: the latest checkpoint was trained with another model or label set "
            f"(checkpoint {model}, labels {list(labels)}; this run {spec.model}, labels "
            f"{list(spec.labels)}); use the original options or another --output"
        )
