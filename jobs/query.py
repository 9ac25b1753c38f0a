"""Query an index: SQL over its committed runs, or nearest neighbours by embedding.

  python jobs/query.py OUTPUT_URI "SQL" [--format table|csv|json|parquet] [--out FILE]
  python jobs/query.py OUTPUT_URI --similar VIDEO_URI [-k 10] [--level video|clip]
  python jobs/query.py OUTPUT_URI --similar-to-file PATH [-k 10] [--level video|clip]
  python jobs/query.py OUTPUT_URI --text "a dog running on a beach" [-k 10] [--level video|clip]

SQL sees the views videos, clips, errors and runs (docs/queries.md has ready-made questions).
Exit codes: 0 success, 2 bad usage or input (no index there, SQL error, unknown video),
1 an unexpected failure. Errors are one line on stderr; REELAY_DEBUG=1 adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from pipeline.cli import OneLineParser, UsageError, run_tool  # noqa: E402

PROG = "reelay query"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(
        prog="jobs/query.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("output", metavar="OUTPUT_URI", help="the index: --output of jobs/index.py")
    p.add_argument("sql", nargs="?", metavar="SQL", help="SQL to run ('-' reads it from stdin)")
    p.add_argument("--similar", metavar="VIDEO_URI", help="neighbours of an indexed video")
    p.add_argument(
        "--similar-to-file",
        metavar="PATH",
        help="neighbours of a new video file, embedded with the index's own model",
    )
    p.add_argument(
        "--text",
        help="videos or clips nearest a text, through the index's own CLIP model (an index "
        "made with --encoder clip --temporal mean)",
    )
    p.add_argument(
        "--duplicates",
        action="store_true",
        help="groups of videos that are copies of each other (re-encoded, resized, trimmed, "
        "cropped, colour-shifted): group_id, video_uri, similarity to the group's first",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.7,
        help="--duplicates: share of the shorter video's frames found in the other (default 0.7)",
    )
    p.add_argument("-k", type=int, default=10, help="neighbours to return (default 10)")
    p.add_argument("--level", default="video", help="video or clip (default video)")
    p.add_argument(
        "--clip-index", type=int, default=0, help="the query clip at --level clip (default 0)"
    )
    p.add_argument("--exclude-self", action="store_true", help="leave the query video out")
    p.add_argument(
        "--by",
        default="both",
        help="--similar ranks by: both (the whole embedding; default), picture or sound (its "
        "part, for a model made with --modalities video,audio; searched exactly)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda, for --similar-to-file")
    p.add_argument(
        "--search",
        default="auto",
        help="exact, ann (each run's HNSW graphs) or auto: exact up to 100,000 rows (default)",
    )
    p.add_argument("--format", default="table", help="table, csv, json or parquet")
    p.add_argument("--out", metavar="FILE", help="write here (path or s3://) instead of stdout")
    p.add_argument("--storage-options", help="JSON of extra s3fs options")
    return p.parse_args(argv)


def build_query(args: argparse.Namespace):
    from pipeline.config import ConfigError, StorageConfig
    from pipeline.query import DuplicatesQuery, SimilarQuery, SqlQuery, TextQuery
    from pipeline.query.config import OutputConfig

    storage = StorageConfig.from_json(args.storage_options)
    output = OutputConfig(args.format, args.out)
    similar = args.similar is not None or args.similar_to_file is not None
    asked = [similar, args.sql is not None, args.text is not None, args.duplicates]
    if sum(asked) > 1:
        raise ConfigError("give one of SQL, --similar/--similar-to-file, --text and --duplicates")
    if args.duplicates:
        query = DuplicatesQuery(args.output, threshold=args.threshold, storage=storage)
    elif args.text is not None or similar:  # nearest neighbours: of a text, a video or a file
        common = dict(
            output_uri=args.output, k=args.k, level=args.level, search=args.search, storage=storage
        )
        if args.text is not None:
            query = TextQuery(text=args.text, **common)
        else:
            query = SimilarQuery(
                video_uri=args.similar,
                file=args.similar_to_file,
                clip_index=args.clip_index,
                exclude_self=args.exclude_self,
                device=args.device,
                by=args.by,
                **common,
            )
    elif args.sql is not None:
        sql = sys.stdin.read() if args.sql == "-" else args.sql
        query = SqlQuery(output_uri=args.output, sql=sql, storage=storage)
    else:
        raise ConfigError('give SQL, e.g. "SELECT * FROM videos LIMIT 5", or --similar VIDEO_URI')
    return query, output


def main(argv: list[str] | None = None) -> int:
    return run_tool(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    import duckdb

    from pipeline.config import ConfigError
    from pipeline.query import QueryError, run
    from pipeline.query.errors import one_line
    from pipeline.query.formats import write

    try:
        query, output = build_query(args)
        write(run(query), output.format, output.out, query.storage)
    except (ConfigError, QueryError, duckdb.Error) as e:
        raise UsageError(one_line(str(e))) from e
    return 0


if __name__ == "__main__":
    sys.exit(main())
