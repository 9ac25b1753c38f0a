"""The training job: labeled videos -> decoded clips (Ray Data) -> DDP training (Ray Train).

Stages (row ratios):
  0. list      (driver)           --data -> 1 row per labeled video, split train/val
  1. plan      (CPU tasks)        1 video -> N work units
  2. decode    (CPU tasks)        1 unit -> N clips {frames uint8, label}; materialized once
  3. train     (Ray Train, DDP)   epochs over the train clips; per-epoch checkpoints and reports
  4. evaluate  (Ray Data actor)   best.pt on every val clip -> confusion matrix
  5. write     (driver)           best.pt, metrics.parquet, evaluation files, run record
With --features-from (mode.py), stages 1-2 become (features.py):
  1. match     (driver)           labeled video -> the index run holding its frame features
  2. read      (Ray Data)         1 stored clip -> 1 clip {features (T, D) float32, label}
and stages 3-4 run the temporal head and classifier only (forward.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from pipeline import storage
from pipeline.config import ConfigError
from pipeline.models.source import (
    audio_state,
    fetch_audio_weights,
    pretrained_state,
    read_checkpoint,
)
from pipeline.ray_env import actor_beside_driver, ensure_ray
from pipeline.runs import Stopwatch, new_run_id
from pipeline.train import output as names
from pipeline.train.config import TrainConfig
from pipeline.train.data import FRAMES, ClipSplit, check_decoded, decode_split
from pipeline.train.evaluate import evaluate_checkpoint
from pipeline.train.features import FEATURES, feature_splits
from pipeline.train.index_source import check_encoder, encoder_state
from pipeline.train.inputs import LabeledData, list_labeled
from pipeline.train.loop_spec import Attempts, LoopSpec
from pipeline.train.metrics import Evaluation
from pipeline.train.mode import TrainMode, train_mode
from pipeline.train.output import TrainOutput
from pipeline.train.split import TRAIN, VAL
from pipeline.video.guard import open_book
from pipeline.writer_lease import WriterLease

log = logging.getLogger("reelay.train")

SHUFFLE_BUFFER_BYTES = 256 * 2**20  # per worker


@dataclass
class TrainSummary:
    output_uri: str
    labels: tuple[str, ...]
    best_epoch: int
    val_accuracy: float  # of best.pt, over every val clip
    epochs: int  # epochs finished in total (resumed runs included)
    history: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    model_version: str = ""

    def line(self) -> str:
        c = self.counts
        return (
            f"reelay train: {len(self.labels)} classes, {c.get('train_clips', 0)} train / "
            f"{c.get('val_clips', 0)} val clips, {c.get('skipped_videos', 0)} videos skipped; "
            f"{self.epochs} epochs; best epoch {self.best_epoch} val accuracy "
            f"{self.val_accuracy:.3f}; model ckpt-{self.model_version}; output "
            f"{storage.redact(self.output_uri)}/{names.BEST}"
        )


def start_ray() -> None:
    """Ray as a training run needs it (`ensure_ray`): a local Ray keeps the State API, which
    Ray Train's placement-group cleaner polls. A caller that starts Ray before `run` (to read
    the cluster's CPUs, say) starts it here, or `run` would find it started without one."""
    ensure_ray(state_api=True)


def run(cfg: TrainConfig) -> TrainSummary:
    """Train on cfg.data_uri, write the run's output to cfg.output_uri; returns the summary.

    The run holds its output while it runs (pipeline.writer_lease): a second training run on
    the same output, --resume included, is refused with OutputError while this one lives."""
    started = datetime.now(UTC)
    run_id = f"train-{new_run_id(started)}"
    why = "two training runs on one output would overwrite each other's checkpoints"
    with WriterLease(cfg.output_uri, run_id, cfg.storage, why=why):
        return _run(cfg, started)


