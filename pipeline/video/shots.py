"""Hard-cut detection over the frames the decode stage already holds, and clip windows that
never cross a cut.

Frames are sampled at 1-4 per second, so consecutive samples of one scene can differ a lot
pixel by pixel (a fast pan moves the view by half a frame or more between samples), and a
flash or a dissolve is one or two big steps rather than many small ones: detectors written
for every frame of a video (PySceneDetect's content and adaptive detectors, fed these samples)
report them as cuts or, tuned not to, miss cuts (F1 0.6-0.9 on the generated corpus,
benchmarks/shots.py). This one asks of each change:

- did the colours on screen change? A coarse colour histogram ignores where things are, so a
  pan across one scene keeps it while a cut to another scene does not;
- was it a flash? A sample unlike its two neighbours, which agree with each other, is a
  flash; the change into it and the change out of it are no cuts;
- was it a fade through black? One side is black, or is the other side's scene dimmed, or the
  sample before was dimming (fading out) or the one after brightens (fading in);
- was it gradual? A dissolve spreads its change over several samples, so one step of it is a
  fraction of the change over the two steps around it. Mean colours measure it: a blend of two
  frames has the blend of their mean colours (histograms of a blend do not blend), and motion
  within a scene barely moves them.

Deciding whether a cut lies before sample i reads samples i-3 .. i+2 (a flash next to the
change must be recognised, which takes its own neighbours). A unit of a long video is decided
exactly as in the whole video when it is given the `CONTEXT_BEFORE` samples before it
(`previous`) and the `CONTEXT_AFTER` samples after it (`following`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BLACK",
    "CONTEXT_AFTER",
    "CONTEXT_BEFORE",
    "DEFAULT_THRESHOLD",
    "DIMMED",
    "GRADUAL_RATIO",
    "CutScore",
    "colour_histograms",
    "cut_positions",
    "detect_cuts",
    "mean_colours",
    "score_cuts",
    "shot_windows",
]

DEFAULT_THRESHOLD = 0.45
"""Colour-histogram distance (half the L1 distance of normalised 4x4x4-bin RGB histograms, 0
to 1) from which two samples show different scenes. On the generated corpora (pipeline.samples
.shot_corpus, seeds 0-5) consecutive samples of a fast pan (up to 1.5 frame widths per
second) reach 0.33 at 1 sample/s, and the closest cut 0.60."""

GRADUAL_RATIO = 0.72
"""A change is abrupt when its mean-colour distance is at least this share of the distance over
two steps (it and the step before, or it and the step after). An evenly sampled dissolve step
is at most two thirds of it; on the generated corpora at 2-4 samples/s dissolve steps measure
0.70 at most and cuts 0.81 at least (at 1/s a 1 s dissolve may fall between two samples)."""

DIMMED = 0.8
"""A sample at most this share of another's brightness, whose colours brightened to the same
mean match the other's, is that scene dimmed: a step of a fade to or from black."""

BLACK = 0.04
"""Mean brightness (0 to 1) below which a sample is black: a change to or from it is a fade."""

CONTEXT_BEFORE = 3
"""Samples before a unit that `detect_cuts` reads (`previous`): at the unit's first sample i,
whether sample i-2 was a flash (its neighbours i-3 and i-1 agree)."""

CONTEXT_AFTER = 2
"""Samples after a unit that `detect_cuts` reads (`following`): at the unit's last sample i,
whether sample i+1 is a flash (its neighbours i and i+2 agree)."""

_BITS = 2  # histogram levels per channel: 4 x 4 x 4 colours, coarse enough to ignore noise


def colour_histograms(frames: np.ndarray) -> np.ndarray:
    """(T, 64) float64 RGB histograms of (T, H, W, 3) uint8 frames, each summing to one.

    Coarse joint bins: a colour's share of the frame moves little under camera motion and
    compression noise, and the whole mix changes at a cut."""
    frames = np.asarray(frames)
    count, shift = len(frames), 8 - _BITS
    # one byte per pixel: the colour's bin, red in the high bits
    codes = (frames[..., 0] >> shift) << (2 * _BITS)
    codes |= (frames[..., 1] >> shift) << _BITS
    codes |= frames[..., 2] >> shift
    bins = 1 << (3 * _BITS)
    codes = codes.reshape(count, -1).astype(np.intp) + (np.arange(count) * bins)[:, None]
    hist = np.bincount(codes.ravel(), minlength=count * bins).reshape(count, bins)
    return hist / np.maximum(hist.sum(axis=1, keepdims=True), 1).astype(np.float64)


