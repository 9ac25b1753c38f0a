"""The index job: listed videos -> plan/decode/infer stream -> Parquet tables -> one commit.

job.py is the driver, its stages in order; stream.py the streaming Ray Data stages (plan,
decode, infer); write.py the tables into staging; commit.py makes them visible, exactly once;
ledger.py what each committed run indexed (incremental runs); progress.py the run's
bookkeeping actor and progress log.
"""

from pipeline import lazy_exports

_EXPORTS = {
    "FailureThresholdExceeded": "job",
    "RunStalled": "progress",
    "RunSummary": "job",
    "run": "job",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
