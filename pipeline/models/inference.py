"""Stage 3, infer (actors, 1 clip : 1 row): frames -> CNN -> temporal head -> embedding + scores.

One GPU per actor when the cluster has GPUs (autocast, channels_last, pinned non-blocking
copies); otherwise torch uses the actor's CPUs. Frames are dropped here.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pyarrow as pa

from pipeline import schema
from pipeline.cpu_priority import IdlePriority
from pipeline.faults import crash_point
from pipeline.models.source import ModelSpec, load_model
from pipeline.ray_env import this_node
from pipeline.schema import ERROR_FIELDS

PASS_THROUGH = (
    "video_uri",
    "clip_index",
    "start_s",
    "end_s",
    *schema.VIDEO_META_COLUMNS,
    "num_clips",
    "unit_frames",
    *ERROR_FIELDS,
)


def hash_lists(hashes: np.ndarray, valid: np.ndarray) -> pa.Array:
    """(N, T, Z) int64 frame hashes -> list<fixed_size_list<int64>[Z]>, null where not valid."""
    n, t, z = hashes.shape
    per_frame = pa.FixedSizeListArray.from_arrays(pa.array(hashes.reshape(-1)), z)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * t)
    return pa.ListArray.from_arrays(offsets, per_frame, mask=pa.array(~valid))


def fixed_size_lists(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    """(N, D) float32 -> fixed_size_list<float32>[D], null where not `valid`."""
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1], mask=pa.array(~valid))


def read_only_tensor(array: np.ndarray):
    """A tensor sharing `array`'s memory, for a read-only view of the object store (Ray Data's
    numpy batches) that is never written: torch's warning that it cannot mark the tensor
    read-only is silenced, and nothing is copied."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def frame_keys(batch: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """(B, T) int64 naming each frame of the chosen rows: its video (a number within the
    batch) in the high 32 bits, its frame index in the low ones."""
    _, video = np.unique(np.asarray(batch["video_uri"])[rows], return_inverse=True)
    indices = np.stack([np.asarray(f, dtype=np.int64) for f in batch["frame_indices"][rows]])
    return (video.astype(np.int64).reshape(-1, 1) << 32) | indices


def compute_dtype(device, precision: str):
    """The autocast dtype for `precision` on `device` (a torch.device), or None for float32.
    CPUs run float32: without AMX, bf16 convolutions are slower there, not faster."""
    import torch

    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class ClipInferencer:
    """Ray Data callable class: a numpy batch of clip rows -> an Arrow table of results."""

    def __init__(
        self,
        spec: ModelSpec,
        device: str,
        threads: int,
        run_id: str,
        topk: int = schema.TOPK,
        progress=None,
        keep_frame_features: bool = False,
        precision: str = "auto",
        idle_priority: bool = False,
    ):
        # on CPU actors, the threads that compute yield their cores to decoding once the
        # model is built (pipeline.cpu_priority); the build itself keeps its priority
        self.priority = IdlePriority(idle_priority and device == "cpu")
        with self.priority.started():
            model = self._build(spec, threads)
        torch = self.torch
        self.device = torch.device(device)
        self.dtype = compute_dtype(self.device, precision)
        self._staging = None  # pinned host buffer for batches bound for the GPU
        if self.device.type == "cuda":
            # cuDNN picks its fastest kernels, once per batch shape (full batches, and the
            # partial ones Ray Data cuts: at most one shape per size up to the batch size)
            torch.backends.cudnn.benchmark = True
        # channels_last on every device: oneDNN's CPU convolutions run faster with it (resnet18,
        # small_cnn, mobilenet), and cuDNN's tensor cores want it
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        self.labels = np.asarray(spec.labels, dtype=object)
        self.mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1)
        self.model_version, self.run_id = spec.model_version, run_id
        self.progress = progress  # the run's RunBook actor (ProgressTracker methods), or None
        self.node = this_node()
        self.keep_frame_features = keep_frame_features
        self.topk = min(topk, len(spec.labels))

    def _build(self, spec: ModelSpec, threads: int):
        """The model, then a first forward pass on the CPU (which starts torch's threads): the
        sizes of the embeddings, for null rows, learnt before cuDNN could autotune this shape."""
        import torch

        torch.set_num_threads(max(1, threads))
        model = load_model(spec)
        self.torch = torch
        with torch.inference_mode():
            frames = torch.zeros(1, 1, 3, 32, 32) if model.sees else None
            sound = torch.zeros(1, 16_000) if model.audio_dim else None
            self.dim = int(model(frames, sound)[0].shape[1])
            self.frame_dim = int(model.encode_frames(frames).shape[2]) if model.sees else 0
        self.audio_dim = model.audio_dim
        return model

    def _to_device(self, frames: np.ndarray):
        """uint8 frames -> a tensor on the device. On a GPU: one host copy into a pinned buffer
        kept across batches, then a non-blocking copy of uint8 (a quarter of float32's bytes).
        The buffer is safe to reuse: each batch's results are copied back, which waits for the
        GPU, before the next batch is written into it."""
        torch = self.torch
        if self.device.type != "cuda":
            return read_only_tensor(frames)
        if self._staging is None or tuple(self._staging.shape) != frames.shape:
            self._staging = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
        self._staging.numpy()[...] = frames
        return self._staging.to(self.device, non_blocking=True)

    def _forward(
        self, frames: np.ndarray, frame_keys: np.ndarray, audio: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(B, T, H, W, 3) uint8 frames and, for a model that hears, (B, N) float32 samples
        -> embeddings (B, E), probabilities (B, K), and the per-frame CNN features (B, T, D)
        when they are kept."""
        torch = self.torch
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
            ),
        ):
            feats = self._frame_features(frames, frame_keys) if self.model.sees else None
            sound = None
            if audio is not None:
                sound = self.model.encode_audio(torch.from_numpy(audio).to(self.device))
            emb, logits = self.model.forward_features(feats, sound)  # (B, E), (B, K)
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        kept = feats.float().cpu().numpy() if self.keep_frame_features else None
        return emb.float().cpu().numpy(), probs, kept

    def _frame_features(self, frames: np.ndarray, frame_keys: np.ndarray):
        """(B, T, D) CNN features. `frame_keys` (B, T) names each frame (its video and
        index): on a CPU the CNN sees each distinct frame once (a padded last clip repeats its
        last frame, overlapping clips share frames) and its features are copied to every
        place the frame holds. On a GPU every batch keeps one shape, which cuDNN's autotuning
        wants more than the CNN wants fewer frames."""
        torch = self.torch
        b, t = frames.shape[:2]
        x = self._to_device(frames).flatten(0, 1)  # (B*T, H, W, 3)
        places = None
        if self.device.type == "cpu":
            _, first, places = np.unique(frame_keys.ravel(), return_index=True, return_inverse=True)
            if len(first) == len(places):
                places = None  # every frame distinct: no gather
            else:
                x = x[torch.from_numpy(first)]
        x = x.permute(0, 3, 1, 2).float().div_(255).sub_(self.mean).div_(self.std)  # (N,3,H,W)
        x = x.contiguous(memory_format=torch.channels_last)
        feats = self.model.encode_images(x)  # (N, D)
        if places is not None:
            feats = feats[torch.from_numpy(places.reshape(-1))]
        return feats.reshape(b, t, -1)  # (B, T, D)

    def _sound_columns(self, batch: dict, emb: np.ndarray, ok: np.ndarray) -> dict:
        """`audio_rms` (null: no sound was read) and, for a model that hears, the embedding's
        sound part as `audio_embedding` (null where the clip had no sound)."""
        n = len(ok)
        rms = np.asarray(batch.get("audio_rms", np.full(n, np.nan)), np.float32)
        heard = ok & ~np.isnan(rms)
        columns = {"audio_rms": pa.array(np.nan_to_num(rms), pa.float32(), mask=~heard)}
        if self.audio_dim:
            columns[schema.AUDIO_EMBEDDING] = fixed_size_lists(emb[:, -self.audio_dim :], heard)
        return columns

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        self.priority.adopt()
        n = len(batch["video_uri"])
        crash_point("infer", " ".join(map(str, batch["video_uri"])))
        ok = np.asarray([e == "" for e in batch["error_stage"]], dtype=bool)
        emb = np.zeros((n, self.dim), np.float32)
        probs = np.zeros((n, len(self.labels)), np.float32)
        frames = np.asarray(batch["frames"])
        audio = np.asarray(batch["audio"], np.float32) if self.audio_dim else None
        feats = np.zeros((n, frames.shape[1], self.frame_dim), np.float32)
        if ok.any():
            frames = frames if ok.all() else frames[ok]  # a batch of 8 clips is ~20 MB at 224 px
            if audio is not None and not ok.all():
                audio = audio[ok]
            started = time.perf_counter()
            emb[ok], probs[ok], kept = self._forward(frames, frame_keys(batch, ok), audio)
            seconds = time.perf_counter() - started
            if kept is not None:
                feats[ok] = kept
            if self.progress is not None:
                uris, counts = np.unique(np.asarray(batch["video_uri"])[ok], return_counts=True)
                self.progress.inferred.remote(
                    dict(zip(uris.tolist(), counts.tolist(), strict=True)),
                    int(frames.shape[0] * frames.shape[1]),
                    self.node,
                    seconds,
                )
        order = np.argsort(-probs, axis=1)[:, : self.topk]  # (N, k)
        top_scores = np.take_along_axis(probs, order, axis=1)
        columns = {name: batch[name] for name in PASS_THROUGH}
        columns["frame_indices"] = [np.asarray(f, dtype=np.int32) for f in batch["frame_indices"]]
        columns["frame_hashes"] = hash_lists(np.asarray(batch["frame_hashes"]), ok)
        shot = np.asarray(batch["shot_index"], dtype=np.int32)  # -1: fixed windows, or no clip
        columns["shot_index"] = pa.array(shot, pa.int32(), mask=shot < 0)
        for name in schema.UNIT_SHOT_COLUMNS:  # lists per row: numpy may hand a 2-D array
            if name in batch:
                values = batch[name]
                columns[name] = list(values) if np.ndim(values) > 1 else values
        columns |= {
            "embedding": fixed_size_lists(emb, ok),
            schema.CLIP_PROBS: fixed_size_lists(probs, ok),
            "label": pa.array(np.where(ok, self.labels[order[:, 0]], None), pa.string()),
            "score": pa.array(top_scores[:, 0], pa.float32(), mask=~ok),
            "topk_labels": pa.array(
                [list(self.labels[o]) if v else None for o, v in zip(order, ok, strict=True)],
                pa.list_(pa.string()),
            ),
            "topk_scores": pa.array(
                [s.tolist() if v else None for s, v in zip(top_scores, ok, strict=True)],
                pa.list_(pa.float32()),
            ),
            **self._sound_columns(batch, emb, ok),
            "model_version": pa.array([self.model_version] * n, pa.string()),
            "run_id": pa.array([self.run_id] * n, pa.string()),
        }
        if self.keep_frame_features:
            per_frame = fixed_size_lists(
                feats.reshape(n * feats.shape[1], -1), np.repeat(ok, feats.shape[1])
            )
            columns[schema.FRAME_FEATURES] = pa.FixedSizeListArray.from_arrays(
                per_frame, feats.shape[1], mask=pa.array(~ok)
            )
        return pa.table(
            {k: (v if isinstance(v, pa.Array) else pa.array(v)) for k, v in columns.items()}
        )