def _run(cfg: TrainConfig, started: datetime) -> TrainSummary:
    """`run`, holding the output."""
    watch = Stopwatch()
    lap, timings = watch.lap, watch.timings
    out = TrainOutput(cfg.output_uri, cfg.storage)
    # 0. list (driver): labeled videos, split; every label problem fails here
    data = list_labeled(cfg.data_uri, cfg.storage, cfg.val_fraction, cfg.seed)
    mode = train_mode(cfg, len(data.labels))  # --features-from: the index's runs and model
    _check_output(out, cfg, mode.identity(data.labels))
    # --weights: fetched once, here; the workers get it through the object store
    pretrained = None if mode.source else pretrained_state(cfg.model, cfg.storage, cfg.offline)
    audio = fetch_audio_weights(cfg.model, cfg.storage, cfg.offline)
    audio = audio_state(cfg.model, audio) if audio is not None else None
    log.info(
        "%d labeled videos, classes %s, split from %s: %s",
        len(data.videos),
        list(data.labels),
        data.split_source,
        data.counts(),
    )
    lap("list")

    # 1-2. plan + decode (CPU tasks), or match + read stored features (Ray Data); materialized
    start_ray()
    splits = _clips(cfg, data, mode)
    skipped = _write_skipped(out, splits)
    for name, split in splits.items():
        log.info(
            "%s: %d clips from %d videos; %d videos unreadable, skipped",
            name,
            split.num_clips,
            split.videos,
            split.skipped_videos,
        )
    check_decoded(splits[TRAIN], splits[VAL], data.labels)
    lap("decode" if mode.source is None else "features")

    counts = {
        "videos": len(data.videos),
        "train_videos": splits[TRAIN].videos,
        "val_videos": splits[VAL].videos,
        "train_clips": splits[TRAIN].num_clips,
        "val_clips": splits[VAL].num_clips,
        "skipped_videos": skipped,
        "ignored_videos": data.ignored,
    }
    record = {
        "status": "running",
        "started_at": started.isoformat(),
        "config": cfg.to_dict(),
        **mode.identity(data.labels),  # model, sampling, labels (+ index_model_version)
        **mode.to_dict(),  # mode (+ features: index output, run ids, model)
        "split_source": data.split_source,
        "counts": counts,
    }
    out.write_json(names.RUN_RECORD, record)

    # 3. train (Ray Train workers, DDP)
    encoder = encoder_state(mode.source.spec) if mode.source is not None else None
    spec = _loop_spec(cfg, mode, data, counts, encoder, pretrained, audio)
    try:
        result, restarts = _fit(cfg, spec, out, splits)
    except Exception as e:
        error = storage.redact(f"{type(e).__name__}: {e}")[:2000]
        out.write_json(names.RUN_RECORD, {**record, "status": "failed", "error": error})
        raise
    history = list(result.return_value or [])
    best_ckpt, best_metrics = _best(result)
    lap("train")

    # 4. evaluate (Ray Data actor): best.pt, rebuilt exactly as the index job loads it
    from pipeline.train.checkpoints import MODEL_FILE  # torch: not at the job's import

    with best_ckpt.as_directory() as folder:
        best_bytes = (Path(folder) / MODEL_FILE).read_bytes()
    out.write_bytes(names.BEST, best_bytes)
    best = read_checkpoint(out.uri(names.BEST), cfg.storage)  # verifies what was written
    if encoder is not None:
        check_encoder(best.state_dict, encoder)
    evaluation = evaluate_checkpoint(
        splits[VAL].clips,
        out.uri(names.BEST),
        data.labels,
        cfg.storage,
        inputs=spec.inputs,
        use_gpu=cfg.workers.use_gpu,
        cpus=cfg.workers.cpus_per_worker,
        batch_size=cfg.optim.batch_size,
    )
    lap("evaluate")

    # 5. write: metrics, evaluation, figure, run record
    best_epoch = int(best_metrics["epoch"])
    _write_reports(out, history, evaluation, best_epoch)
    lap("write")
    summary = TrainSummary(
        output_uri=cfg.output_uri,
        labels=data.labels,
        best_epoch=best_epoch,
        val_accuracy=evaluation.accuracy,
        epochs=len(history),
        history=history,
        counts=counts,
        timings_s=timings,
        model_version=best.model_version,
    )
    out.write_json(
        names.RUN_RECORD,
        {
            **record,
            "status": "done",
            "ended_at": datetime.now(UTC).isoformat(),
            "best_epoch": best_epoch,
            "best_val_accuracy": evaluation.accuracy,
            "model_version": best.model_version,
            "epochs": len(history),
            "restarts": restarts,
            "timings_s": timings,
            "history": history,
        },
    )
    log.info(summary.line())
    return summary


def _clips(cfg: TrainConfig, data: LabeledData, mode: TrainMode) -> dict[str, ClipSplit]:
    """Stages 1-2: the train and val clips, materialized."""
    if mode.source is not None:
        return feature_splits(data, mode.source, cfg.storage, cfg.seed)
    with open_book() as book:  # one bookkeeping actor (a process) for both splits
        return {
            name: decode_split(
                data.split(name), data.labels, cfg.sampling, cfg.plan, cfg.storage, cfg.seed, book
            )
            for name in (TRAIN, VAL)
        }


def _check_output(out: TrainOutput, cfg: TrainConfig, now: dict) -> None:
    """A fresh run needs a fresh output; --resume needs the same model, sampling and labels
    (and, with --features-from, the same index model)."""
    if not out.exists(names.RUN_RECORD):
        if cfg.resume:
            log.warning(
                "--resume: no earlier run in %s; starting from scratch",
                storage.redact(cfg.output_uri),
            )
        return
    if not cfg.resume:
        raise ConfigError(
            f"--output {storage.redact(cfg.output_uri)} already holds a training run; pass "
            "--resume to continue it, or choose another --output"
        )
    before = out.read_json(names.RUN_RECORD)
    changed = [k for k in now if before.get(k) != now[k]]
    if changed:
        detail = "; ".join(f"{k}: was {before.get(k)}, now {now[k]}" for k in changed)
        raise ConfigError(
            f"--resume: this run's {', '.join(changed)} differ from the run in "
            f"{storage.redact(cfg.output_uri)} ({detail}); use the original options or "
            "another --output"
        )


