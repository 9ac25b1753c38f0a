"""How the query and report tools fail: one line on stderr and an exit code, never a traceback.

Exit codes: 0 success, 2 bad usage or input, 1 an unexpected failure (REELAY_DEBUG=1 re-raises
it with its traceback), 130 interrupted. Messages pass through `storage.redact`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad flags or input: the message says what to do; exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str):
        raise UsageError(f"{message} (see --help)")


def _redacted(message: str) -> str:
    message = " ".join(message.split())
    try:
        from pipeline.storage import redact

        return redact(message)
    except Exception:  # noqa: BLE001 (the import itself may be what failed)
        return "(message withheld: it could not be checked for credentials)"


def run_tool(prog: str, body: Callable[[], int], usage_errors: tuple[type, ...] = ()) -> int:
    """Run a tool's body; `usage_errors` (and UsageError) become exit 2 with their message."""

    def fail(message: str, code: int) -> int:
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        return code

    try:
        return body()
    except (UsageError, *usage_errors) as e:
        return fail(_redacted(str(e)), EXIT_USAGE)
    except BrokenPipeError:  # `| head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except Exception as e:  # never a traceback for the user; REELAY_DEBUG=1 shows it
        if os.environ.get("REELAY_DEBUG"):
            raise
        return fail(f"unexpected {type(e).__name__}: {_redacted(str(e))}", EXIT_FAILURE)
