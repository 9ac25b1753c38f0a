"""`make demo`: make a labeled sample corpus, index it on an embedded local Ray, show the result."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from pipeline.cli import configure_logging
from pipeline.config import IndexConfig, SamplingConfig
from pipeline.samples import VideoSpec, make_sample_corpus

SHOW_SQL = """\
SELECT regexp_extract(video_uri, '[^/]+$') AS video, status, num_frames, fps, num_clips,
       label, round(score, 3) AS score
FROM read_parquet('{out}/videos/**/*.parquet', hive_partitioning = true)
ORDER BY video"""


def make_corpus(root: Path) -> Path:
    """Sample videos of shapes moving right or left, plus one broken file to show errors/."""
    spec = VideoSpec(width=160, height=96, fps=10, seconds=4.0)
    make_sample_corpus(root, per_class=6, spec=spec)
    (root / "broken.mp4").write_bytes(b"this is not a video")
    return root


def show(out: Path) -> None:
    import duckdb

    con = duckdb.connect()
    print("\nRows per table:")
    for table in ("videos", "clips", "errors"):
        n = con.execute(
            f"SELECT count(*) FROM read_parquet('{out}/{table}/**/*.parquet')"
        ).fetchall()[0]
        print(f"  {table:7s} {n[0]}")
    print("\nVideos (a few):")
    con.sql(SHOW_SQL.format(out=out) + " LIMIT 8").show(max_width=120)
    print("Errors:")
    con.sql(
        f"SELECT regexp_extract(video_uri, '[^/]+$') AS video, stage, error_type, message "
        f"FROM read_parquet('{out}/errors/**/*.parquet')"
    ).show(max_width=120)
    print(
        "Query it yourself:\n  python -c \"import duckdb; duckdb.sql('''"
        + SHOW_SQL.format(out=out).replace("\n", " ")
        + "''').show()\""
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workdir", default="demo_out", help="where the corpus and index go")
    args = p.parse_args(argv)
    configure_logging()
    from pipeline import index

    work = Path(args.workdir).absolute()
    shutil.rmtree(work, ignore_errors=True)
    corpus = make_corpus(work / "corpus")
    out = work / "index"
    print(f"Sample corpus: {corpus}")
    summary = index.run(
        IndexConfig(
            input_uri=str(corpus),
            output_uri=str(out),
            sampling=SamplingConfig(fps=5, clip_frames=8, image_size=64),
        )
    )
    print("\n" + summary.line())
    show(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
