"""Training: labeled videos -> Ray Data clips -> Ray Train (DDP) -> best.pt for the index job.

Attributes load lazily (PEP 562): the plan/decode workers unpickle pipeline.train.data, and
that must not import torch (see pipeline.models).
"""

from importlib import import_module

_EXPORTS = {
    "OptimConfig": "config",
    "TrainConfig": "config",
    "WorkersConfig": "config",
    "TrainSummary": "job",
    "run": "job",
    "start_ray": "job",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.train' has no attribute {name!r}")
    value = getattr(import_module(f"pipeline.train.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
