"""The benchmark harness: `python -m benchmarks.run [--quick] [--only NAME[,NAME]] [--repeats N]`.

Every figure is a ratio of contenders measured side by side in this run: each contender is a
fresh process (benchmarks/contenders/), contenders of a suite run interleaved (A B A B ...), and a
ratio is the median over rounds of the ratio within a round. Results go to
bench_out/results.json, bench_out/benchmarks.png and the generated part of docs/benchmarks.md
(with copies docs/benchmarks.json and docs/benchmarks.png).

Suites (default: all but `knobs`):
  limit   ours vs the hand-written multiprocessing pool (and naive) on the main corpus
  decode  the job's plan+decode on Ray Data (model = identity) vs a standalone decode loop
  model   the job's inference actors vs a standalone inference_mode loop
  sparse  one frame every 4 s: decoded frames per kept frame, ours vs naive
  memory  peak RSS of the process tree on a long 720p video, two lengths, ours and naive
  knobs   ours with other --batch-size / --cpus-per-actor / --max-actors
  scale   ours, pool and naive on the main corpus and on one 3x larger: the marginal rate
          (extra frames / extra seconds) leaves fixed start-up costs out
  incremental  a full --incremental run over many small videos, then the nightly no-op rerun
          over the same folder (nothing new): its cost as a fraction of the full run
  encoders  the CLIP image tower's frames/s beside ResNet-18's
  ann     nearest neighbours among 1,000,000 clip embeddings: exact, one HNSW graph, ten merged
  shots   shot-cut detection: milliseconds per sampled frame, and cut F1 on generated shots
  audio   a clip's sound (read, resampled, log-mel) in milliseconds, beside its frames' decode
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import report, seeks
from benchmarks.contenders.common import Workload
from benchmarks.corpora import Corpus, CorpusSpec, ensure_corpus
from benchmarks.procs import REPO, psutil, run_contender
from benchmarks.summary import SUITE_ORDER, merge, summarize

SUITES = SUITE_ORDER  # every suite, in the order results list them
DEFAULT_SUITES = (
    "limit",
    "decode",
    "model",
    "sparse",
    "memory",
    "scale",
    "incremental",
    "encoders",
    "ann",
    "shots",
    "audio",
)


@dataclass(frozen=True)
class Profile:
    main: CorpusSpec
    sparse: CorpusSpec
    long_short: CorpusSpec
    long_long: CorpusSpec
    repeats: int
    model_clips: int
    many: CorpusSpec = CorpusSpec("many", count=400, seconds=2, width=320, height=180)
    scale_factor: int = 3
    scale_repeats: int = 2
    sparse_fps: float = 0.25
    timeout_s: float = 600
    rss_cap_gib: float = 16


FULL = Profile(
    main=CorpusSpec("main", count=60, seconds=10),
    sparse=CorpusSpec("sparse", count=8, seconds=120, keyframe_interval=45),
    long_short=CorpusSpec("long", 1, 60, 1280, 720, keyframe_interval=60, preset="ultrafast"),
    long_long=CorpusSpec("long", 1, 900, 1280, 720, keyframe_interval=60, preset="ultrafast"),
    repeats=3,
    model_clips=96,
)
QUICK = Profile(
    main=CorpusSpec("main", count=8, seconds=10),
    sparse=CorpusSpec("sparse", count=2, seconds=64, keyframe_interval=45),
    long_short=CorpusSpec("long", 1, 15, 1280, 720, keyframe_interval=60, preset="ultrafast"),
    long_long=CorpusSpec("long", 1, 45, 1280, 720, keyframe_interval=60, preset="ultrafast"),
    repeats=1,
    model_clips=12,
    many=CorpusSpec("many", count=40, seconds=2, width=320, height=180),
    timeout_s=300,
)

# The job's knobs for "ours" (docs/benchmarks.md, "Which knobs matter"). Defaults of jobs/index.py
# except where a measured knob setting is better on this machine.
OURS_KNOBS: dict[str, str] = {}
# Not in the sweep: `--cpus-per-actor 2` on 2 cores hangs (the actor holds both CPUs and the
# decode tasks never start), and `--unit-frames` changes nothing on 10 s videos
# (20 sampled frames: one unit per video whatever the value). See docs/benchmarks.md.
KNOB_VARIANTS: dict[str, dict[str, str]] = {
    "defaults: batch 8, 1 actor x 1 CPU, 2 torch threads, tasks of 0.5 CPU": {},
    "tasks of 1 CPU, actor at normal priority": {"--cpus-per-task": "1"},
    "1 torch thread (the CPU Ray reserves)": {"--torch-threads": "1"},
    "2 actors x 0.5 CPU": {"--cpus-per-actor": "0.5", "--max-actors": "2"},
    "2 actors x 1 CPU": {"--max-actors": "2"},
    "batch 16": {"--batch-size": "16"},
}


def log(msg: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {msg}", flush=True)


class Bench:
    def __init__(self, out: Path, profile: Profile, quick: bool) -> None:
        self.out, self.profile, self.quick = out, profile, quick
        self.workload = Workload()
        self.runs: list[dict] = []
        self.counter = 0

    # -- running contenders -------------------------------------------------------------
    def run(self, suite: str, name: str, module: str, args: list[str], **extra) -> dict:
        self.counter += 1
        tag = f"{self.counter:03d}-{suite}-{name}"
        tag = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in tag)
        load_start = round(os.getloadavg()[0], 2)
        rec = run_contender(
            module,
            args,
            timeout_s=extra.pop("timeout_s", self.profile.timeout_s),
            log_path=self.out / "logs" / f"{tag}.log",
            rss_cap_bytes=extra.pop("rss_cap_bytes", None),
        )
        rec |= {
            "suite": suite,
            "name": name,
            "load_avg_1m_start": load_start,
            "load_avg_1m_end": round(os.getloadavg()[0], 2),
        }
        rec |= extra
        if rec.get("frames") and rec.get("wall_s"):
            rec["fps_wall"] = round(rec["frames"] / rec["wall_s"], 2)
        if rec.get("frames") and rec.get("seconds"):
            rec["fps_work"] = round(rec["frames"] / rec["seconds"], 2)
        if rec.get("frames") and rec.get("cpu_s"):
            rec["cpu_ms_per_frame"] = round(1000 * rec["cpu_s"] / rec["frames"], 1)
        self.runs.append(rec)
        log(
            f"  {suite}/{name}: {rec['status']}; frames {rec.get('frames')}, "
            f"wall {rec['wall_s']} s, work {rec.get('seconds')} s, CPU {rec.get('cpu_s')} s, "
            f"tree peak RSS {rec['tree_peak_rss_mb']:.0f} MiB (PSS {rec['tree_peak_pss_mb']:.0f})"
        )
        return rec

    def scratch(self, name: str) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        path = self.out / "scratch" / f"{self.counter + 1:03d}-{safe}"
        if path.exists():
            shutil.rmtree(path)
        return str(path)

    def ours(self, suite: str, corpus: Corpus, knobs: dict[str, str] | None = None,
             name: str = "ours", workload: Workload | None = None, output: str | None = None,
             job_flags: tuple[str, ...] = (), **extra) -> dict:  # fmt: skip
        w = workload or self.workload
        flags = [x for kv in {**OURS_KNOBS, **(knobs or {})}.items() for x in kv]
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        stats = self.out / "logs" / f"{self.counter + 1:03d}-{suite}-{safe}.stats.txt"
        args = ["--input", corpus.root.as_posix(), "--output", output or self.scratch(name),
                *w.job_flags(), *flags, *job_flags, "--stats", str(stats)]  # fmt: skip
        return self.run(suite, name, "benchmarks.contenders.ours", args,
                        stats=str(stats), **extra)  # fmt: skip

    def pool(self, suite: str, corpus: Corpus, name: str = "pool", **extra) -> dict:
        args = ["--input", str(corpus.root), "--output", self.scratch(name),
                *self.workload.job_flags()]  # fmt: skip
        return self.run(suite, name, "benchmarks.contenders.pool", args, **extra)

    def naive(self, suite: str, corpus: Corpus, workload: Workload | None = None,
              name: str = "naive", **extra) -> dict:  # fmt: skip
        w = workload or self.workload
        args = ["--input", str(corpus.root), "--output", self.scratch(name),
                "--native-fps", str(corpus.spec.fps), *w.job_flags()]  # fmt: skip
        return self.run(suite, name, "benchmarks.contenders.naive", args, **extra)

    def corpus(self, spec: CorpusSpec) -> Corpus:
        return ensure_corpus(spec, self.out / "corpora", log=log)

    # -- suites -------------------------------------------------------------------------
    def rounds(self, suite: str, contenders: dict, repeats: int | None = None) -> None:
        repeats = repeats or self.profile.repeats
        for r in range(repeats):
            log(f"{suite}: round {r + 1}/{repeats}")
            order = list(contenders.items())
            if r % 2:  # alternate who goes first: load drift hits both sides alike
                order.reverse()
            for _, fn in order:
                fn(r)

    def suite_limit(self) -> None:
        c = self.corpus(self.profile.main)
        self.rounds(
            "limit",
            {
                "ours": lambda r: self.ours("limit", c, round=r),
                "pool": lambda r: self.pool("limit", c, round=r),
                "naive": lambda r: self.naive("limit", c, round=r),
            },
        )

    def suite_decode(self) -> None:
        c = self.corpus(self.profile.main)
        w = self.workload
        flags = w.job_flags()
        self.rounds(
            "decode",
            {
                "decode_ray": lambda r: self.run(
                    "decode", "decode_ray", "benchmarks.contenders.decode_ray",
                    ["--input", str(c.root), *flags,
                     "--stats", str(self.out / "logs" / f"decode_ray-{r}.stats.txt")],
                    round=r,
                ),
                "decode_loop": lambda r: self.run(
                    "decode", "decode_loop", "benchmarks.contenders.decode_loop",
                    ["--input", str(c.root), *flags], round=r,
                ),
            },
        )  # fmt: skip

    def suite_model(self) -> None:
        from pipeline.config import InferConfig

        flags = self.workload.job_flags()
        n = str(self.profile.model_clips)
        cpa = float(OURS_KNOBS.get("--cpus-per-actor", InferConfig.cpus_per_actor))
        actors = OURS_KNOBS.get("--max-actors")
        # the job's own sizing rule (pipeline/ray_env.py) for this machine's cores
        n_actors = int(actors) if actors else max(1, int((os.cpu_count() or 1) // (2 * cpa)))
        ray_args = ["--clips", n, "--cpus-per-actor", f"{cpa:g}", *flags]
        if actors:
            ray_args += ["--max-actors", actors]
        # the job's torch threads per actor (pipeline/ray_env.py: twice the reserved CPUs)
        threads = OURS_KNOBS.get("--torch-threads", str(2 * max(1, int(cpa))))
        loop_args = ["--clips", n, "--processes", str(n_actors),
                     "--threads", threads, *flags]  # fmt: skip
        self.rounds(
            "model",
            {
                "model_ray": lambda r: self.run(
                    "model", "model_ray", "benchmarks.contenders.model_ray", ray_args, round=r
                ),
                "model_loop": lambda r: self.run(
                    "model", "model_loop", "benchmarks.contenders.model_loop", loop_args, round=r
                ),
            },
        )

    def suite_encoders(self) -> dict:
        """The CLIP image tower's frames/s at 224 px beside ResNet-18's (benchmarks/encoders.py)."""
        from benchmarks import encoders

        return encoders.measure(seconds=3.0 if self.quick else 10.0)

    def suite_ann(self) -> dict:
        """Nearest-neighbour search at a million clip embeddings (benchmarks/ann.py)."""
        from benchmarks import ann

        return ann.measure(
            rows=50_000 if self.quick else 1_000_000, queries=200 if self.quick else 1000
        )

    def suite_shots(self) -> dict:
        """Shot-cut detection's cost per sampled frame and its F1 (benchmarks/shots.py)."""
        from benchmarks import shots

        return shots.measure(videos=4 if self.quick else 12)

    def suite_audio(self) -> dict:
        """A clip's sound against its frames, in milliseconds per clip (benchmarks/audio.py)."""
        from benchmarks import audio

        return audio.measure(seconds=30.0 if self.quick else 60.0, repeats=2 if self.quick else 3)

    def suite_sparse(self) -> dict:
        c = self.corpus(self.profile.sparse)
        w = replace(self.workload, fps=self.profile.sparse_fps)
        self.rounds(
            "sparse",
            {
                "ours": lambda r: self.ours("sparse", c, workload=w, round=r),
                "naive": lambda r: self.naive("sparse", c, workload=w, round=r),
            },
        )
        main = self.corpus(self.profile.main)
        return {
            "sparse": seeks.analyse(c.paths[0], w.fps, w.clip_frames, w.image_size),
            "main": seeks.analyse(main.paths[0], self.workload.fps, w.clip_frames, w.image_size),
        }

    def suite_memory(self) -> None:
        cap = int(self.profile.rss_cap_gib * 2**30)
        for spec in (self.profile.long_short, self.profile.long_long):
            c = self.corpus(spec)
            minutes = round(spec.seconds / 60, 2)
            self.ours("memory", c, minutes=minutes, rss_cap_bytes=cap)
            self.naive("memory", c, minutes=minutes, rss_cap_bytes=cap)

    def suite_scale(self) -> None:
        small = self.corpus(self.profile.main)
        spec = self.profile.main
        big = self.corpus(replace(spec, count=spec.count * self.profile.scale_factor))
        repeats = min(self.profile.repeats, self.profile.scale_repeats)
        for r in range(repeats):
            log(f"scale: round {r + 1}/{repeats}")
            for c, size in ((small, "small"), (big, "big")):
                self.ours("scale", c, name=f"ours-{size}", round=r, videos=c.spec.count)
                self.pool("scale", c, name=f"pool-{size}", round=r, videos=c.spec.count)
                self.naive("scale", c, name=f"naive-{size}", round=r, videos=c.spec.count)

    def suite_incremental(self) -> None:
        c = self.corpus(self.profile.many)
        repeats = min(self.profile.repeats, 2)
        for r in range(repeats):
            log(f"incremental: round {r + 1}/{repeats}")
            out = self.scratch("incremental")  # one output: the rerun reads the first's ledger
            for name in ("full", "noop"):
                self.ours("incremental", c, name=name, output=out, job_flags=("--incremental",),
                          round=r, videos=c.spec.count)  # fmt: skip

    def suite_knobs(self) -> None:
        c = self.corpus(self.profile.main)
        for r in range(self.profile.repeats):
            log(f"knobs: round {r + 1}/{self.profile.repeats}")
            for label, knobs in KNOB_VARIANTS.items():
                self.ours("knobs", c, knobs=knobs, name=label, round=r, knob_flags=knobs)


