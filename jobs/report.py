"""Rebuild the report of a past run: report.html, its PNG figures and metrics.prom.

  python jobs/report.py OUTPUT_URI [--run-id ID]      an index run (default: the latest committed)
  python jobs/report.py --training TRAIN_OUTPUT_URI   a training run (jobs/train.py --output)

Prints the report's URI. Exit codes: 0 success, 2 bad usage or input (no such output, unknown
run id), 1 an unexpected failure. Errors are one line on stderr; REELAY_DEBUG=1 adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
PROG = "reelay report"


class UsageError(Exception):
    """argparse's complaint, raised instead of printing usage and exiting."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message + SystemExit
        raise UsageError(f"{message} (see --help)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(
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
    try:
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
            return _fail(redact(" ".join(str(e).split())), EXIT_USAGE)
        print(redact(uri), flush=True)
    except UsageError as e:
        return _fail(str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as e:  # never a traceback for the user; REELAY_DEBUG=1 shows it
        if os.environ.get("REELAY_DEBUG"):
            raise
        from pipeline.storage import redact

        return _fail(f"unexpected {type(e).__name__}: {redact(' '.join(str(e).split()))}", 1)
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
