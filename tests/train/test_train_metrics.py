"""Classification metrics, the confusion figure, and the job's flags -> TrainConfig."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.config import ConfigError
from pipeline.report.training_figures import confusion_png
from pipeline.train.metrics import Evaluation
from tests.job_process import modules_imported_by


def test_evaluation_counts_and_rates() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 2])
    ev = Evaluation.from_predictions(y_true, y_pred, ["a", "b", "c"])
    assert ev.confusion.tolist() == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert ev.accuracy == pytest.approx(4 / 6)
    assert ev.precision.tolist() == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert ev.recall.tolist() == pytest.approx([2 / 3, 1 / 2, 1.0])
    table = ev.confusion_table()
    assert table.num_rows == 9 and sum(table["count"].to_pylist()) == 6
    assert ev.per_class_table().column("support").to_pylist() == [3, 2, 1]


def test_class_never_predicted_has_zero_precision_not_nan() -> None:
    ev = Evaluation.from_predictions(np.array([0, 1]), np.array([0, 0]), ["a", "b"])
    assert ev.precision.tolist() == [0.5, 0.0]
    assert ev.to_dict()["per_class"]["b"]["f1"] == 0.0


def test_confusion_png_is_an_image_with_content() -> None:
    png = confusion_png(["left", "right"], np.array([[3, 1], [0, 4]]), 0.875)
    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 10  # not blank


def test_job_flags_build_a_train_config() -> None:
    from jobs.train import build_config, parse_args

    cfg = build_config(
        parse_args(
            ["--data", "d.csv", "--output", "out", "--temporal", "attention", "--num-workers", "2"]
        )
    )
    assert cfg.model.temporal == "attention" and cfg.workers.num_workers == 2
    assert cfg.sampling.image_size == 64 and cfg.optim.epochs == 10
    with pytest.raises(ConfigError, match="--epochs"):
        build_config(parse_args(["--data", "d.csv", "--output", "o", "--epochs", "0"]))
    with pytest.raises(ConfigError, match="--temporal 'nope' is unknown"):
        build_config(parse_args(["--data", "d.csv", "--output", "o", "--temporal", "nope"]))


def test_train_job_modules_leave_torch_to_the_ray_start_up() -> None:
    """Parsing the flags and importing the training job must not import torch: a bad flag
    fails at once, and Ray's plan and decode workers that unpickle the job's functions never
    pay for torch."""
    code = (
        "import jobs.train as job; import pipeline.train.job; "
        "job.build_config(job.parse_args(['--data', 'd.csv', '--output', 'o']))"
    )
    assert modules_imported_by(code, ("torch", "torchvision", "ray.train")) == []