def machine_info() -> dict:
    import ray
    import torch

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "torch": torch.__version__,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="small corpora, one round (~3 min)")
    p.add_argument("--only", help=f"comma-separated suites of: {', '.join(SUITES)}")
    p.add_argument("--repeats", type=int, help="rounds per suite (default 3, quick 1)")
    p.add_argument("--out", type=Path, default=REPO / "bench_out")
    p.add_argument(
        "--no-docs",
        action="store_true",
        help="do not update docs/benchmarks.{md,png} (a --quick run never does)",
    )
    args = p.parse_args(argv)
    suites = DEFAULT_SUITES if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(suites) - set(SUITES)
    if unknown:
        p.error(f"unknown suite(s) {sorted(unknown)}; known: {', '.join(SUITES)}")
    profile = QUICK if args.quick else FULL
    if args.repeats:
        profile = replace(profile, repeats=args.repeats)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.out, profile, args.quick)
    t0 = time.perf_counter()
    results: dict = {
        "profile": "quick" if args.quick else "full",
        "suites": list(suites),
        "machine": machine_info(),
        "workload": asdict(bench.workload),
        "ours_knobs": OURS_KNOBS,
        "repeats": profile.repeats,
    }
    results["measured"] = {
        s: {"date": results["machine"]["date"],
            "load_avg_at_start": results["machine"]["load_avg_at_start"],
            "repeats": profile.repeats}
        for s in suites
    }  # fmt: skip
    log(f"suites {', '.join(suites)}; profile {results['profile']}; "
        f"load average {results['machine']['load_avg_at_start']}")  # fmt: skip
    extra: dict = {}
    for suite in suites:
        log(f"suite {suite}")
        out = getattr(bench, f"suite_{suite}")()
        if out:
            extra[suite] = out
    corpora = {}
    for spec in (profile.main, profile.sparse, profile.long_short, profile.long_long):
        root = args.out / "corpora" / spec.key
        if (root / "corpus.json").exists():
            corpora[spec.key] = bench.corpus(spec).info() | {
                "generate_s": json.loads((root / "corpus.json").read_text()).get("generate_s")
            }
    results |= {
        "corpora": corpora,
        "corpus_roles": {
            "main": profile.main.key, "sparse": profile.sparse.key,
            "long_short": profile.long_short.key, "long_long": profile.long_long.key,
        },
        "seeks": extra.get("sparse"),
        "encoders": extra.get("encoders"),
        "ann": extra.get("ann"),
        "shots": extra.get("shots"),
        "audio": extra.get("audio"),
        "runs": bench.runs,
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip
    results["summary"] = summarize(results)
    path = args.out / "results.json"
    if path.exists() and not args.quick:  # keep what earlier runs measured in other suites
        old = json.loads(path.read_text())
        if old.get("profile") == results["profile"] and set(old.get("suites", [])) - set(suites):
            results = merge(old, results)
            results["summary"] = summarize(results)
    path.write_text(json.dumps(results, indent=1, default=str))
    png = report.plot(results, args.out / "benchmarks.png")
    if not (args.no_docs or args.quick):
        shutil.copy(png, REPO / "docs" / "benchmarks.png")
        shutil.copy(path, REPO / "docs" / "benchmarks.json")  # every run behind the figures
        report.write_markdown(results, REPO / "docs" / "benchmarks.md")
    print(report.table(results))
    log(f"done in {results['elapsed_s']:.0f} s: {path}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
