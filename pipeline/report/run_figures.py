"""The run report's figures, one function each: numbers from `stats` in, PNG bytes out."""

from __future__ import annotations

import math

from pipeline.report import stats
from pipeline.report.plots import (
    BLUE,
    GREEN,
    GREY,
    INK,
    ORANGE,
    OTHER_STAGE,
    RED,
    STAGE_COLORS,
    bar_labels,
    count_axis,
    figure,
    message,
    png,
    short_uri,
    tidy,
)


def _bar_height(n: int, per_bar: float = 0.42, base: float = 1.5, least: float = 2.6) -> float:
    return max(least, base + per_bar * n)


def throughput_png(tp: stats.Throughput) -> bytes:
    """Decode (top) and inference (bottom) frames/s between progress samples, one step per
    interval, on the same scales."""
    if not tp.decode:
        fig, ax = figure(8.0, 3.2)
        ax.set_title("Throughput per stage", loc="left", fontsize=12)
        message(ax, "No progress samples in the run record\n(nothing was decoded)")
        return png(fig)
    fig, axes = figure(8.0, 4.6, nrows=2, sharex=True, sharey=True)
    top = max(max(tp.decode), max(tp.infer), 1e-9) * 1.15
    for ax, rates, color, name in (
        (axes[0], tp.decode, BLUE, "Decode"),
        (axes[1], tp.infer, ORANGE, "Inference"),
    ):
        ax.stairs(rates, tp.edges, baseline=0, fill=True, color=color, alpha=0.18)
        ax.stairs(rates, tp.edges, baseline=None, color=color, linewidth=2.2)
        ax.axhline(tp.average(rates), color=INK, linestyle=":", linewidth=1.2)
        ax.set_title(
            f"{name}: {tp.average(rates):,.1f} frames/s on average (dotted)",
            loc="left",
            fontsize=11,
        )
        ax.set_ylabel("frames/s")
        ax.set_ylim(0, top)
        count_axis(ax.yaxis, integer=False)
        tidy(ax)
    axes[1].set_xlim(0, tp.edges[-1])
    axes[1].set_xlabel("seconds since decoding started")
    if tp.single_interval:
        fig.suptitle(
            "One progress sample: each stage's average over the run",
            x=0.01,
            ha="left",
            fontsize=10,
            color=INK,
        )
    return png(fig)


def stages_png(stage_times: list[tuple[str, float]]) -> bytes:
    """Wall-clock seconds per stage, in pipeline order, with each one's share."""
    fig, ax = figure(8.0, _bar_height(len(stage_times)))
    if not stage_times:
        message(ax, "No stage timings in the run record")
        return png(fig)
    names = [n for n, _ in stage_times]
    seconds = [s for _, s in stage_times]
    total = sum(seconds) or 1e-9
    bars = ax.barh(names, seconds, color=BLUE, height=0.6)
    bar_labels(ax, bars, [f"{stats.format_duration(s)}  ({s / total:.0%})" for s in seconds])
    ax.invert_yaxis()  # first stage on top
    ax.set_xlabel("seconds (wall clock)")
    ax.set_title(
        f"Time per stage (total {stats.format_duration(sum(seconds))})", loc="left", fontsize=12
    )
    tidy(ax, grid="x")
    return png(fig)


def volume_png(h: stats.Headline) -> bytes:
    """Videos ok / failed / skipped, and the clips and frames they gave."""
    fig, (left, right) = figure(8.0, 2.8, ncols=2, width_ratios=[1.1, 1])
    bars = left.barh(
        ["ok", "failed", "skipped"],
        [h.videos_ok, h.videos_failed, h.videos_skipped],
        color=[GREEN, RED, GREY],
        height=0.6,
    )
    bar_labels(left, bars, [f"{b.get_width():,.0f}" for b in bars])
    left.invert_yaxis()
    left.set_title(f"Videos ({h.listed:,} listed)", loc="left", fontsize=12)
    left.set_xlabel("videos")
    count_axis(left.xaxis)
    bars = right.barh(
        ["clips", "sampled frames"], [h.clips, h.sampled_frames], color=BLUE, height=0.6
    )
    bar_labels(right, bars, [f"{b.get_width():,.0f}" for b in bars])
    right.invert_yaxis()
    right.set_title("Clips and frames indexed", loc="left", fontsize=12)
    right.set_xlabel("count")
    count_axis(right.xaxis)
    for ax in (left, right):
        tidy(ax, grid="x")
    return png(fig)


def failures_png(failures: list[stats.FailureCount]) -> bytes:
    """Error rows by (stage, error type), coloured by stage."""
    fig, ax = figure(8.0, _bar_height(len(failures)))
    if not failures:
        message(ax, "No failures in this run", color=GREEN)
        ax.set_title("Failures by stage and error type", loc="left", fontsize=12)
        return png(fig)
    names = [f"{f.stage} · {f.error_type}" for f in failures]
    bars = ax.barh(
        names,
        [f.rows for f in failures],
        color=[STAGE_COLORS.get(f.stage, OTHER_STAGE) for f in failures],
        height=0.6,
    )
    bar_labels(
        ax, bars, [f"{f.rows} ({f.videos} video{'s' if f.videos != 1 else ''})" for f in failures]
    )
    ax.invert_yaxis()
    count_axis(ax.xaxis)
    ax.set_xlabel("failed work units (rows in errors/)")
    rows = sum(f.rows for f in failures)
    ax.set_title(
        f"Failures by stage and error type ({rows} failed work unit{'s' if rows != 1 else ''})",
        loc="left",
        fontsize=12,
    )
    tidy(ax, grid="x")
    return png(fig)


