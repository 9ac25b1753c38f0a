"""The run report end to end: two real committed index runs of the sample corpus plus one
broken file (module fixture), then reports built from them, locally and on S3 (moto), and the
training report from a training output folder written with the training job's own helpers."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from pipeline import storage
from pipeline.config import IndexConfig, SamplingConfig
from pipeline.report import ReportError, build_run_report, build_training_report, stats
from pipeline.report.plots import STAGE_COLORS
from pipeline.report.runs import load_run

ROOT = Path(__file__).resolve().parents[2]
BROKEN = "broken.mp4"
RUN_PNGS = {
    "throughput.png",
    "stages.png",
    "volume.png",
    "failures.png",
    "labels.png",
    "slowest.png",
    "trend.png",
}
TRAIN_PNGS = {
    "report_curves.png",
    "report_confusion.png",
    "report_recall.png",
    "report_epoch_time.png",
}
PROM_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
PROM_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def index(ray_local, sample_corpus, tmp_path_factory):
    """Two committed runs of the same input: 6 good videos and one that is not a video."""
    from pipeline.index import run

    base = tmp_path_factory.mktemp("report")
    corpus = base / "corpus"
    shutil.copytree(sample_corpus, corpus, ignore=shutil.ignore_patterns("*.csv"))
    (corpus / BROKEN).write_bytes(b"this is not an mp4 file" * 10)
    cfg = IndexConfig(
        input_uri=str(corpus),
        output_uri=str(base / "index"),
        sampling=SamplingConfig(fps=2, clip_frames=4, image_size=32),
    )
    first, second = run(cfg), run(cfg)
    return Path(cfg.output_uri), first.run_id, second.run_id


@pytest.fixture(scope="module")
def report(index):
    """The latest run's report (built once): its folder."""
    out, _, second = index
    uri = build_run_report(str(out))
    assert uri == storage.join(str(out), "_runs", second, "report.html")
    return Path(uri).parent


