"""Perceptual frame hashes for near-duplicate detection: 64 bits per frame, from the index's
sampled frames.

The hash is a DCT pHash: the frame's luma is box-averaged to a 32 x 32 grid, its 64 lowest
frequency DCT coefficients (DC left out: it carries only brightness) are compared with their
median, one bit each. Low frequencies survive re-encoding and resizing; comparing with the
median makes the bits blind to brightness and contrast (an affine change of luma scales and
shifts every AC coefficient alike), and hue or saturation shifts move luma little.

A crop of a few percent per side is a zoom of the frame's centre (the index keeps each frame's
centre square), and a 64-bit DCT hash tolerates a zoom of about 5 %. `frame_fingerprints`
therefore adds a second hash of each frame's central 1 / CROP_ZOOM: a copy cropped by 5-10 %
per side matches the original's zoomed hash within a few bits (tests/test_duplicates.py).

Written as matrix products (grid averaging and DCT folded into one (8, S) projection per axis)
rather than with imagehash: the same hash family, no SciPy, one call per batch instead of a
PIL image per frame: 15 us a frame at 112 x 112 (20 us for both hashes) against imagehash's
230 us, on one core. Frames with no structure (black, flat, a fade) get NO_HASH, which
matching skips.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "CROP_ZOOM",
    "HASH_BITS",
    "MIN_CONTRAST",
    "NO_HASH",
    "ZOOMS",
    "frame_fingerprints",
    "frame_hashes",
    "hamming",
    "informative",
    "popcount",
]

HASH_BITS = 64
GRID = 32  # the luma grid the DCT runs on (pHash's 32 x 32)
CROP_ZOOM = 1.18  # the second hash: the central 1/1.18 of the frame (a crop of ~8 % a side)
ZOOMS = (1.0, CROP_ZOOM)
# Below this RMS of the hashed frequencies (grey levels of 255) a frame has no structure to hash:
# its bits would be set by noise and compression, and every black frame would match every other.
MIN_CONTRAST = 2.0
NO_HASH = np.uint64(0)  # a real hash has 32 bits set (half the coefficients are above the median)
CHUNK_FRAMES = 64  # frames converted to float at a time: cache-sized, and bounded for long videos

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as JPEG and MPEG
_BIT_VALUES = np.left_shift(np.uint64(1), np.arange(HASH_BITS, dtype=np.uint64))


def _coefficients() -> np.ndarray:
    """(GRID, GRID) bool: the 64 lowest frequencies (by u + v, then u) after the DC term.

    The lowest frequencies change least when a frame is resized or shifted a little, and all 64
    bits are informative (imagehash's 8 x 8 block spends one on DC, which is always set)."""
    u, v = np.mgrid[0:GRID, 0:GRID]
    order = np.lexsort((u.ravel(), (u + v).ravel()))
    mask = np.zeros(GRID * GRID, dtype=bool)
    mask[order[1 : HASH_BITS + 1]] = True
    return mask.reshape(GRID, GRID)


def _dct_matrix(n: int) -> np.ndarray:
    """(n, n) orthonormal DCT-II: row k is the k-th cosine."""
    k, x = np.mgrid[0:n, 0:n]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
    matrix[0] /= np.sqrt(2)
    return matrix


def _box_matrix(size: int, zoom: float) -> np.ndarray:
    """(GRID, size): each grid cell the exact area average of its span of `size` pixels, over
    the central 1 / zoom of the axis."""
    span = size / zoom
    edges = np.linspace((size - span) / 2, (size + span) / 2, GRID + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    pixels = np.arange(size)[None, :]
    overlap = np.clip(np.minimum(hi, pixels + 1) - np.maximum(lo, pixels), 0, None)
    return overlap / (hi - lo)


@functools.lru_cache(maxsize=32)
def _projections(height: int, width: int, zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """(R, H) and (C, W) float32: grid averaging then DCT, the rows and columns the hashed
    coefficients use."""
    mask = _coefficients()
    dct = _dct_matrix(GRID)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    by_row = dct[rows] @ _box_matrix(height, zoom)
    by_col = dct[cols] @ _box_matrix(width, zoom)
    return by_row.astype(np.float32), by_col.astype(np.float32)


@functools.cache
def _selected() -> np.ndarray:
    """(R, C) bool: which of the projected coefficients are hashed."""
    mask = _coefficients()
    return mask[np.ix_(mask.any(axis=1), mask.any(axis=0))]


def _hash_luma(luma: np.ndarray, zoom: float, min_contrast: float) -> np.ndarray:
    """(T, H, W) float32 luma -> (T,) uint64."""
    by_row, by_col = _projections(luma.shape[1], luma.shape[2], zoom)
    coefficients = (by_row @ luma @ by_col.T)[:, _selected()]  # (T, 64)
    # orthonormal DCT: the squares sum to GRID^2 times the variance these frequencies carry
    contrast = np.sqrt(np.einsum("tk,tk->t", coefficients, coefficients)) / GRID
    bits = coefficients > np.median(coefficients, axis=1, keepdims=True)
    hashes = np.bitwise_or.reduce(np.where(bits, _BIT_VALUES, np.uint64(0)), axis=1)
    hashes[contrast < min_contrast] = NO_HASH
    return hashes


def _check(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    return frames


def frame_fingerprints(
    frames: np.ndarray, zooms: tuple[float, ...] = ZOOMS, min_contrast: float = MIN_CONTRAST
) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, len(zooms)) uint64: each frame hashed whole and zoomed
    (column 0 the whole frame); NO_HASH for a frame without structure."""
    frames = _check(frames)
    out = np.empty((len(frames), len(zooms)), dtype=np.uint64)
    for start in range(0, len(frames), CHUNK_FRAMES):
        luma = frames[start : start + CHUNK_FRAMES].astype(np.float32) @ _LUMA
        for column, zoom in enumerate(zooms):
            out[start : start + len(luma), column] = _hash_luma(luma, zoom, min_contrast)
    return out


def frame_hashes(
    frames: np.ndarray, zoom: float = 1.0, min_contrast: float = MIN_CONTRAST
) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T,) uint64 perceptual hashes of the frames (of their central
    1 / zoom); NO_HASH for a frame without structure."""
    return frame_fingerprints(frames, (zoom,), min_contrast)[:, 0]


# A real hash has half its bits set (pipeline.video.fingerprint); one far from half is a flat
# frame's, or another hasher's "no information" value (all zeros, all ones).
MIN_SET_BITS, MAX_SET_BITS = 16, 48


def informative(hashes: np.ndarray) -> np.ndarray:
    """Which hashes carry structure (about half their bits set)."""
    bits = popcount(hashes)
    return (bits >= MIN_SET_BITS) & (bits <= MAX_SET_BITS)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (NumPy 2's bitwise_count; a byte table on NumPy 1.26)."""
    values = np.asarray(values, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    return _BYTE_BITS[values[..., None].view(np.uint8)].sum(axis=-1, dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes (broadcast)."""
    return popcount(np.bitwise_xor(a, b))
