"""Stage 0 of training, list (driver): --data -> labeled videos with their train/val split.

`--data` is a manifest (CSV or Parquet with columns uri,label[,split]; relative URIs resolve
against the manifest's folder) or a folder laid out `<root>/<split>/<label>/*.mp4` (or
`<root>/<label>/*.mp4` without splits). Without splits, a seeded stratified split is drawn.
Everything wrong with the labels fails here, before any video is decoded.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from pipeline import storage
from pipeline.config import StorageConfig
from pipeline.listing import (
    MANIFEST_EXTENSIONS,
    InputError,
    VideoEntry,
    list_videos,
    read_manifest,
)
from pipeline.listing import resolve_uri as resolve_manifest_uri
from pipeline.train.split import TRAIN, VAL, check_labels, normalise_split, stratified_split

log = logging.getLogger("reelay.train")


@dataclass(frozen=True)
class LabeledVideo:
    """A listed video with its class name and split ('train' or 'val')."""

    uri: str
    size: int
    fingerprint: str
    label: str
    split: str


@dataclass(frozen=True)
class LabeledData:
    videos: tuple[LabeledVideo, ...]
    labels: tuple[str, ...]  # sorted class names; the class index is the position here
    split_source: str  # "manifest" | "folders" | "seeded"
    ignored: int = 0  # rows of other splits (e.g. 'test')

    def split(self, name: str) -> list[LabeledVideo]:
        return [v for v in self.videos if v.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {label: videos}}."""
        out: dict[str, dict[str, int]] = {}
        for v in self.videos:
            out.setdefault(v.split, {}).setdefault(v.label, 0)
            out[v.split][v.label] += 1
        return out


def is_manifest(uri: str) -> bool:
    return uri.lower().endswith(MANIFEST_EXTENSIONS)


def list_labeled(
    data_uri: str, storage_cfg: StorageConfig, val_fraction: float, seed: int
) -> LabeledData:
    """The labeled videos of `data_uri`, split and checked (InputError on any problem)."""
    where = f"--data {storage.redact(data_uri)}"
    if is_manifest(data_uri):
        rows, source = _manifest_rows(data_uri, storage_cfg), "manifest"
        entries = {e.uri: e for e in list_videos(data_uri, storage_cfg)}
    else:
        entries = {e.uri: e for e in list_videos(data_uri, storage_cfg)}
        rows, source = _folder_rows(data_uri, storage_cfg, list(entries.values())), "folders"
    ignored = sum(1 for r in rows if r[2] == "ignored")
    rows = [r for r in rows if r[2] != "ignored"]
    if rows and all(split is None for _, _, split in rows):
        splits = stratified_split([label for _, label, _ in rows], val_fraction, seed)
        rows = [(u, lab, s) for (u, lab, _), s in zip(rows, splits, strict=True)]
        source = "seeded"
    elif any(split is None for _, _, split in rows):
        raise InputError(f"{where}: some rows have a split and some do not; give all or none")
    missing = VideoEntry("", -1, "missing")  # not found: it fails at decode and is counted
    videos = tuple(
        LabeledVideo(u, entries.get(u, missing).size, entries.get(u, missing).fingerprint, lab, s)
        for u, lab, s in rows
    )
    labels = check_labels(
        [v.label for v in videos if v.split == TRAIN],
        [v.label for v in videos if v.split == VAL],
        where,
    )
    data = LabeledData(videos, tuple(labels), source, ignored)
    for label in labels:
        if not any(v.label == label for v in data.split(VAL)):
            log.warning("class %r has no validation videos", label)
    if ignored:
        log.info("ignored %d videos of splits other than train/val", ignored)
    return data


def _manifest_rows(uri: str, storage_cfg: StorageConfig) -> list[tuple[str, str, str | None]]:
    try:
        table = read_manifest(uri, storage_cfg)
    except FileNotFoundError as e:
        raise InputError(f"--data manifest {storage.redact(uri)} does not exist") from e
    missing = [c for c in ("uri", "label") if c not in table.column_names]
    if missing:
        raise InputError(
            f"manifest {storage.redact(uri)} has no {' or '.join(repr(c) for c in missing)} "
            f"column (columns: {', '.join(table.column_names)}); a training manifest needs "
            "uri,label and optionally split"
        )
    uris = table.column("uri").to_pylist()
    labels = table.column("label").to_pylist()
    splits = table.column("split").to_pylist() if "split" in table.column_names else None
    rows: list[tuple[str, str, str | None]] = []
    seen: dict[str, str] = {}
    for i, (raw, label) in enumerate(zip(uris, labels, strict=True)):
        line = i + 2 if uri.lower().endswith(".csv") else i  # CSV: header is line 1
        if raw is None or not str(raw).strip():
            raise InputError(f"manifest {storage.redact(uri)} row {line}: empty uri")
        if label is None or not str(label).strip():
            raise InputError(f"manifest {storage.redact(uri)} row {line}: {raw!r} has no label")
        video = resolve_manifest_uri(str(raw).strip(), uri)
        label = str(label).strip()
        if seen.setdefault(video, label) != label:
            raise InputError(
                f"manifest {storage.redact(uri)}: {raw!r} is listed with two labels "
                f"({seen[video]!r} and {label!r})"
            )
        split: str | None = None
        if splits is not None:
            split = normalise_split(splits[i]) if splits[i] is not None else None
            if split is None:
                split = "ignored"
        rows.append((video, label, split))
    if not rows:
        raise InputError(f"manifest {storage.redact(uri)} lists no videos")
    return rows


def _folder_rows(
    uri: str, storage_cfg: StorageConfig, entries: list[VideoEntry]
) -> list[tuple[str, str, str | None]]:
    root = storage.strip_scheme(uri).rstrip("/")
    where = f"--data {storage.redact(uri)}"
    rows = []
    depths = set()
    for e in entries:
        parts = storage.strip_scheme(e.uri)[len(root) + 1 :].split("/")
        depths.add(len(parts))
        if len(parts) == 3:
            rows.append((e.uri, parts[1], normalise_split(parts[0]) or "ignored"))
        elif len(parts) == 2:
            rows.append((e.uri, parts[0], None))
        else:
            raise InputError(
                f"{where}: {storage.redact(e.uri)} is not laid out <split>/<label>/<video> "
                "or <label>/<video> under the folder"
            )
    if len(depths) > 1:
        raise InputError(
            f"{where}: mixes <split>/<label>/<video> and <label>/<video>; use one layout"
        )
    if not rows:
        raise InputError(
            f"{where}: no videos found; expected <root>/<split>/<label>/*.mp4 "
            "(or a manifest .csv/.parquet with uri,label[,split])"
        )
    _check_empty_class_folders(uri, storage_cfg, rows, depths.pop())
    return rows


def _check_empty_class_folders(
    uri: str, storage_cfg: StorageConfig, rows: list, depth: int
) -> None:
    """A class folder without any video is an error, not a silently smaller label set."""
    fs = storage.filesystem(uri, storage_cfg)
    root = storage.strip_scheme(uri).rstrip("/")
    per_folder = Counter(storage.strip_scheme(u).rsplit("/", 1)[0] for u, _, _ in rows)
    parents = [root] if depth == 2 else sorted({p.rsplit("/", 1)[0] for p in per_folder})
    for parent in parents:
        for info in fs.ls(parent, detail=True):
            if info.get("type") == "directory" and per_folder[info["name"].rstrip("/")] == 0:
                raise InputError(
                    f"--data {storage.redact(uri)}: class folder "
                    f"{storage.redact(storage.with_scheme(info['name'], uri))} holds no videos "
                    "(empty class); add videos or remove the folder"
                )
