"""Benchmark results -> ratios and per-suite figures (the summary `benchmarks/report.py` turns
into docs/benchmarks.md's generated section and a PNG).

A ratio is computed within each round (contenders of a round ran back to back) and the median
over rounds is reported with the range. Two measures of every contender:
- end to end: frames / wall time of the whole process (interpreter, imports, Ray start-up,
  everything a user waits for);
- work: frames / the contender's own work time, after interpreter and Ray start-up (for the job:
  the sum of its stage timings except `list` and `start`, which hold the listing, the model's
  build and Ray's start-up).
And a third, for a machine that others share: CPU efficiency, the baseline's CPU seconds (user +
sys over its whole process tree) per frame over ours. It does not see idle cores, but neither
does it move much when other jobs take CPU away.
"""

from __future__ import annotations

import statistics
from pathlib import Path

SUITE_ORDER = (
    "limit",
    "decode",
    "model",
    "sparse",
    "memory",
    "knobs",
    "scale",
    "incremental",
    "encoders",
    "ann",
    "shots",
    "audio",
)
GOALS = {
    "limit": 0.85,
    "naive": 1.5,
    "sparse": 3.0,
    "model": 0.9,
    "decode": 0.85,
}
COMPARISONS = (
    # key, suite, numerator, denominator, label
    ("limit", "limit", "ours", "pool", "ours / hand-written pool (the limit)"),
    ("naive", "limit", "ours", "naive", "ours / naive Ray Data pipeline"),
    ("decode", "decode", "decode_ray", "decode_loop", "decode stage / standalone decode loop"),
    ("model", "model", "model_ray", "model_loop", "model stage / standalone inference loop"),
    ("sparse", "sparse", "ours", "naive", "ours / naive, sparse sampling (0.25 fps)"),
)


def _ok(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r.get("status") == "ok" and r.get("frames")]


def _by_round(runs: list[dict], suite: str, name: str, with_frames: bool = True) -> dict[int, dict]:
    """Successful runs of one contender by round (`with_frames=False`: also runs of 0 frames)."""
    ok = _ok(runs) if with_frames else [r for r in runs if r.get("status") == "ok"]
    return {r.get("round", 0): r for r in ok if r["suite"] == suite and r["name"] == name}


def _stat(values: list[float]) -> dict | None:
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def ratio(runs: list[dict], suite: str, num: str, den: str) -> dict:
    a, b = _by_round(runs, suite, num), _by_round(runs, suite, den)
    rounds = sorted(set(a) & set(b))
    out = {}
    for measure in ("fps_wall", "fps_work"):
        vals = [a[r][measure] / b[r][measure] for r in rounds
                if a[r].get(measure) and b[r].get(measure)]  # fmt: skip
        out[measure] = _stat(vals)
    m = "cpu_ms_per_frame"
    out["cpu"] = _stat([b[r][m] / a[r][m] for r in rounds if a[r].get(m) and b[r].get(m)])
    # steady state: one item's time inside the stage (a decode task, an inference batch, from
    # ds.stats) against the same item in the standalone loop; start-up costs left out
    m = "per_item_s"
    out["steady"] = _stat([b[r][m] / a[r][m] for r in rounds if a[r].get(m) and b[r].get(m)])
    return out


