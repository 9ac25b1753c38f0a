"""Training inputs without Ray: manifests and folders -> labeled splits; bad inputs fail fast."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from pipeline.config import StorageConfig
from pipeline.listing import InputError
from pipeline.train.inputs import list_labeled
from pipeline.train.split import stratified_split

NO_OPTIONS = StorageConfig()


def write_manifest(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in columns} for r in rows)
    return path


def read_rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


def test_stratified_split_is_seeded_and_keeps_both_sides() -> None:
    labels = ["a"] * 10 + ["b"] * 5 + ["c"]
    first = stratified_split(labels, 0.2, seed=3)
    assert first == stratified_split(labels, 0.2, seed=3)
    assert first != stratified_split(labels, 0.2, seed=4)
    val = [lab for lab, s in zip(labels, first, strict=True) if s == "val"]
    assert val.count("a") == 2 and val.count("b") == 1
    assert "c" not in val  # a single video stays in train


def test_manifest_with_split(sample_corpus: Path) -> None:
    data = list_labeled(str(sample_corpus / "manifest.csv"), NO_OPTIONS, 0.2, 0)
    assert data.labels == ("left", "right")
    assert data.split_source == "manifest"
    assert data.counts() == {"train": {"left": 2, "right": 2}, "val": {"left": 1, "right": 1}}
    assert all(Path(v.uri).is_absolute() and v.size > 0 for v in data.videos)


def test_folder_layout_with_splits(sample_corpus: Path) -> None:
    data = list_labeled(str(sample_corpus), NO_OPTIONS, 0.2, 0)
    assert data.split_source == "folders"
    assert data.counts() == {"train": {"left": 2, "right": 2}, "val": {"left": 1, "right": 1}}


def test_manifest_without_split_gets_a_seeded_stratified_split(
    sample_corpus: Path, tmp_path: Path
) -> None:
    rows = read_rows(sample_corpus / "manifest.csv")
    for r in rows:
        r["uri"] = str(sample_corpus / r["uri"])
    manifest = write_manifest(tmp_path / "m.csv", rows, ["uri", "label"])
    data = list_labeled(str(manifest), NO_OPTIONS, 0.34, seed=1)
    assert data.split_source == "seeded"
    assert data.counts() == {"train": {"left": 2, "right": 2}, "val": {"left": 1, "right": 1}}
    again = list_labeled(str(manifest), NO_OPTIONS, 0.34, seed=1)
    assert [v.split for v in again.videos] == [v.split for v in data.videos]


def test_manifest_without_label_column_fails_fast(sample_corpus: Path, tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path / "m.csv", read_rows(sample_corpus / "manifest.csv"), ["uri", "split"]
    )
    with pytest.raises(InputError, match=r"no 'label' column .*uri,label"):
        list_labeled(str(manifest), NO_OPTIONS, 0.2, 0)


def test_manifest_without_uri_column_fails_fast(tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path / "m.csv", [{"path": "a.mp4", "label": "x"}], ["path", "label"]
    )
    with pytest.raises(InputError, match="no 'uri' column"):
        list_labeled(str(manifest), NO_OPTIONS, 0.2, 0)


def test_empty_class_folder_fails_fast(sample_corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(sample_corpus, root)
    (root / "train" / "down").mkdir()
    with pytest.raises(InputError, match=r"down holds no videos \(empty class\)"):
        list_labeled(str(root), NO_OPTIONS, 0.2, 0)


def absolute_rows(sample_corpus: Path) -> list[dict]:
    """The sample corpus's manifest rows, with absolute URIs."""
    rows = read_rows(sample_corpus / "manifest.csv")
    for r in rows:
        r["uri"] = str(sample_corpus / r["uri"])
    return rows


def rename_a_val_class(rows: list[dict]) -> list[dict]:
    for r in rows:
        if r["split"] == "val" and r["label"] == "left":
            r["label"] = "sideways"
    return rows


def blank_the_first_label(rows: list[dict]) -> list[dict]:
    rows[0]["label"] = ""
    return rows


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (rename_a_val_class, r"val split has labels with no training videos.*sideways"),
        (lambda rows: [r for r in rows if r["label"] == "left"], "at least 2 classes"),
        (blank_the_first_label, "row 2: .* has no label"),
    ],
    ids=["unknown_label_in_val", "single_class", "row_without_label"],
)
def test_bad_manifest_fails_fast(sample_corpus: Path, tmp_path: Path, edit, message) -> None:
    rows = edit(absolute_rows(sample_corpus))
    manifest = write_manifest(tmp_path / "m.csv", rows, ["uri", "label", "split"])
    with pytest.raises(InputError, match=message):
        list_labeled(str(manifest), NO_OPTIONS, 0.2, 0)


def test_other_splits_are_ignored(sample_corpus: Path, tmp_path: Path) -> None:
    rows = absolute_rows(sample_corpus)
    rows[0]["split"] = "test"
    manifest = write_manifest(tmp_path / "m.csv", rows, ["uri", "label", "split"])
    data = list_labeled(str(manifest), NO_OPTIONS, 0.2, 0)
    assert data.ignored == 1 and len(data.videos) == len(rows) - 1