def mean_colours(frames: np.ndarray) -> np.ndarray:
    """(T, 3) float64 mean RGB of (T, H, W, 3) uint8 frames, 0 to 1: what tells a dissolve from
    a cut (a blend of two frames has the blend of their means; motion barely moves them)."""
    frames = np.asarray(frames)
    count = len(frames)
    pixels = max(1, frames[0, ..., 0].size) if count else 1
    # channel by channel: summing a contiguous run is several times faster than a strided mean
    sums = [frames[..., c].reshape(count, -1).sum(axis=1, dtype=np.uint64) for c in range(3)]
    return np.stack(sums, axis=1).reshape(count, 3) / (255.0 * pixels)


def _stack(context: np.ndarray | None, frames: np.ndarray) -> np.ndarray:
    """Context samples as (k, H, W, 3): from a single frame, a stack of frames, or none."""
    if context is None:
        return frames[:0]
    context = np.asarray(context)
    return context[None] if context.ndim == 3 else context


def detect_cuts(
    frames: np.ndarray,
    previous: np.ndarray | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    following: np.ndarray | None = None,
) -> list[int]:
    """Positions i in `frames` ((T, S, S, 3) uint8 RGB samples) with a hard cut between sample
    i-1 and sample i, in increasing order.

    `previous`: the sample just before the unit (H, W, 3), or the samples before it
    (k, H, W, 3), nearest last; the last `CONTEXT_BEFORE` are read. Without it position 0 is
    never a cut. `following`: the sample just after the unit (H, W, 3), or the samples after
    it (k, H, W, 3), nearest first; the first `CONTEXT_AFTER` are read. None at the video's
    end.

    With less context than that, the unit's edges are judged on what is there, as at a
    video's ends: a change at the last sample cannot be told from a flash without a look
    ahead, so it is reported if it is a cut in every other respect; a change just after a
    flash in the samples before the unit is taken for the return from the flash only when
    the sample before the flash is given.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) frames, got {frames.shape}")
    if len(frames) == 0:
        return []
    before = _stack(previous, frames)[-CONTEXT_BEFORE:]
    after = _stack(following, frames)[:CONTEXT_AFTER]
    sequence = np.concatenate([before, frames, after]) if len(before) or len(after) else frames
    start, stop = len(before), len(before) + len(frames)
    seen = _Samples(sequence, threshold)
    cuts = []
    for i in range(max(start, 1), stop):
        if seen.colour(i - 1, i) < threshold:
            continue  # same colours: same scene, however the camera moved
        if seen.flash[i] or (i >= 2 and seen.colour(i - 2, i) < threshold):
            continue  # a flash at i, or the scene of two samples back is here again
        if seen.fade_step(i):
            continue  # to or from black, or a scene darkening or brightening
        if seen.gradual(i):
            continue  # one step of a change spread over several samples: a dissolve
        cuts.append(i - start)
    return cuts


class _Samples:
    """Per-sample features of a run of samples, and the tests `detect_cuts` asks of them."""

    def __init__(self, frames: np.ndarray, threshold: float) -> None:
        self.frames = frames
        self.threshold = threshold
        self.hist = colour_histograms(frames)
        self.mean = mean_colours(frames)
        self.brightness = self.mean.mean(axis=1)
        last = len(frames) - 1
        # a flash: a sample unlike its two neighbours, which show the same scene
        self.flash = [
            0 < k < last
            and self.colour(k - 1, k) >= threshold
            and self.colour(k, k + 1) >= threshold
            and self.colour(k - 1, k + 1) < threshold
            for k in range(len(frames))
        ]

    def colour(self, a: int, b: int) -> float:
        """Colour-histogram distance of samples a and b, 0 (same mix) to 1 (nothing shared)."""
        return 0.5 * float(np.abs(self.hist[a] - self.hist[b]).sum())

    def mean_distance(self, a: int, b: int) -> float:
        """Mean absolute difference of the mean colours of samples a and b, 0 to 1."""
        return float(np.abs(self.mean[a] - self.mean[b]).mean())

    def dimmed(self, dark: int, bright: int) -> bool:
        """Whether sample `dark` is sample `bright`'s scene at lower brightness (a fade's
        step): its colours, brightened to the same mean, match `bright`'s."""
        if self.brightness[dark] > DIMMED * self.brightness[bright]:
            return False
        gain = self.brightness[bright] / max(float(self.brightness[dark]), 1e-6)
        lifted = np.clip(self.frames[dark].astype(np.float32) * gain, 0, 255).astype(np.uint8)
        distance = 0.5 * np.abs(colour_histograms(lifted[None])[0] - self.hist[bright]).sum()
        return bool(distance < self.threshold)

    def fade_step(self, i: int) -> bool:
        """Whether the change before sample i belongs to a fade through black: one side is
        black, or one side is the other's scene dimmed, or the sample before was dimming
        (fading out) or the sample after brightens this one's scene (fading in). Flashes are
        no evidence of a fade."""
        if min(self.brightness[i - 1], self.brightness[i]) < BLACK:
            return True
        if self.dimmed(i - 1, i) or self.dimmed(i, i - 1):
            return True
        if i >= 2 and not self.flash[i - 2] and self.dimmed(i - 1, i - 2):
            return True
        return i + 1 < len(self.frames) and not self.flash[i + 1] and self.dimmed(i, i + 1)

    def gradual(self, i: int) -> bool:
        """Whether the change before sample i is a fraction of the change over two steps
        (samples i-2 to i, or i-1 to i+1), as one step of a dissolve is. A flash sample is no
        step of a dissolve, so a span ending on one is left out."""
        around = [self.mean_distance(i - 2, i)] if i >= 2 and not self.flash[i - 2] else []
        if i + 1 < len(self.frames) and not self.flash[i + 1]:
            around.append(self.mean_distance(i - 1, i + 1))
        return bool(around) and self.mean_distance(i - 1, i) < GRADUAL_RATIO * max(around)


