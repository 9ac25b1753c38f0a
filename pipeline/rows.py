"""Row helpers shared by the stages: the error fields every in-flight row carries."""

from __future__ import annotations

from pipeline.storage import redact

ERROR_FIELDS = ("error_stage", "error_type", "error_message")
MAX_MESSAGE = 2000


def no_error() -> dict:
    return dict.fromkeys(ERROR_FIELDS, "")


def error_fields(stage: str, exc: BaseException) -> dict:
    """An exception as row fields: stage, type and a one-line, credential-free message."""
    message = " ".join(str(exc).split()) or repr(exc)
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and str(cause) and str(cause) not in message:
        message += f" (caused by {type(cause).__name__}: {' '.join(str(cause).split())})"
    return {
        "error_stage": stage,
        "error_type": type(exc).__name__,
        "error_message": redact(message)[:MAX_MESSAGE],
    }