def load_job():
    spec = importlib.util.spec_from_file_location("reelay_jobs_report", ROOT / "jobs/report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PageParser(HTMLParser):
    """The parts of a report page the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.tags: list[str] = []
        self.status_text = ""
        self.tile_labels: list[str] = []
        self._in: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs)
        self._in.append(attrs.get("class") or "")

    def handle_endtag(self, tag):
        if self._in:
            self._in.pop()

    def handle_data(self, data):
        self.text.append(data)
        if "word" in self._in:
            self.status_text += data.strip()
        if self._in and self._in[-1] == "label":
            self.tile_labels.append(data.strip())


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def assert_not_blank(png: bytes) -> None:
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG" and image.width >= 300 and image.height >= 150
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 8.0
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


def colour_pixels(png: bytes, hex_colour: str, tolerance: int = 12) -> int:
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)
    return int((np.abs(pixels - target).max(axis=-1) <= tolerance).sum())


def parse_prom(text: str) -> list[tuple[str, dict, float]]:
    samples, typed = [], set()
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        m = PROM_LINE.match(line)
        assert m, f"not name{{labels}} value: {line!r}"
        labels = {k: v for k, v in PROM_LABEL.findall(m["labels"])}
        assert m["name"] in typed, f"{m['name']} has no # TYPE line before it"
        samples.append((m["name"], labels, float(m["value"])))
    return samples


# ---------------------------------------------------------------------------------- run report


def test_report_folder_has_the_page_figures_and_metrics(report) -> None:
    names = {p.name for p in report.iterdir()}
    assert names == RUN_PNGS | {"report.html", "metrics.prom"}


def test_html_parses_with_headline_and_one_data_image_per_figure(index, report) -> None:
    out, _, second = index
    page = parse_page(report / "report.html")
    record = json.loads((out / "_runs" / f"{second}.json").read_text())
    assert page.status_text == "OK"
    for label in (
        "videos ok",
        "videos partial",
        "videos failed",
        "videos skipped",
        "clips",
        "frames/s",
        "duration",
        "model_version",
    ):
        assert label in page.tile_labels
    text = " ".join(page.text)
    assert record["model_version"] in text and second in text
    assert "Frame readers" in text  # each reader of the run record, with its work units
    for reader, units in record["progress"]["readers"].items():
        assert reader in text and f"{units:,}" in text
    assert len(page.images) == len(RUN_PNGS)
    embedded = set()
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        embedded.add(base64.b64decode(img["src"].split(",", 1)[1]))
        assert img.get("alt")
    assert embedded == {(report / name).read_bytes() for name in RUN_PNGS}
    # self-contained: no scripts, no stylesheets or images fetched from anywhere
    html = (report / "report.html").read_text()
    assert "script" not in page.tags and "link" not in page.tags
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_every_png_opens_and_is_not_blank(report) -> None:
    for name in sorted(RUN_PNGS):
        assert_not_blank((report / name).read_bytes())


def test_metrics_prom_parses_and_matches_the_record(index, report) -> None:
    out, _, second = index
    record = json.loads((out / "_runs" / f"{second}.json").read_text())
    samples = parse_prom((report / "metrics.prom").read_text())
    assert all(labels["run_id"] == second for _, labels, _ in samples)
    value = {name: v for name, labels, v in samples if "stage" not in labels}
    c = record["counts"]
    assert value["reelay_videos_processed"] == c["processed"] == 6
    assert value["reelay_videos_failed"] == c["failed"] == 1
    assert value["reelay_clips_total"] == c["clips"] == 12
    assert value["reelay_frames_per_second"] == pytest.approx(record["throughput"]["frames_per_s"])
    assert value["reelay_run_timestamp_seconds"] == pytest.approx(
        stats.parse_time(record["ended_at"]).timestamp()
    )
    stages = {labels["stage"]: v for name, labels, v in samples if name == "reelay_stage_seconds"}
    assert stages == pytest.approx(record["timings_s"])
    assert {"list", "start", "decode_infer", "write"} <= set(stages)


def test_failures_figure_and_table_show_the_broken_file(index, report) -> None:
    out, _, second = index
    inputs = load_run(str(out), second)
    failures = stats.failure_counts(inputs.errors)
    assert [(f.stage, f.videos) for f in failures] == [("plan", 1)]
    png = (report / "failures.png").read_bytes()
    assert colour_pixels(png, STAGE_COLORS["plan"]) > 2000  # a bar, not the "no failures" box
    assert colour_pixels((report / "volume.png").read_bytes(), "#c62828") > 500  # failed bar
    page = " ".join(parse_page(report / "report.html").text)
    assert BROKEN in page and failures[0].error_type in page


def test_trend_compares_the_runs_up_to_the_reported_one(index) -> None:
    out, first, second = index
    history = load_run(str(out), None).history
    assert [p.run_id for p in stats.trend(history, second)] == [first, second]
    assert [p.run_id for p in stats.trend(history, first)] == [first]
    assert stats.trend(history, second)[-1].videos_ok == 6


def test_labels_come_from_the_runs_videos_rows(index) -> None:
    out, _, second = index
    labels = stats.label_stats(load_run(str(out), second).videos)
    assert sum(s.videos for s in labels) == 6  # the broken video has no label
    assert all(0.0 < s.min_score <= s.mean_score <= s.max_score <= 1.0 for s in labels)


def test_report_of_an_index_on_s3(index, s3_bucket) -> None:
    """The committed index copied to S3 (its records name local paths: re-rooted on read)."""
    out, first, _ = index
    fs = storage.filesystem("s3://x")
    fs.put(str(out), f"{s3_bucket}/index", recursive=True)
    uri = build_run_report(f"s3://{s3_bucket}/index", first)
    assert uri == f"s3://{s3_bucket}/index/_runs/{first}/report.html"
    html = fs.cat_file(f"{s3_bucket}/index/_runs/{first}/report.html").decode()
    assert html.count("data:image/png;base64,") == len(RUN_PNGS) and BROKEN in html
    prom = fs.cat_file(f"{s3_bucket}/index/_runs/{first}/metrics.prom").decode()
    assert ("reelay_videos_failed", {"run_id": first}, 1.0) in parse_prom(prom)
    for name in RUN_PNGS:
        assert_not_blank(fs.cat_file(f"{s3_bucket}/index/_runs/{first}/{name}"))


def test_cli_rebuilds_any_run_and_fails_cleanly(index, tmp_path, capsys) -> None:
    out, first, second = index
    job = load_job()
    assert job.main([str(out), "--run-id", first]) == 0
    assert capsys.readouterr().out.strip() == str(out / "_runs" / first / "report.html")
    assert (out / "_runs" / first / "metrics.prom").exists()
    assert job.main([str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{second}/report.html")

    for argv, says in (
        ([str(out), "--run-id", "no-such-run"], "no-such-run"),
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(tmp_path)], "no committed run"),
        (["--training", str(tmp_path)], "no training run"),
        ([], "OUTPUT_URI"),
        (["gs://bucket/index"], "unsupported URI scheme"),
    ):
        assert job.main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = [line for line in captured.err.splitlines() if "INFO" not in line]
        assert len(lines) == 1 and lines[0].startswith("reelay report: error:"), captured.err
        assert says in lines[0] and "Traceback" not in captured.err


# ---------------------------------------------------------------------------------- training


def write_training_output(folder: Path, epochs: int = 3) -> Path:
    """A training output as pipeline/train/job.py writes it (same helpers and file names)."""
    from pipeline.config import StorageConfig
    from pipeline.train.metrics import Evaluation
    from pipeline.train.output import TrainOutput

    out = TrainOutput(str(folder), StorageConfig())
    labels = ["left", "right", "up"]
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    evaluation = Evaluation.from_predictions(y, np.array([0, 0, 1, 1, 1, 1, 2, 2, 0, 2]), labels)
    history = [
        {
            "epoch": e,
            "train_loss": 1.2 / e,
            "train_accuracy": 0.4 + 0.15 * e,
            "train_clips": 24,
            "epoch_time_s": 3.0 + e,
            "val_loss": 1.3 / e + 0.1,
            "val_accuracy": 0.3 + 0.15 * e,
            "val_clips": 10,
            "val_time_s": 0.5,
        }
        for e in range(1, epochs + 1)
    ]
    out.write_table("metrics.parquet", pa.Table.from_pylist(history))
    out.write_table("per_class.parquet", evaluation.per_class_table())
    out.write_table("confusion_matrix.parquet", evaluation.confusion_table())
    out.write_json("evaluation.json", {"best_epoch": epochs, **evaluation.to_dict()})
    out.write_json(
        "train_run.json",
        {
            "status": "done",
            "started_at": "2026-01-01T00:00:00+00:00",
            "ended_at": "2026-01-01T00:03:00+00:00",
            "labels": labels,
            "best_epoch": epochs,
            "best_val_accuracy": evaluation.accuracy,
            "epochs": epochs,
            "model_version": "abc123",
            "counts": {"train_clips": 24, "val_clips": 10, "skipped_videos": 0},
        },
    )
    return folder


def test_training_file_names_match_the_training_job() -> None:
    from pipeline.report import training_inputs as mine
    from pipeline.train import output as theirs

    for name in ("RUN_RECORD", "METRICS", "EVALUATION", "PER_CLASS", "CONFUSION", "SKIPPED"):
        assert getattr(mine, name) == getattr(theirs, name)


def test_training_report(tmp_path) -> None:
    folder = write_training_output(tmp_path / "train")
    uri = build_training_report(str(folder))
    assert uri == storage.join(str(folder), "report.html")
    page = parse_page(folder / "report.html")
    assert page.status_text == "DONE"
    assert "val accuracy" in page.tile_labels and "80.0%" in " ".join(page.text)
    assert len(page.images) == len(TRAIN_PNGS)
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.images)
    for name in TRAIN_PNGS:
        assert_not_blank((folder / name).read_bytes())


@pytest.mark.parametrize(
    "keep, figures",
    [
        ({"metrics.parquet"}, {"report_curves.png", "report_epoch_time.png"}),
        ({"evaluation.json"}, {"report_confusion.png", "report_recall.png"}),
        (
            {"confusion_matrix.parquet", "train_run.json"},
            {"report_confusion.png", "report_recall.png"},
        ),
    ],
)
def test_training_report_without_optional_files(tmp_path, keep, figures) -> None:
    folder = write_training_output(tmp_path / "train", epochs=1)
    for p in folder.iterdir():
        if p.name not in keep:
            p.unlink()
    build_training_report(str(folder))
    assert {p.name for p in folder.glob("*.png")} == figures
    page = parse_page(folder / "report.html")
    assert len(page.images) == len(figures)
    if "train_run.json" not in keep:
        assert page.status_text == "UNKNOWN"


def test_training_report_errors(tmp_path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        build_training_report(str(tmp_path / "nothing"))
    with pytest.raises(ReportError, match="no training run"):
        build_training_report(str(tmp_path))
