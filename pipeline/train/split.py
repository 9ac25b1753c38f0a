"""Pure split logic: a seeded, stratified train/val split and the checks on labeled splits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from pipeline.listing import InputError

TRAIN, VAL = "train", "val"
SPLIT_ALIASES = {
    "train": TRAIN,
    "training": TRAIN,
    "val": VAL,
    "valid": VAL,
    "validation": VAL,
    "dev": VAL,
}


def normalise_split(value: str | None) -> str | None:
    """'train'/'val' (or an alias); None for a split this job does not use (e.g. 'test')."""
    if value is None:
        return None
    return SPLIT_ALIASES.get(str(value).strip().lower())


def stratified_split(labels: Sequence[str], val_fraction: float, seed: int) -> list[str]:
    """A split name per item: per label, a seeded `val_fraction` of its items go to val.

    Every label with >= 2 items keeps at least one item on each side; a label with a single
    item stays in train. Deterministic for a given (labels, val_fraction, seed).
    """
    out = [TRAIN] * len(labels)
    rng = np.random.default_rng(seed)
    for label in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == label]
        if len(idx) < 2:
            continue
        n_val = min(len(idx) - 1, max(1, round(len(idx) * val_fraction)))
        for i in rng.permutation(idx)[:n_val]:
            out[int(i)] = VAL
    return out


def check_labels(train_labels: Sequence[str], val_labels: Sequence[str], where: str) -> list[str]:
    """The sorted class names, or an InputError saying what is wrong with the splits."""
    classes = sorted(set(train_labels))
    if not classes:
        raise InputError(f"{where}: no training videos (split 'train' is empty)")
    if len(classes) < 2:
        raise InputError(
            f"{where}: need at least 2 classes to train a classifier, found only {classes}"
        )
    unknown = sorted(set(val_labels) - set(classes))
    if unknown:
        counts = Counter(v for v in val_labels if v in unknown)
        listed = ", ".join(f"{u!r} ({counts[u]} videos)" for u in unknown)
        raise InputError(
            f"{where}: the val split has labels with no training videos: {listed}; "
            f"training labels are {classes}. Add training videos for them or drop them from val."
        )
    if not val_labels:
        raise InputError(
            f"{where}: the val split is empty; give a split column with 'val' rows, a val/ "
            "folder, or omit the split to let --val-fraction pick one"
        )
    return classes
