"""`make demo`: make a labeled sample corpus, train a small model on it (Ray Train), index the
corpus with that model on an embedded local Ray, and show the result.

The demo shows the jobs' own progress lines and tables: Ray's workers (and the decoders in
them) write to Ray's log files (/tmp/ray/session_latest/logs), not to the terminal, and Ray
Data's per-dataset INFO lines are left out."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from pipeline.cli import configure_logging  # noqa: E402
from pipeline.config import IndexConfig, SamplingConfig  # noqa: E402
from pipeline.samples import (  # noqa: E402
    VideoSpec,
    encode_video,
    make_sample_corpus,
    render_frames,
    shot_corpus,
    sound_corpus,
    write_copy,
    write_shots,
)

SHOW_SQL = """\
SELECT regexp_extract(video_uri, '[^/]+$') AS video, status, num_frames, fps, num_clips,
       label, round(score, 3) AS score
FROM read_parquet('{out}/videos/**/*.parquet', hive_partitioning = true)
ORDER BY video"""
# Held-out videos only: the folder name is the true label (<split>/<label>/<file>).
VAL_ACCURACY_SQL = """\
SELECT count(*) AS val_videos,
       round(avg(CASE WHEN label = regexp_extract(video_uri, '/val/([^/]+)/', 1)
                 THEN 1 ELSE 0 END), 3) AS accuracy
FROM read_parquet('{out}/videos/**/*.parquet', hive_partitioning = true)
WHERE video_uri LIKE '%/val/%' AND status = 'ok'"""
SHOTS_SQL = """\
SELECT regexp_extract(video_uri, '[^/]+$') AS video, shot_index, round(start_s, 2) AS start_s,
       round(end_s, 2) AS end_s, num_clips
FROM read_parquet('{out}/shots/**/*.parquet', hive_partitioning = true)
WHERE video_uri LIKE '%/more/%'
ORDER BY video, shot_index"""
SOUND_SQL = """\
SELECT regexp_extract(video_uri, '[^/]+$') AS video, has_audio, label, round(score, 3) AS score,
       (SELECT round(avg(audio_rms), 3) FROM read_parquet('{out}/clips/**/*.parquet') c
        WHERE c.video_uri = v.video_uri) AS audio_rms