def contender_medians(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if r["suite"] in ("memory", "scale", "incremental"):
            continue
        groups.setdefault((r["suite"], r["name"]), []).append(r)
    rows = []
    for (suite, name), rs in groups.items():
        ok = _ok(rs)

        def med(key, ok=ok):
            vals = [r[key] for r in ok if r.get(key) is not None]
            return round(statistics.median(vals), 2) if vals else None

        rows.append(
            {
                "suite": suite,
                "name": name,
                "runs": len(rs),
                "ok": len(ok),
                "failures": sorted({r["status"] for r in rs if r["status"] != "ok"}),
                "frames": med("frames"),
                "wall_s": med("wall_s"),
                "work_s": med("seconds"),
                "fps_wall": med("fps_wall"),
                "fps_work": med("fps_work"),
                "cpu_s": med("cpu_s"),
                "cpu_ms_per_frame": med("cpu_ms_per_frame"),
                "tree_peak_rss_mb": med("tree_peak_rss_mb"),
                "tree_peak_pss_mb": med("tree_peak_pss_mb"),
                "processes": med("tree_peak_processes"),
            }
        )
    return rows


def stage_timings(runs: list[dict], suite: str = "limit") -> dict | None:
    ours = [r for r in _ok(runs) if r["suite"] == suite and r["name"] == "ours"]
    if not ours:
        return None
    stages = list(ours[0].get("timings_s", {}))
    med = {s: round(statistics.median(r["timings_s"].get(s, 0) for r in ours), 2) for s in stages}
    wall = statistics.median(r["wall_s"] for r in ours)
    med["process start/exit (not in the run record)"] = round(wall - sum(med.values()), 2)
    return {"stages_s": med, "wall_s": round(wall, 2), "stats_file": ours[-1].get("stats")}


def stats_highlights(path: str | None) -> list[str]:
    """The per-operator lines of a Ray Data ds.stats() text."""
    if not path or not Path(path).exists():
        return []
    keep = ("Operator ", "* Remote wall time", "* Remote cpu time", "* UDF time",
            "* Output size bytes per block", "* Peak heap memory usage", "Dataset throughput",
            "* Ray Data throughput")  # fmt: skip
    lines = []
    for line in Path(path).read_text().splitlines():
        s = line.strip()
        if s.startswith(keep) and "Estimated" not in s:
            lines.append(line.rstrip())
    return lines


def executions(runs: list[dict], suite: str = "limit") -> list[dict]:
    """Ray Data executions the job started (ours contender), median seconds by call site."""
    ours = [r for r in _ok(runs) if r["suite"] == suite and r["name"] == "ours"]
    sites: dict[tuple, list[float]] = {}
    for r in ours:
        seen: dict[tuple, float] = {}
        for e in r.get("executions", []):
            key = (e["caller"], e["method"])
            seen[key] = seen.get(key, 0.0) + e["seconds"]
        for key, v in seen.items():
            sites.setdefault(key, []).append(v)
    return [
        {"caller": c, "method": m, "seconds": round(statistics.median(v), 2), "n": len(v)}
        for (c, m), v in sites.items()
    ]


def memory_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for r in runs:
        if r["suite"] != "memory":
            continue
        rows.append(
            {
                "name": r["name"],
                "minutes": r.get("minutes"),
                "status": r["status"],
                "frames": r.get("frames"),
                "wall_s": r["wall_s"],
                "tree_peak_rss_mb": r["tree_peak_rss_mb"],
                "tree_peak_pss_mb": r["tree_peak_pss_mb"],
                "peak_single_rss_mb": r["tree_peak_single_rss_mb"],
                "processes": r["tree_peak_processes"],
                "pss_by_role_mb": r.get("tree_peak_pss_by_role_mb") or {},
            }
        )
    return sorted(rows, key=lambda x: (x["name"], x["minutes"] or 0))


def knob_rows(runs: list[dict]) -> list[dict]:
    ks = [r for r in runs if r["suite"] == "knobs"]
    if not ks:
        return []
    base = _by_round(runs, "knobs", next(iter(dict.fromkeys(r["name"] for r in ks))))
    rows = []
    for name in dict.fromkeys(r["name"] for r in ks):
        mine = _by_round(runs, "knobs", name)
        rel = [mine[k]["fps_wall"] / base[k]["fps_wall"] for k in mine if k in base]
        relw = [mine[k]["fps_work"] / base[k]["fps_work"] for k in mine if k in base]
        failures = sorted({r["status"] for r in ks if r["name"] == name and r["status"] != "ok"})
        rows.append(
            {
                "knobs": name,
                "fps_wall": _stat([m["fps_wall"] for m in mine.values()]),
                "fps_work": _stat([m["fps_work"] for m in mine.values()]),
                "vs_defaults_wall": _stat(rel),
                "vs_defaults_work": _stat(relw),
                "decode_infer_s": _stat([m["timings_s"]["decode_infer"] for m in mine.values()]),
                "cpu_ms_per_frame": _stat(
                    [m["cpu_ms_per_frame"] for m in mine.values() if m.get("cpu_ms_per_frame")]
                ),
                "failures": failures,
            }
        )
    return rows


def scale_rows(runs: list[dict]) -> dict:
    """Marginal rates: (frames_big - frames_small) / (wall_big - wall_small), per contender and
    round, and ours' marginal rate over each baseline's."""
    sc = [r for r in _ok(runs) if r["suite"] == "scale"]
    if not sc:
        return {}
    rates: dict[str, dict[int, float]] = {}
    walls: dict[str, dict] = {}
    for who in ("ours", "pool", "naive"):
        small = _by_round(runs, "scale", f"{who}-small")
        big = _by_round(runs, "scale", f"{who}-big")
        for rnd in set(small) & set(big):
            dt = big[rnd]["wall_s"] - small[rnd]["wall_s"]
            if dt > 0:
                rates.setdefault(who, {})[rnd] = (big[rnd]["frames"] - small[rnd]["frames"]) / dt
        walls[who] = {
            "small_wall_s": _stat([r["wall_s"] for r in small.values()]),
            "big_wall_s": _stat([r["wall_s"] for r in big.values()]),
            "small_videos": next((r.get("videos") for r in small.values()), None),
            "big_videos": next((r.get("videos") for r in big.values()), None),
        }
    out = {"rates": {w: _stat(list(v.values())) for w, v in rates.items()}, "walls": walls}
    for base in ("pool", "naive"):
        common = set(rates.get("ours", {})) & set(rates.get(base, {}))
        out[f"ours_vs_{base}"] = _stat([rates["ours"][k] / rates[base][k] for k in common])
    return out


def incremental_rows(runs: list[dict]) -> dict:
    """The no-op nightly rerun against the full run it follows: wall time, per round."""

    # the no-op run indexes no frames
    full = _by_round(runs, "incremental", "full", with_frames=False)
    noop = _by_round(runs, "incremental", "noop", with_frames=False)
    rounds = sorted(set(full) & set(noop))
    if not rounds:
        return {}
    return {
        "videos": full[rounds[0]].get("videos"),
        "full_wall_s": _stat([full[r]["wall_s"] for r in rounds]),
        "noop_wall_s": _stat([noop[r]["wall_s"] for r in rounds]),
        "noop_over_full": _stat([noop[r]["wall_s"] / full[r]["wall_s"] for r in rounds]),
        "noop_cpu_s": _stat([noop[r]["cpu_s"] for r in rounds if noop[r].get("cpu_s")]),
        "noop_processed": [noop[r].get("counts", {}).get("processed") for r in rounds],
        "noop_skipped": [noop[r].get("counts", {}).get("skipped") for r in rounds],
        "noop_timings_s": noop[rounds[-1]].get("timings_s"),
    }


def summarize(results: dict) -> dict:
    runs = results["runs"]
    ratios = {}
    for key, suite, num, den, label in COMPARISONS:
        r = ratio(runs, suite, num, den)
        if not any(r.values()):
            continue
        goal = GOALS[key]
        ratios[key] = {
            "label": label,
            "goal": goal,
            **r,
            "met_wall": bool(r["fps_wall"] and r["fps_wall"]["median"] >= goal),
            "met_work": bool(r["fps_work"] and r["fps_work"]["median"] >= goal),
        }
    stages = stage_timings(runs)
    return {
        "ratios": ratios,
        "contenders": contender_medians(runs),
        "stages": stages,
        "stats_highlights": stats_highlights(stages and stages["stats_file"]),
        "executions": executions(runs),
        "memory": memory_rows(runs),
        "knobs": knob_rows(runs),
        "scale": scale_rows(runs),
        "incremental": incremental_rows(runs),
    }


def merge(old: dict, new: dict) -> dict:
    """The new run's result, plus the runs of the suites it did not run from an earlier result
    (e.g. `--only knobs` after `make bench`, or `make bench` after `--only knobs`)."""
    ran = set(new["suites"])
    merged = dict(new)
    merged["runs"] = [r for r in old.get("runs", []) if r["suite"] not in ran] + new["runs"]
    merged["suites"] = [s for s in SUITE_ORDER if s in ran | set(old.get("suites", []))]
    merged["corpora"] = {**old.get("corpora", {}), **new.get("corpora", {})}
    merged["measured"] = {**old.get("measured", {}), **new.get("measured", {})}
    merged["seeks"] = new.get("seeks") or old.get("seeks")
    merged["encoders"] = new.get("encoders") or old.get("encoders")
    merged["ann"] = new.get("ann") or old.get("ann")
    merged["shots"] = new.get("shots") or old.get("shots")
    merged["audio"] = new.get("audio") or old.get("audio")
    for key in ("corpus_roles",):
        merged[key] = {**old.get(key, {}), **new.get(key, {})}
    return merged
