"""Rebuild the report of a past run: report.html, its PNG figures and metrics.prom.

  python jobs/report.py OUTPUT_URI [--run-id ID]      an index run (default: the latest committed)
  python jobs/report.py --training TRAIN_OUTPUT_URI   a training run (jobs/train.py --output)

Prints the report's URI. Exit codes: 0 success, 2 bad usage or input (no such output, unknown
run id), 1 an unexpected failure. Errors are one line on stderr; REELAY_DEBUG=1 adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from pipeline.cli import OneLineParser, UsageError, run_tool  # noqa: E402

PROG = "reelay report"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(
        prog="jobs/report.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("output", nargs="?", metavar="OUTPUT_URI", help="--output of jobs/index.py")
    p.add_argument("--run-id", help="the run to report (default: the latest committed run)")
    p.add_argument("--training", metavar="TRAIN_OUTPUT_URI", help="--output of jobs/train.py")
    p.add_argument("--storage-options", help="JSON of extra s3fs options")
    args = p.parse_args(argv)
    if (args.output is None) == (args.training is None):
        p.error("give OUTPUT_URI (an index) or --training TRAIN_OUTPUT_URI, not both or neither")
    if args.training is not None and args.run_id is not None:
        p.error("--run-id is for index runs; a training output holds one run")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_tool(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    from pipeline.cli import configure_logging
    from pipeline.config import ConfigError, StorageConfig
    from pipeline.report import ReportError, build_run_report, build_training_report
    from pipeline.storage import redact

    configure_logging()
    try:
        storage_cfg = StorageConfig.from_json(args.storage_options)
        if args.training is not None:
            uri = build_training_report(args.training, storage_cfg)
        else:
            uri = build_run_report(args.output, args.run_id, storage_cfg)
    except (ConfigError, ReportError) as e:
        raise UsageError(str(e)) from e
    print(redact(uri), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
