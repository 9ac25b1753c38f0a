"""The run report's figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io

import numpy as np


def confusion_png(confusion: np.ndarray, labels: tuple[str, ...], title: str) -> bytes:
    """A confusion matrix (rows true, columns predicted) with counts in the cells, as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    k = len(labels)
    size = max(3.5, 0.6 * k + 2.0)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    try:
        ax.imshow(confusion, cmap="Blues", vmin=0, vmax=max(int(confusion.max()), 1))
        ax.set_xticks(range(k), labels, rotation=45, ha="right")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=10)
        threshold = confusion.max() / 2 if confusion.size else 0
        for i in range(k):
            for j in range(k):
                value = int(confusion[i, j])
                color = "white" if value > threshold else "black"
                ax.text(j, i, str(value), ha="center", va="center", color=color)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
