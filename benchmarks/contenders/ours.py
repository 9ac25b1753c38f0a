"""Contender "ours": the index job itself, `jobs/index.py`, in this fresh process.

`python -m benchmarks.contenders.ours --input DIR --output DIR [job flags...]`: runs the job's
own `main()` with the given flags, then reads the run record `_runs/<run_id>.json` for the frame
count and the stage timings, and prints one JSON line. With `--stats FILE`, it also saves Ray
Data's `ds.stats()` of the decode+infer dataset (captured by wrapping `index_stream`; the
job's code is not changed).

It also times every Ray Data execution the job starts (materialize, take_all, count, unique,
write_parquet, ...: each one schedules tasks and waits for them) and reports it with the line of
pipeline/ that called it, in `executions`: where the stage time goes. It wraps them only once
the job has started Ray, so that this process imports Ray Data where the job does.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
from pathlib import Path

from benchmarks.contenders.common import emit, self_sampler

REPO = Path(__file__).resolve().parents[2]


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


EXECUTING = ("materialize", "take_all", "take", "count", "unique", "write_parquet", "schema",
             "sum", "to_pandas", "iter_rows", "iter_batches")  # fmt: skip


def time_executions(calls: list[dict]) -> None:
    """Wrap Dataset methods that execute a plan; record (caller in pipeline/, method, seconds)."""
    import ray.data

    depth = [0]

    def wrap(name, original):
        def timed(self, *args, **kwargs):
            if depth[0]:
                return original(self, *args, **kwargs)
            frame, caller = sys._getframe(1), "?"
            while frame is not None:
                path = frame.f_code.co_filename.replace("\\", "/")
                if "/pipeline/" in path:
                    caller = f"{path.rsplit('/pipeline/', 1)[1]}:{frame.f_lineno} "
                    caller += frame.f_code.co_name
                    break
                frame = frame.f_back
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                depth[0] -= 1
                seconds = round(time.perf_counter() - t0, 3)
                calls.append({"caller": caller, "method": name, "seconds": seconds})

        return timed

    for name in EXECUTING:
        original = getattr(ray.data.Dataset, name, None)
        if original is not None:
            setattr(ray.data.Dataset, name, wrap(name, original))


def time_executions_after_start(calls: list[dict]) -> None:
    """`time_executions`, from the moment the job has started Ray. The job imports Ray Data
    when it starts Ray (`pipeline.ray_env.ensure_ray`); importing it here, before the job's
    `main`, would time an import that `python jobs/index.py` pays elsewhere. Every execution
    comes after Ray's start."""
    from pipeline.index import job as index

    start_ray = index.ensure_ray

    def ensure_ray(*args, **kwargs):
        start_ray(*args, **kwargs)
        index.ensure_ray = start_ray  # once: later calls find Ray started
        time_executions(calls)

    index.ensure_ray = ensure_ray


def main(argv: list[str]) -> int:
    stats_path = _flag(argv, "--stats")
    if stats_path:
        i = argv.index("--stats")
        argv = argv[:i] + argv[i + 2 :]
    output = Path(_flag(argv, "--output"))
    sampler = self_sampler()
    job = runpy.run_path(str(REPO / "jobs" / "index.py"), run_name="reelay_job")

    captured = {}
    if stats_path:
        from pipeline.index import job as index

        original = index.index_stream

        def index_stream(*args, **kwargs):
            result = original(*args, **kwargs)
            captured.update(ds=result[0].dataset)  # Staged: the executed pipeline
            return result

        index.index_stream = index_stream

    executions: list[dict] = []
    time_executions_after_start(executions)
    t0 = time.perf_counter()
    code = job["main"](argv)
    seconds = time.perf_counter() - t0
    if code != 0:
        print(f"job exited with {code}", file=sys.stderr)
        return code
    operators = {}
    if stats_path and captured.get("ds") is not None:
        from benchmarks.contenders.common import op_remote_wall

        stats = captured["ds"].stats()
        Path(stats_path).write_text(stats)
        operators = {op: op_remote_wall(stats, op) for op in ("DecodeUnit", "ClipInferencer")}
    records = sorted((output / "_runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
    record = json.loads(records[-1].read_text())
    timings = record["timings_s"]
    counts = record["counts"]
    # `list` and `start` hold the listing, the model's build and Ray's start-up; the work time
    # leaves them out, like the other contenders' start-up.
    work = sum(v for k, v in timings.items() if k not in ("list", "start"))
    emit(
        sampler,
        contender="ours",
        frames=counts["sampled_frames"],
        seconds=round(work, 3),
        job_s=round(seconds, 3),
        timings_s=timings,
        counts=counts,
        run_id=record["run_id"],
        cluster=record.get("cluster"),
        inference=record.get("inference"),
        executions=executions,
        operators=operators,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))  # as `python jobs/index.py` ends
