"""The index driver's own costs at a million videos, without a million videos.

  python benchmarks/driver_scale.py [--videos 1000000] [--runs 100] [--new 0.01] [--json F]

Writes a synthetic index whose ledger holds `--videos` videos, committed through
pipeline.index.commit.RunOutput in `--runs` runs (as nightly runs leave it), and two Parquet
manifests with an S3 Inventory's columns (`uri`, `size`, `etag`): one in which every video is
already indexed, one with `--new` of them new. Then, each in a fresh process (wall time and
peak RSS):

  noop_night   `jobs/index.py --input <manifest> --incremental` end to end: list, model,
               ledger, selection, and the commit of an empty run (Ray never starts)
  stages       list_videos, read_ledger and select_videos, timed one by one, for the no-op
               manifest and the one with new videos (the work after the listing must grow
               with the new videos, not with the corpus)
The goal (docs/operations.md, "Scale"): a no-op night under 30 s and 2 GB here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipeline import schema  # noqa: E402
from pipeline.index.commit import RunOutput  # noqa: E402
from pipeline.index.ledger import ledger_table  # noqa: E402
from pipeline.listing import VideoEntry  # noqa: E402
from pipeline.storage import NO_OPTIONS  # noqa: E402

VIDEO_ROOT = "s3://corpus/videos"  # never opened: the manifests carry size and ETag


def index_cli():
    spec = importlib.util.spec_from_file_location("index_cli", REPO / "jobs" / "index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_record(output: str, manifest: str) -> dict:
    """What a run of the CLI's default model records of it: its model_version (what the
    ledger must hold) and what a later night needs to trust that version without building
    the model (pipeline.models.source.recorded_spec)."""
    from pipeline.models.source import environment, resolve_model

    cli = index_cli()
    cfg = cli.build_config(cli.parse_args(["--input", manifest, "--output", output]))
    spec, sampling = resolve_model(cfg)
    return {
        "config": json.loads(json.dumps(cfg.to_dict())),
        "sampling": sampling.to_dict(),
        "model_version": spec.model_version,
        "labels": list(spec.labels),
        "embedding_dim": spec.embedding_dim,
        "audio_dim": spec.audio_dim,
        "environment": environment(),
    }


def uris(first: int, count: int) -> list[str]:
    return [f"{VIDEO_ROOT}/{i // 1000:04d}/v{i:07d}.mp4" for i in range(first, first + count)]


def etag(i: int) -> str:
    return f"{i * 2654435761 % 2**32:08x}{i:024x}"


def write_manifest(path: Path, first: int, count: int) -> None:
    pq.write_table(
        pa.table(
            {
                "uri": uris(first, count),
                "size": pa.array([1_000_000 + i for i in range(first, first + count)], pa.int64()),
                "etag": [etag(i) for i in range(first, first + count)],
            }
        ),
        path,
    )


def write_index(output: str, videos: int, runs: int, model: dict) -> None:
    """`videos` indexed videos in `runs` committed runs: their ledgers and run records."""
    version = model["model_version"]
    per_run = -(-videos // runs)
    for r in range(runs):
        first = r * per_run
        count = min(per_run, videos - first)
        if count <= 0:
            break
        run_id = f"20260101T000000Z-{r:06d}"
        out = RunOutput(output, run_id, "2026-01-01", NO_OPTIONS)
        entries = [
            VideoEntry(u, 1_000_000 + first + k, f"etag:{etag(first + k)}")
            for k, u in enumerate(uris(first, count))
        ]
        out.write_small_table(
            schema.LEDGER, ledger_table(entries, set(), set(), version, run_id), "ledger"
        )
        out.commit(
            {
                "run_id": run_id,
                "schema_version": schema.SCHEMA_VERSION,
                "status": "ok",
                **model,
                "counts": {"listed": count, "processed": count},
            }
        )


STAGES = """
import json, resource, sys, time
from pipeline.index.ledger import read_ledger, select_videos
from pipeline.listing import list_videos
from pipeline.storage import NO_OPTIONS
manifest, output, version = sys.argv[1:4]
t = {}
s = time.perf_counter(); listed = list_videos(manifest); t["list_s"] = time.perf_counter() - s
s = time.perf_counter(); ledger = read_ledger(output, NO_OPTIONS)
t["ledger_s"] = time.perf_counter() - s
s = time.perf_counter(); todo = select_videos(listed, ledger, version).todo
t["select_s"] = time.perf_counter() - s
t["listed"], t["new"] = len(listed), len(todo)
print(json.dumps(t))
"""

# The peak RSS of the measured process itself: VmHWM starts afresh at exec, where ru_maxrss
# would carry the forking parent's (this script's synthetic index).
PEAK_AT_EXIT = """
import atexit, json, runpy, sys
def peak():
    kib = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM"))
    print(json.dumps({"peak_rss_mib": round(int(kib) / 1024, 1)}), flush=True)
atexit.register(peak)
sys.argv = sys.argv[1:]
if sys.argv[0] == "-c":
    sys.argv = sys.argv[1:]
    exec(compile(sys.argv[0], "<stages>", "exec"), {"__name__": "__main__"})
else:
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def measure(cmd: list[str]) -> tuple[dict, float]:
    """Run `python *cmd` from the repo; (its JSON lines merged, wall s). Its peak RSS is among
    them (`PEAK_AT_EXIT`)."""
    start = time.perf_counter()
    full = [sys.executable, "-c", PEAK_AT_EXIT, *cmd]
    done = subprocess.run(full, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:2]} exited {done.returncode}:\n{done.stderr[-3000:]}")
    found: dict = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            found |= json.loads(line)
        elif line.strip():
            found["last_line"] = line.strip()
    return found, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--new", type=float, default=0.01, help="share of new videos")
    p.add_argument("--json", type=Path, help="write the results here too")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="reelay-driver-scale-"))
    output = str(root / "index")
    noop, some_new = root / "noop.parquet", root / "new.parquet"
    new = int(args.videos * args.new)

    start = time.perf_counter()
    write_manifest(noop, 0, args.videos)
    write_manifest(some_new, new, args.videos)  # drops the first `new`, adds as many
    model = model_record(output, str(noop))
    version = model["model_version"]
    write_index(output, args.videos, args.runs, model)
    print(f"synthetic index of {args.videos:,} videos in {args.runs} runs: "
          f"{time.perf_counter() - start:.0f} s ({root})", flush=True)  # fmt: skip

    results = {"videos": args.videos, "runs": args.runs, "new": new, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version()}}  # fmt: skip
    for name, manifest in (("stages_noop", noop), ("stages_new", some_new)):
        stages, wall = measure(["-c", STAGES, str(manifest), output, version])
        results[name] = stages | {"process_s": round(wall, 2)}
        print(name, json.dumps(results[name]), flush=True)
    night, wall = measure(["jobs/index.py", "--input", str(noop), "--output", output,
                           "--incremental", "--run-id", "noop-night"])  # fmt: skip
    results["noop_night"] = night | {"wall_s": round(wall, 2)}
    print("noop_night", json.dumps(results["noop_night"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
