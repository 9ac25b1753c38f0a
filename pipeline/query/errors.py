"""The one error type a query raises for bad input: its message is a single line for the user."""

from __future__ import annotations


class QueryError(ValueError):
    """Bad input to a query (no index there, unknown video, SQL error): one line, no traceback."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


def one_line(message: str) -> str:
    """Collapse a multi-line message (DuckDB's carets, hints) into one readable line."""
    parts = []
    for line in str(message).splitlines():
        text = line.strip()
        if not text:
            continue
        if text.startswith("LINE ") or set(text) <= {"^"}:
            continue  # DuckDB's source excerpt and caret: the position is in the message already
        parts.append(text)
    return "; ".join(parts) or "unknown error"
