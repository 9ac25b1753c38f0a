"""Connecting to Ray, and sizing the inference actors from what the cluster has."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

import ray

from pipeline.config import ConfigError, InferConfig
from pipeline.cpu_priority import decode_first

log = logging.getLogger("reelay.ray")


def ensure_ray(*, state_api: bool = False) -> None:
    """Join the cluster the job was submitted to (RAY_ADDRESS), else start a local Ray; Ray
    Data's progress bars only on a terminal (`_configure_data_progress`).

    A local Ray starts without its dashboard (a second of CPU per run), which also serves the
    State API. `state_api=True` keeps it, for Ray Train: its placement-group cleaner asks the
    State API every second whether the train controller is alive, and without it logs a
    warning each time and could not clean up after a controller that died."""
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS", "local") != "local":  # `ray job submit`, clusters
            ray.init()
        else:  # a private, local Ray, on 127.0.0.1
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            # None: Ray's default, the dashboard if it can start (a run goes on without it)
            ray.init(address="local", include_dashboard=None if state_api else False)
    _configure_data_progress()


def _configure_data_progress() -> None:
    """Ray Data's progress bars on a terminal only. Into a log (ray job submit, a nightly
    run) Ray Data writes a dozen progress lines every few seconds, which the job's own
    progress line already says in one."""
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = sys.stdout.isatty()


@dataclass(frozen=True)
class InferenceResources:
    device: str
    num_gpus: float
    num_cpus: float
    threads: int
    max_actors: int
    batch_size: int  # clips per forward pass
    calls_per_actor: int = 1  # Ray Data calls in flight inside one actor (InferConfig.calls_for)
    task_cpus: float = 1.0  # CPUs per plan and decode task (InferConfig.task_cpus_for)
    idle_priority: bool = False  # the actors' compute threads yield to decoding (cpu_priority)

    def actor_pool(self) -> ray.data.ActorPoolStrategy:
        """Ray Data's actor pool for these actors. With several calls per actor, Ray Data
        batches inputs and outputs on other threads while the model runs; the model itself
        runs on one thread, one batch at a time (enable_true_multi_threading stays off), so a
        GPU never holds two batches and the inferencer's pinned buffer is never shared."""
        return ray.data.ActorPoolStrategy(
            min_size=1,
            max_size=self.max_actors,
            max_concurrent_calls_per_actor=self.calls_per_actor,
        )


def this_node() -> str:
    """The Ray node this process runs on ("" outside Ray): the run record's work per node."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def actor_beside_driver(actor_class: type, **options):
    """An instance of `actor_class` as an actor on this process's node, taking no CPU: the
    bookkeeping of a run (the decode guard's record, training's attempts) must live as long as
    its driver, not go with a worker node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(this_node(), soft=False)
    return ray.remote(num_cpus=0, scheduling_strategy=here, **options)(actor_class).remote()


def cluster_cpus() -> int:
    return int(ray.cluster_resources().get("CPU", 1))


def inference_resources(cfg: InferConfig) -> InferenceResources:
    """The inference actors for this cluster's CPUs and GPUs (`size_inference`)."""
    resources = ray.cluster_resources()
    return size_inference(cfg, int(resources.get("CPU", 1)), int(resources.get("GPU", 0)))


def size_inference(cfg: InferConfig, cpus: int, gpus: int) -> InferenceResources:
    """One GPU (or --gpus-per-actor of one) per actor when asked or when there are GPUs; else
    CPU actors."""
    device = cfg.device
    if device == "auto":
        device = "cuda" if gpus > 0 else "cpu"
    task_cpus = cfg.task_cpus_for(device)
    if task_cpus > cpus:
        raise ConfigError(f"--cpus-per-task {task_cpus} is more than the cluster's {cpus} CPUs")
    if device == "cuda":
        if gpus == 0:
            log.warning("--device cuda but no GPU in the cluster yet: actors wait for GPU nodes")
        per_gpu = int(1 / cfg.gpus_per_actor + 1e-9)  # actors that fit on one GPU
        max_actors = cfg.max_actors or max(gpus, 1) * per_gpu
        return InferenceResources(
            "cuda",
            cfg.gpus_per_actor,
            cfg.cpus_per_actor,
            max(1, int(cfg.cpus_per_actor)),
            max_actors,
            cfg.batch_for("cuda"),
            cfg.calls_for("cuda"),
            task_cpus,
        )
    if cfg.cpus_per_actor > cpus:
        raise ConfigError(
            f"--cpus-per-actor {cfg.cpus_per_actor} is more than the cluster's {cpus} CPUs"
        )
    max_actors = cfg.max_actors or max(1, int(cpus // (2 * cfg.cpus_per_actor)))
    # Ray reserves cpus_per_actor; torch runs more threads, which take what decoding leaves
    # (with half-CPU decode tasks, at idle priority: pipeline.cpu_priority)
    threads = cfg.torch_threads or 2 * max(1, int(cfg.cpus_per_actor))
    return InferenceResources(
        "cpu", 0.0, cfg.cpus_per_actor, threads, max_actors, cfg.batch_for("cpu"),
        cfg.calls_for("cpu"), task_cpus, idle_priority=decode_first(task_cpus),
    )  # fmt: skip
