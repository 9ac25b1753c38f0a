"""The training report's figures: learning curves, confusion matrix, per-class recall, epoch
times. Rows from metrics.parquet / per_class.parquet in, PNG bytes out."""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator, PercentFormatter

from pipeline.report.plots import (
    BLUE,
    GREY,
    INK,
    ORANGE,
    figure,
    png,
    tidy,
)

CURVES = (("train", BLUE, "-"), ("val", ORANGE, "--"))


def _series(epochs: list[dict], key: str) -> tuple[list[int], list[float]]:
    pairs = [(int(e["epoch"]), float(e[key])) for e in epochs if e.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def few_epochs(epochs: list[dict], *axes) -> None:
    """With a handful of epochs, tick each one and leave room on both sides."""
    seen = sorted({int(e["epoch"]) for e in epochs if e.get("epoch") is not None})
    if seen and len(seen) < 6:
        for ax in axes:
            ax.set_xticks(seen)
            ax.set_xlim(seen[0] - 0.7, seen[-1] + 0.7)


def curves_png(epochs: list[dict], best_epoch: int | None) -> bytes:
    """Loss (left) and accuracy (right) per epoch, train and validation; best epoch marked."""
    fig, (loss_ax, acc_ax) = figure(9.0, 3.6, ncols=2)
    for ax, metric, title in (
        (loss_ax, "loss", "Loss (lower is better)"),
        (acc_ax, "accuracy", "Accuracy (higher is better)"),
    ):
        for split, color, style in CURVES:
            x, y = _series(epochs, f"{split}_{metric}")
            if x:
                ax.plot(
                    x,
                    y,
                    color=color,
                    linestyle=style,
                    marker="o",
                    linewidth=2,
                    label="validation" if split == "val" else split,
                )
        if best_epoch is not None:
            ax.axvline(
                best_epoch,
                color=GREY,
                linestyle=":",
                linewidth=1.5,
                label=f"best epoch ({best_epoch})",
            )
        ax.set_title(title, loc="left", fontsize=12)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        tidy(ax, grid="both")
    acc_ax.set_ylim(0, 1.04)
    acc_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    losses = [v for split, _, _ in CURVES for v in _series(epochs, f"{split}_loss")[1]]
    loss_ax.set_ylim(0, max(losses, default=1.0) * 1.12 or 1.0)
    few_epochs(epochs, loss_ax, acc_ax)
    loss_ax.legend(frameon=False, fontsize=9)
    return png(fig)


def confusion_png(labels: list[str], matrix: np.ndarray, accuracy: float | None) -> bytes:
    """Counts in the cells; colour = share of the true class (each row sums to 100%)."""
    k = len(labels)
    side = min(max(4.6, 0.55 * k + 2.6), 14.0)
    fig, ax = figure(side + 1.4, side + 0.3)
    support = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, support, out=np.zeros(matrix.shape), where=support > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    bar = fig.colorbar(image, ax=ax, shrink=0.8, format=PercentFormatter(1.0))
    bar.set_label("share of the true class")
    ax.set_xticks(range(k), labels, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    if k <= 25:
        font = 10 if k <= 10 else 7
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{int(matrix[i, j]):,}",
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if share[i, j] > 0.6 else INK,
                )
    title = f"Confusion matrix\n{int(matrix.sum()):,} validation clips"
    if accuracy is not None:
        title += f", accuracy {accuracy:.1%}"
    ax.set_title(title, loc="left", fontsize=12)
    return png(fig)


def recall_png(per_class: list[dict], accuracy: float | None) -> bytes:
    """Recall of each class (share of its clips predicted right), with its support."""
    fig, ax = figure(8.0, max(2.6, 1.5 + 0.4 * len(per_class)))
    names = [str(r["label"]) for r in per_class]
    recall = [float(r.get("recall") or 0.0) for r in per_class]
    ax.barh(names, recall, color=BLUE, height=0.6)
    for y, (r, row) in enumerate(zip(recall, per_class, strict=True)):  # a column right of 100%
        ax.text(
            1.03,
            y,
            f"{r:.0%}  (n={int(row.get('support') or 0):,})",
            va="center",
            fontsize=9,
            color=INK,
        )
    if accuracy is not None:
        ax.axvline(
            accuracy,
            color=ORANGE,
            linestyle="--",
            linewidth=1.5,
            label=f"overall accuracy {accuracy:.0%}",
        )
        ax.legend(
            loc="lower left", bbox_to_anchor=(0, 1.01), frameon=False, fontsize=9, borderaxespad=0
        )
    ax.invert_yaxis()
    ax.set_xlim(0, 1.3)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("recall (validation clips of the class predicted as the class)")
    ax.set_title("Per-class recall", loc="left", fontsize=12, pad=22 if accuracy else 6)
    tidy(ax, grid="x")
    return png(fig)


def epoch_time_png(epochs: list[dict]) -> bytes:
    """Seconds per epoch: training, then validation stacked on it."""
    fig, ax = figure(8.0, 3.0)
    x, train = _series(epochs, "epoch_time_s")
    val = {e: v for e, v in zip(*_series(epochs, "val_time_s"), strict=True)}
    ax.bar(x, train, color=BLUE, width=0.6, label="training")
    if val:
        ax.bar(
            x,
            [val.get(e, 0.0) for e in x],
            bottom=train,
            color=ORANGE,
            width=0.6,
            label="validation",
        )
    ax.set_title("Time per epoch", loc="left", fontsize=12)
    ax.set_xlabel("epoch")
    ax.set_ylabel("seconds")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    few_epochs(epochs, ax)
    ax.legend(
        loc="lower right",
        bbox_to_anchor=(1, 1.01),
        ncol=2,
        frameon=False,
        fontsize=9,
        borderaxespad=0,
    )
    tidy(ax)
    return png(fig)
