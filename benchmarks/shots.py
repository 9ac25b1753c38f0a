"""Shot-cut detection's cost and accuracy (pipeline/video/shots.py) on generated video: the
multi-shot corpus of pipeline.samples.shot_corpus (hard cuts, dissolves, fades through black,
fast pans, white flashes), rendered at 24 frames/s, sampled at --rate and resized to
--image-size as the decode stage hands frames over. Nothing is encoded: the cost measured is
the detector's alone (tests/test_shots.py scores the same corpus through H.264 and the reader).

    python -m benchmarks.shots [--image-size 112] [--rate 2] [--videos 12] [--pyscenedetect]

Prints milliseconds per sampled frame (best of --repeats passes over the corpus) and the cut
F1 at one sample's tolerance; with --pyscenedetect, the same for PySceneDetect's content and
adaptive detectors fed the same in-memory frames (where scenedetect and OpenCV are installed).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

NATIVE_FPS = 24
Sample = tuple[str, np.ndarray, list[int]]  # name, (T, S, S, 3) frames, true cut positions


def sampled_corpus(videos: int, seed: int, rate: float, image_size: int) -> list[Sample]:
    """The corpus's videos as sampled, resized frames and their true cut positions."""
    from pipeline.samples import render_shots, shot_corpus
    from pipeline.video.io import resize_frames
    from pipeline.video.sampling import sampled_frame_indices
    from pipeline.video.shots import cut_positions

    out = []
    for name, shots in shot_corpus(videos=videos, seed=seed).items():
        frames, cuts = render_shots(shots, fps=NATIVE_FPS, seed=seed)
        indices = sampled_frame_indices(len(frames), NATIVE_FPS, rate)
        out.append((name, resize_frames(frames[indices], image_size), cut_positions(indices, cuts)))
    return out


def score(detect: Callable[[np.ndarray], list[int]], corpus: list[Sample]) -> dict:
    """Corpus F1 (summed counts) and the cuts reported in the videos that have none."""
    from pipeline.video.shots import CutScore, score_cuts

    total, false_in_no_cut_videos = CutScore(0, 0, 0), 0
    for _, frames, truth in corpus:
        found = detect(frames)
        total = total + score_cuts(found, truth)
        false_in_no_cut_videos += 0 if truth else len(found)
    return {
        "f1": round(total.f1, 3),
        "precision": round(total.precision, 3),
        "recall": round(total.recall, 3),
        "cuts": total.true_positives + total.false_negatives,
        "cuts_in_pan_fade_flash_only_videos": false_in_no_cut_videos,
    }


def ms_per_frame(detect: Callable[[np.ndarray], list[int]], corpus: list[Sample], repeats: int):
    """Milliseconds per sampled frame, best of `repeats` passes over the whole corpus."""
    frames = sum(len(f) for _, f, _ in corpus)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _, f, _ in corpus:
            detect(f)
        best = min(best, time.perf_counter() - start)
    return round(best / frames * 1000, 4)


def pyscenedetect_detectors(rate: float) -> dict[str, Callable[[np.ndarray], list[int]]]:
    """PySceneDetect's detectors as cut finders over in-memory RGB samples (no file opened).

    min_scene_len counts samples here (1 = off): its default of 15 frames is 4-15 s at 1-4
    samples/s. "tuned" settings are the best F1 found over a grid on this corpus."""
    from scenedetect import FrameTimecode
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    def finder(make) -> Callable[[np.ndarray], list[int]]:
        def cuts(frames: np.ndarray) -> list[int]:
            detector, found = make(), []
            fps = float(rate)
            for i, rgb in enumerate(frames):
                bgr = np.ascontiguousarray(rgb[..., ::-1])  # OpenCV's channel order
                found += detector.process_frame(FrameTimecode(i, fps=fps), bgr)
            found += detector.post_process(FrameTimecode(len(frames) - 1, fps=fps))
            return sorted({t.frame_num for t in found})

        return cuts

    return {
        "content_default": finder(lambda: ContentDetector(min_scene_len=1)),
        "content_tuned": finder(lambda: ContentDetector(threshold=45.0, min_scene_len=2)),
        "adaptive_default": finder(lambda: AdaptiveDetector(min_scene_len=1)),
        "adaptive_tuned": finder(
            lambda: AdaptiveDetector(
                adaptive_threshold=2.0, window_width=1, min_content_val=25.0, min_scene_len=2
            )
        ),
    }


def measure(
    image_size: int = 112,
    rate: float = 2.0,
    videos: int = 12,
    seed: int = 0,
    repeats: int = 5,
    pyscenedetect: bool = False,
) -> dict:
    from pipeline.video.shots import DEFAULT_THRESHOLD, detect_cuts

    corpus = sampled_corpus(videos, seed, rate, image_size)
    result = {
        "image_size": image_size,
        "samples_per_s": rate,
        "videos": len(corpus),
        "sampled_frames": sum(len(f) for _, f, _ in corpus),
        "threshold": DEFAULT_THRESHOLD,
        "ms_per_frame": ms_per_frame(detect_cuts, corpus, repeats),
        **score(detect_cuts, corpus),
    }
    if pyscenedetect:
        try:
            detectors = pyscenedetect_detectors(rate)
        except ImportError as e:
            result["pyscenedetect"] = f"not installed ({e})"
        else:
            result["pyscenedetect"] = {
                name: {"ms_per_frame": ms_per_frame(find, corpus, 1), **score(find, corpus)}
                for name, find in detectors.items()
            }
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--rate", type=float, default=2.0, help="samples per second")
    p.add_argument("--videos", type=int, default=12, help="mixed videos besides the 3 no-cut ones")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--pyscenedetect", action="store_true")
    a = p.parse_args()
    print(
        json.dumps(
            measure(a.image_size, a.rate, a.videos, a.seed, a.repeats, a.pyscenedetect), indent=1
        )
    )


if __name__ == "__main__":
    main()