def labels_png(labels: list[stats.LabelStat]) -> bytes:
    """Videos per predicted label (left) and their score: mean, with min-max (right)."""
    if not labels:
        fig, ax = figure(8.0, 2.8)
        ax.set_title("Videos per predicted label", loc="left", fontsize=12)
        message(ax, "No labeled videos in this run")
        return png(fig)
    fig, (left, right) = figure(
        8.0, _bar_height(len(labels), least=2.8), ncols=2, sharey=True, width_ratios=[1.3, 1]
    )
    names = [s.label for s in labels]
    bars = left.barh(names, [s.videos for s in labels], color=BLUE, height=0.6)
    bar_labels(left, bars, [f"{s.videos:,}" for s in labels])
    left.invert_yaxis()
    count_axis(left.xaxis)
    left.set_xlabel("videos")
    left.set_title("Videos per predicted label", loc="left", fontsize=12)
    means = [s.mean_score for s in labels]
    low = [s.mean_score - s.min_score for s in labels]
    high = [s.max_score - s.mean_score for s in labels]
    right.errorbar(
        means,
        range(len(labels)),
        xerr=[low, high],
        fmt="o",
        color=ORANGE,
        ecolor="#e0a060",
        elinewidth=3,
        capsize=0,
        markersize=7,
    )
    for y, m in enumerate(means):
        right.annotate(
            f"{m:.2f}",
            (m, y),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=9,
            color=INK,
        )
    right.set_xlim(0, 1)
    right.set_xlabel("score: mean (dot), min to max (bar)")
    right.set_title("Score of those videos", loc="left", fontsize=12)
    right.tick_params(axis="y", left=False)
    pad = 0.6 if len(labels) <= 2 else 0.1  # one or two labels: not slabs
    left.set_ylim(len(labels) - 0.5 + pad, -0.5 - pad)  # shared with the right panel; top down
    for ax in (left, right):
        tidy(ax, grid="x")
    return png(fig)


def slowest_png(slowest: list[tuple[str, float]]) -> bytes:
    """The videos that took longest to decode."""
    fig, ax = figure(8.0, _bar_height(len(slowest), per_bar=0.34))
    ax.set_title("Slowest videos to decode", loc="left", fontsize=12)
    if not slowest:
        message(ax, "No decode timings in the run record")
        return png(fig)
    bars = ax.barh(
        [short_uri(u) for u, _ in slowest], [s for _, s in slowest], color=ORANGE, height=0.6
    )
    bar_labels(ax, bars, [stats.format_duration(s) for _, s in slowest])
    ax.invert_yaxis()
    ax.set_xlabel("decode seconds (all work units of the video, summed)")
    ax.tick_params(axis="y", labelsize=9)
    tidy(ax, grid="x")
    return png(fig)


def _run_label(p: stats.TrendPoint) -> str:
    return p.started_at.strftime("%m-%d\n%H:%M") if p.started_at else p.run_id[:10]


def trend_png(points: list[stats.TrendPoint], run_id: str) -> bytes:
    """Videos ok, failed videos and frames/s of the committed runs; this run highlighted."""
    fig, axes = figure(8.0, 6.0, nrows=3, sharex=True)
    x = list(range(len(points)))
    current = [p.run_id == run_id for p in points]
    alpha = [1.0 if c else 0.45 for c in current]

    def bars(ax, values, color, title, unit):
        drawn = ax.bar(x, values, color=color, width=0.6)
        for bar, a in zip(drawn, alpha, strict=True):
            bar.set_alpha(a)
        ax.set_title(title, loc="left", fontsize=11)
        ax.set_ylabel(unit)
        count_axis(ax.yaxis)
        ax.set_ylim(0, max(max(values, default=0), 1) * 1.3)
        if len(points) <= 12:
            ax.bar_label(drawn, labels=[f"{v:,}" for v in values], padding=2, fontsize=8)
        tidy(ax)

    bars(axes[0], [p.videos_ok for p in points], GREEN, "Videos indexed per run", "videos")
    bars(axes[1], [p.videos_failed for p in points], RED, "Failed videos per run", "videos")
    fps = [p.frames_per_s for p in points]
    ax = axes[2]
    ax.plot(x, fps, color=BLUE, marker="o", linewidth=1.8)
    ax.plot(
        [i for i in x if current[i]],
        [f for f, c in zip(fps, current, strict=True) if c],
        "o",
        color=BLUE,
        markersize=11,
        markerfacecolor="white",
        markeredgewidth=2,
    )
    ax.set_title("Throughput per run (sampled frames / decode+infer time)", loc="left", fontsize=11)
    ax.set_ylabel("frames/s")
    ax.set_ylim(0, max(max(fps, default=0), 1e-9) * 1.3)
    count_axis(ax.yaxis, integer=False)
    tidy(ax)
    step = max(1, math.ceil(len(points) / 12))
    ticks = [i for i in x if i % step == 0 or current[i]]
    ax.set_xticks(ticks, [_run_label(points[i]) for i in ticks], fontsize=8)
    for i, tick in zip(ticks, ax.get_xticklabels(), strict=True):
        if current[i]:
            tick.set_fontweight("bold")
    ax.set_xlabel("run start (UTC); the reported run in full colour, bold")
    slots = max(len(points), 8)  # few runs: narrow bars, the reported run on the right
    ax.set_xlim(len(points) - slots - 0.6, len(points) - 0.4)
    earlier = len(points) - 1
    title = (
        f"Comparison with the {earlier} previous committed run{'s' if earlier != 1 else ''}"
        if earlier
        else "Comparison with previous runs (none yet: this is the first committed run)"
    )
    fig.suptitle(title, x=0.01, ha="left", fontsize=12, color=INK)
    return png(fig)