FROM read_parquet('{out}/videos/**/*.parquet', hive_partitioning = true) v
ORDER BY video"""
DEMO_EPOCHS = 6  # val accuracy reaches 1.0 by epoch 3 here
SOUND_EPOCHS = 8
# The one training worker takes up to this many of Ray's CPUs (its torch threads): the clips
# are decoded before training starts, so nothing else needs them (2 CPUs instead of 1 on 2
# cores: the demo's 6 epochs in 69 s instead of 86)
DEMO_TRAIN_CPUS = 4


def make_corpus(root: Path) -> Path:
    """Sample videos of shapes moving right or left, plus one broken file to show errors/, and
    under more/ two videos of several shots (cuts, a dissolve, a pan, a flash) and a trimmed,
    resized copy of one of them, to show shots/ and --duplicates."""
    spec = VideoSpec(width=160, height=96, fps=10, seconds=4.0)
    make_sample_corpus(root, per_class=16, val_per_class=4, spec=spec)
    (root / "broken.mp4").write_bytes(b"this is not a video")
    shots = shot_corpus(videos=2, seed=1)
    for name in ("mixed_0", "mixed_1"):
        write_shots(shots[name], root / "more" / f"{name}.mp4", width=160, height=96, fps=12)
    write_copy(root / "more" / "mixed_0.mp4", root / "more" / "mixed_0_copy.mp4")
    return root


def show(out: Path) -> None:
    import duckdb

    con = duckdb.connect()
    print("\nRows per table:")
    for table in ("videos", "clips", "errors", "shots"):
        n = con.execute(
            f"SELECT count(*) FROM read_parquet('{out}/{table}/**/*.parquet')"
        ).fetchall()[0]
        print(f"  {table:7s} {n[0]}")
    print("\nVideos (a few):")
    con.sql(SHOW_SQL.format(out=out) + " LIMIT 8").show(max_width=120)
    print("Predicted label vs the true label (folder name) of the held-out videos:")
    con.sql(VAL_ACCURACY_SQL.format(out=out)).show()
    print("Errors:")
    con.sql(
        f"SELECT regexp_extract(video_uri, '[^/]+$') AS video, stage, error_type, message "
        f"FROM read_parquet('{out}/errors/**/*.parquet')"
    ).show(max_width=120)
    print("Shots of the videos under more/ (--clips shots: clips never cross a cut):")
    con.sql(SHOTS_SQL.format(out=out)).show(max_width=120)


def show_copies(out: Path) -> None:
    """The groups of copies (jobs/query.py --duplicates): the first is the copy under more/."""
    from pipeline.query import DuplicatesQuery, run

    groups = run(DuplicatesQuery(str(out))).to_pylist()
    first = [g for g in groups if g["group_id"] == 0]
    print("Copies (jobs/query.py --duplicates), the first group:")
    for g in first:
        print(f"  group {g['group_id']}  {Path(g['video_uri']).name:22s} {g['similarity']:.3f}")
    others = {g["group_id"] for g in groups} - {0}
    if others:
        print(
            f"  and {len(others)} groups among the class videos: one square on one path over a "
            "flat tint, they differ by a shift and a colour, which is what a copy looks like"
        )


def sound_demo(work: Path, train_cpus: float) -> None:
    """A model of picture and sound on labels that need both (a red or blue shape, a rising or
    falling sweep), then new videos indexed with it: one without sound."""
    from pipeline import index
    from pipeline.config import SamplingConfig
    from pipeline.models import ModelConfig
    from pipeline.train import OptimConfig, TrainConfig, WorkersConfig
    from pipeline.train import run as train

    both = "video,audio"
    sound_corpus(work / "train", "both", 8)
    new = work / "new"
    sound_corpus(new, "both", 1, seed=7)
    encode_video(render_frames(VideoSpec(width=64, height=64, fps=8, seconds=8.0)),
                 new / "mute.mp4", fps=8)  # fmt: skip
    trained = train(
        TrainConfig(
            data_uri=str(work / "train"),
            output_uri=str(work / "model"),
            sampling=SamplingConfig(fps=2, clip_frames=8, image_size=32, modalities=both),
            model=ModelConfig(hidden_dim=32, modalities=both),
            optim=OptimConfig(epochs=SOUND_EPOCHS, batch_size=8),
            workers=WorkersConfig(cpus_per_worker=train_cpus),
        )
    )
    print(trained.line())
    out = work / "index"
    summary = index.run(
        IndexConfig(input_uri=str(new), output_uri=str(out), checkpoint_uri=str(work / "model"))
    )
    print(summary.line())
    import duckdb

    print("New videos: the label needs the picture (red/blue) and the sound (rising/falling):")
    duckdb.sql(SOUND_SQL.format(out=out)).show(max_width=120)


def next_steps(out: Path, run_id: str, first_video: str) -> str:
    """The commands a user would type next, with this demo's paths."""
    query = f".venv/bin/python jobs/query.py {shlex.quote(str(out))}"
    sound = out.parent / "sound"
    labels = (
        "SELECT label, count(*) AS videos, round(avg(score), 3) AS score FROM videos GROUP BY label"
    )
    return "\n".join(
        [
            "Next:",
            f"  {query} {shlex.quote(labels)}",
            f"  {query} --similar {shlex.quote(first_video)} -k 5",
            f'  {query} "SELECT * FROM errors" --format json',
            f"  {query} --duplicates",
            f"  .venv/bin/python jobs/query.py {shlex.quote(str(sound / 'index'))} --similar "
            f"{shlex.quote(str(sound / 'new' / 'red_rising' / 'red_rising_0.mp4'))} --by sound",
            f'  {query} "SELECT * FROM shots"',
            f"  open {out / '_runs' / run_id / 'report.html'}   # the run's report",
            "  more questions: docs/queries.md; real models: README, 'Pretrained models'",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workdir", default="demo_out", help="where the corpus and index go")
    args = p.parse_args(argv)
    configure_logging()
    quiet_ray()
    from pipeline import index
    from pipeline.ray_env import cluster_cpus
    from pipeline.train import OptimConfig, TrainConfig, WorkersConfig, start_ray
    from pipeline.train import run as train

    work = Path(args.workdir).absolute()
    shutil.rmtree(work, ignore_errors=True)
    corpus = make_corpus(work / "corpus")
    model_dir, out = work / "model", work / "index"
    print(f"Sample corpus: {corpus}\n\n1. Train (Ray Train): small_cnn + GRU, right vs left")
    start_ray()  # as the training run starts it: cluster_cpus needs Ray
    train_cpus = float(min(cluster_cpus(), DEMO_TRAIN_CPUS))
    trained = train(
        TrainConfig(
            data_uri=str(corpus / "manifest.csv"),  # uri,label,split of the good videos
            output_uri=str(model_dir),
            optim=OptimConfig(epochs=DEMO_EPOCHS, batch_size=8),
            sampling=SamplingConfig(fps=2, clips="shots"),  # the index follows the checkpoint
            workers=WorkersConfig(cpus_per_worker=train_cpus),
        )
    )
    print(trained.line())
    print(f"\n2. Index every file with {model_dir} (its model, labels and sampling)")
    summary = index.run(
        IndexConfig(input_uri=str(corpus), output_uri=str(out), checkpoint_uri=str(model_dir))
    )
    print("\n" + summary.line())
    show(out)
    show_copies(out)
    print("\n3. Sound (--modalities video,audio): train and index a model of picture and sound")
    sound_demo(work / "sound", train_cpus)
    first = sorted(str(p) for p in corpus.rglob("*.mp4") if p.name != "broken.mp4")[0]
    print(next_steps(out, summary.run_id, first))
    return 0


def quiet_ray() -> None:
    """A local Ray whose workers log to Ray's files only, without Ray Data's INFO lines or the
    core's native warnings on the terminal: a newcomer sees the jobs' own lines."""
    import ray
    import ray.data  # configures its logger on import: quieted after

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # the core's own lines
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ray.init(address="local", log_to_driver=False, logging_level=logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
