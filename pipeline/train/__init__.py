"""Training: labeled videos -> Ray Data clips -> Ray Train (DDP) -> best.pt for the index job.

Attributes load lazily (PEP 562): the plan/decode workers unpickle pipeline.train.data, and
that must not import torch (see pipeline.models).
"""

from pipeline import lazy_exports

_EXPORTS = {
    "OptimConfig": "config",
    "TrainConfig": "config",
    "WorkersConfig": "config",
    "TrainSummary": "job",
    "run": "job",
    "start_ray": "job",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
