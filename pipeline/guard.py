"""Run native decoding where a hang or a crash costs one video, never the run.

decord is a native library: a corrupt file can make it hang or take its process down. Each
guarded call runs as its own Ray task (the calling task's CPU is lent to it while it waits):
a call past its time budget is cancelled (its worker killed), a worker that dies is retried
once, and a second death is reported as an error on the video's row. Workers are recycled
after `recycle_after` calls, which bounds decord's known leaks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any


class DecodeTimeout(TimeoutError):
    """A video took longer than its time budget to open or decode."""


class DecoderCrashed(RuntimeError):
    """The process decoding a video died (native crash or out of memory), twice."""


@dataclass(frozen=True)
class GuardConfig:
    timeout_s: float = 600.0  # per guarded call (one work unit, or one header read)
    attempts: int = 2  # worker deaths tolerated before the video is an error
    recycle_after: int = 200  # calls per worker process before it is replaced

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("--decode-timeout must be > 0 seconds")
        if self.attempts < 1 or self.recycle_after < 1:
            raise ValueError("attempts and recycle_after must be >= 1")


def _call(fn: Callable, args: tuple) -> Any:
    return fn(*args)


@cache
def _remote(attempts: int, recycle_after: int):
    import ray

    return ray.remote(
        num_cpus=1, max_retries=attempts - 1, retry_exceptions=False, max_calls=recycle_after
    )(_call)


def guarded(fn: Callable, *args: Any, guard: GuardConfig, what: str) -> Any:
    """fn(*args) in a separate Ray worker with a time budget; exceptions come back unwrapped.

    Outside Ray (a one-off call in a plain process) fn runs inline."""
    import ray
    from ray.exceptions import GetTimeoutError, RayTaskError, WorkerCrashedError

    if not ray.is_initialized():
        return fn(*args)
    ref = _remote(guard.attempts, guard.recycle_after).remote(fn, args)
    try:
        return ray.get(ref, timeout=guard.timeout_s)
    except GetTimeoutError as e:
        ray.cancel(ref, force=True)
        raise DecodeTimeout(
            f"{what} took longer than {guard.timeout_s:g} s; "
            "raise --decode-timeout if the video is just long"
        ) from e
    except WorkerCrashedError as e:
        raise DecoderCrashed(
            f"{what}: the decoding process died {guard.attempts} times "
            "(native crash or out of memory)"
        ) from e
    except RayTaskError as e:
        cause = e.cause if isinstance(e.cause, BaseException) else None
        if cause is None:
            raise
        raise cause from None