def _write_skipped(out: TrainOutput, splits: dict[str, ClipSplit]) -> int:
    rows = [{**f, "split": name} for name, split in splits.items() for f in split.failures]
    out.write_table(names.SKIPPED, pa.Table.from_pylist(rows, schema=names.SKIPPED_SCHEMA))
    for r in rows:
        log.warning(
            "skipped %s (%s split): %s %s: %s",
            storage.redact(r["video_uri"]),
            r["split"],
            r["error_stage"],
            r["error_type"],
            r["error_message"],
        )
    return len({r["video_uri"] for r in rows})


def _loop_spec(
    cfg: TrainConfig,
    mode: TrainMode,
    data: LabeledData,
    counts: dict,
    encoder: dict | None,
    pretrained: dict | None,
    audio: dict | None = None,
) -> LoopSpec:
    import ray

    batch = cfg.workers.per_worker_batch(cfg.optim.batch_size)
    return LoopSpec(
        model=mode.model,
        labels=data.labels,
        sampling=mode.sampling.to_dict(),
        mean=mode.mean,
        std=mode.std,
        epochs=cfg.optim.epochs,
        batch_size=batch,
        lr=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
        seed=cfg.seed,
        threads=max(1, int(cfg.workers.cpus_per_worker)),
        shuffle_buffer=max(4 * batch, min(4096, SHUFFLE_BUFFER_BYTES // mode.clip_bytes)),
        extra={
            "trainer": "reelay.train",
            "data_uri": storage.redact(cfg.data_uri),
            "split_source": data.split_source,
            "counts": counts,
            "config": cfg.to_dict(),
            **mode.to_dict(),
        },
        report_extra={"skipped_videos": counts["skipped_videos"]},
        inputs=FRAMES if mode.source is None else FEATURES,
        # features: the index run's encoder, once in the object store for every worker
        encoder=ray.put(encoder) if encoder is not None else None,
        pretrained=ray.put(pretrained) if pretrained is not None else None,
        audio_pretrained=ray.put(audio) if audio is not None else None,
    )


def _fit(cfg: TrainConfig, spec: LoopSpec, out: TrainOutput, splits: dict[str, ClipSplit]):
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipeline.train.loop import train_loop_per_worker

    storage_path, filesystem = out.ray_storage()
    resources = {"CPU": cfg.workers.cpus_per_worker}
    if cfg.workers.use_gpu:
        resources["GPU"] = 1
    attempts = actor_beside_driver(Attempts)  # outlives any worker group
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": replace(spec, attempts=attempts)},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.workers.num_workers,
            use_gpu=cfg.workers.use_gpu,
            resources_per_worker=resources,
        ),
        run_config=ray.train.RunConfig(
            name=names.CHECKPOINTS,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.keep_checkpoints,
                checkpoint_score_attribute="val_accuracy",
                checkpoint_score_order="max",
            ),
            # a failed worker group restarts from the latest checkpoint (see WorkersConfig)
            failure_config=ray.train.FailureConfig(max_failures=cfg.workers.max_failures),
        ),
        datasets={TRAIN: splits[TRAIN].clips, VAL: splits[VAL].clips},
        # val is not split: rank 0 evaluates every val clip, so keep-best sees exact numbers
        dataset_config=ray.train.DataConfig(datasets_to_split=[TRAIN]),
    )
    try:
        result = trainer.fit()
        started_after = ray.get(attempts.starts.remote())
    finally:
        ray.kill(attempts)
    if result.error is not None:
        raise RuntimeError(f"training failed: {result.error}") from result.error
    return result, [{"from_epoch": epoch} for epoch in started_after[1:]]


def _best(result) -> tuple:
    """The kept checkpoint with the highest val accuracy (ties: lower val loss, then later)."""
    kept = [(c, m) for c, m in (result.best_checkpoints or []) if "val_accuracy" in m]
    if not kept:
        raise RuntimeError("training finished without a checkpoint (no epoch was reported)")
    return max(kept, key=lambda cm: (cm[1]["val_accuracy"], -cm[1]["val_loss"], cm[1]["epoch"]))


def _write_reports(
    out: TrainOutput, history: list[dict], evaluation: Evaluation, best_epoch: int
) -> None:
    out.write_table(names.METRICS, pa.Table.from_pylist(history))
    out.write_table(names.PER_CLASS, evaluation.per_class_table())
    out.write_table(names.CONFUSION, evaluation.confusion_table())
    out.write_json(names.EVALUATION, {"best_epoch": best_epoch, **evaluation.to_dict()})
    from pipeline.report.training_figures import confusion_png  # matplotlib: here only

    figure = confusion_png(list(evaluation.labels), evaluation.confusion, evaluation.accuracy)
    out.write_bytes(names.CONFUSION_PNG, figure)