def shot_windows(
    num_samples: int, cuts: Sequence[int], clip_frames: int
) -> list[tuple[int, int, int]]:
    """(start, end, shot) windows over a unit's samples: each shot (the samples between two
    cuts) is tiled from its start by windows of `clip_frames` samples, the last maybe shorter,
    so no clip mixes two shots.

    `shot` is the number of the unit's cuts at or before the window's start: 0 is the shot
    running when the unit starts, and a cut at position 0 makes the unit's first window shot 1
    (the shot before it has no samples here). A video's shot number is then the count of cuts
    in its earlier units plus this. Cuts outside [0, num_samples) are ignored."""
    if clip_frames < 1:
        raise ValueError(f"clip_frames must be at least 1, got {clip_frames}")
    inside = sorted({int(c) for c in cuts if 0 <= c < num_samples})
    first_shot = 1 if inside and inside[0] == 0 else 0
    bounds = [0, *(c for c in inside if c > 0), max(num_samples, 0)]
    windows = []
    for k, (first, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        shot = first_shot + k
        windows += [(s, min(s + clip_frames, end), shot) for s in range(first, end, clip_frames)]
    return windows


def cut_positions(sample_frames: Sequence[int], cut_frames: Sequence[int]) -> list[int]:
    """Native-frame cuts (the first frame of each new shot) as sample positions: a cut lies
    between samples i-1 and i when sample i is the first taken at or after its frame. Cuts
    before the first sample or after the last one fall outside and are dropped."""
    samples = np.asarray(sample_frames)
    positions = np.searchsorted(samples, np.asarray(cut_frames), side="left")
    return sorted({int(p) for p in positions if 0 < p < len(samples)})


@dataclass(frozen=True)
class CutScore:
    """Cuts matched (true positives), reported but not there, and there but not reported."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        there = self.true_positives + self.false_negatives
        return self.true_positives / there if there else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: CutScore) -> CutScore:
        """Counts over a corpus: F1 of the sum, not a mean of per-video F1s."""
        return CutScore(
            self.true_positives + other.true_positives,
            self.false_positives + other.false_positives,
            self.false_negatives + other.false_negatives,
        )


def score_cuts(predicted: Sequence[int], truth: Sequence[int], tolerance: int = 1) -> CutScore:
    """Match predicted cut positions to true ones: a prediction within `tolerance` samples of
    a true cut matches it, each at most once (nearest pairs first). With no cuts predicted and
    none true, precision, recall and F1 are all 1."""
    pairs = sorted(
        (abs(p - t), p, t) for p in set(predicted) for t in set(truth) if abs(p - t) <= tolerance
    )
    used_p: set[int] = set()
    used_t: set[int] = set()
    for _, p, t in pairs:
        if p not in used_p and t not in used_t:
            used_p.add(p)
            used_t.add(t)
    tp = len(used_p)
    return CutScore(tp, len(set(predicted)) - tp, len(set(truth)) - tp)
