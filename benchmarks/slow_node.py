"""A slow node must not become the run's tail: `python benchmarks/slow_node.py [--delay 6]`.

On a private cluster of raylets on this machine (tests/ray_cluster.py: a head with no CPUs and
worker nodes of 2 CPUs each), the same corpus is indexed three times, each on a fresh cluster:

  one_fast    one worker node
  two_fast    two worker nodes
  fast_slow   one worker node and one whose decode units each sleep --delay seconds more
              (REELAY_DELAY_AT, seen by that node's processes only)

The goal is a slow node that never becomes the tail: fast_slow <= one_fast + delay x (units
per decode task), here one unit per task (--unit-frames equals a video's sampled frames), i.e.
the run waits on the slow node for at most the tasks it started last. Prints the
decode_infer seconds of each and whether the goal held (docs/operations.md, "Scale", has the
figures and why it does not hold today).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.samples import VideoSpec, write_video  # noqa: E402
from tests.job_process import run_index_job  # noqa: E402
from tests.ray_cluster import RayCluster  # noqa: E402

FLAGS = ["--fps", "4", "--clip-frames", "4", "--unit-frames", "16", "--image-size", "32"]


def index_on(corpus: Path, out: Path, slow: dict | None, second: bool, cpus: int) -> dict:
    cluster = RayCluster()
    try:
        cluster.start(workers=1, head_cpus=0, worker_cpus=cpus)
        if second:
            cluster.add_worker(env=slow, cpus=cpus)
        code, log = run_index_job(
            ["--input", str(corpus), "--output", str(out), *FLAGS],
            {"RAY_ADDRESS": cluster.address},
            out.parent / f"{out.name}.log",
            timeout_s=900,
        )
    finally:
        cluster.stop()
    if code != 0:
        raise SystemExit(f"run exited {code}:\n{log[-3000:]}")
    (record,) = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    units = {n["node_id"][:8]: n["decoded_units"] for n in record["progress"]["nodes"]}
    return {"decode_infer_s": record["timings_s"]["decode_infer"], "units_per_node": units}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=32)
    p.add_argument("--delay", type=float, default=6.0, help="extra seconds per slow unit")
    p.add_argument("--node-cpus", type=int, default=2, help="logical CPUs per worker node")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="reelay-slow-node-"))
    for i in range(args.videos):  # 4 s at --fps 4: 16 sampled frames, one unit, one task
        spec = VideoSpec(width=64, height=48, fps=10, seconds=4.0, seed=i)
        write_video(spec, root / "in" / f"v{i:03d}.mp4")
    slow = {"REELAY_DELAY_AT": "decode", "REELAY_DELAY_S": str(args.delay)}
    results = {
        "one_fast": index_on(
            root / "in", root / "one_fast", None, second=False, cpus=args.node_cpus
        ),
        "two_fast": index_on(
            root / "in", root / "two_fast", None, second=True, cpus=args.node_cpus
        ),
        "fast_slow": index_on(
            root / "in", root / "fast_slow", slow, second=True, cpus=args.node_cpus
        ),
    }
    bound = results["one_fast"]["decode_infer_s"] + args.delay
    results["bound_s"] = round(bound, 2)
    results["within_bound"] = results["fast_slow"]["decode_infer_s"] <= bound
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
