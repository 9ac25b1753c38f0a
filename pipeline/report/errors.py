"""The one exception of the report package: bad input, said in one line."""

from __future__ import annotations


class ReportError(ValueError):
    """No such output, no committed run, unknown run id, or no training run: what to do instead."""
