"""Run reports: what a person (report.html + PNGs) and a machine (metrics.prom) need to know
about an index run or a training run, rebuilt from what the runs committed.

  runs              read a committed index run: record, earlier records, videos/errors rows
  stats             pure numbers from those (headline, throughput, failures, labels, trend)
  plots             matplotlib plumbing (Agg, PNG bytes, palette)
  run_figures       the index run's figures
  training_figures  the training run's figures
  html              the self-contained page (inline CSS, base64 images)
  prometheus        metrics.prom in node_exporter's textfile format
  sink              writing a report folder through pipeline.storage (local or s3://)
  run_report        build_run_report
  training          build_training_report
"""

from pipeline.report.errors import ReportError
from pipeline.report.run_report import build_run_report
from pipeline.report.training import build_training_report

__all__ = ["ReportError", "build_run_report", "build_training_report"]
