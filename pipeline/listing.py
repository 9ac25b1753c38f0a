"""Stage 0, list (driver, 1 row per video): input URI -> videos with size and fingerprint."""

from __future__ import annotations

import io
import os
import posixpath
from dataclasses import dataclass
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import InputError, StorageConfig

# The extensions Ray Data's read_videos knows.
VIDEO_EXTENSIONS = frozenset(
    [
        "mp4",
        "mkv",
        "mov",
        "avi",
        "wmv",
        "flv",
        "webm",
        "m4v",
        "3gp",
        "mpeg",
        "mpg",
        "ts",
        "ogv",
        "rm",
        "rmvb",
        "vob",
        "asf",
        "f4v",
        "m2ts",
        "mts",
        "divx",
        "xvid",
        "mxf",
    ]
)
MANIFEST_EXTENSIONS = (".csv", ".parquet")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True, slots=True)  # slots: a million of them on the driver
class VideoEntry:
    """One listed video. `fingerprint` changes when the content does (ETag, else size+mtime)."""

    uri: str
    size: int
    fingerprint: str


def is_video(path: str) -> bool:
    return PurePosixPath(path).suffix.lower().lstrip(".") in VIDEO_EXTENSIONS


def fingerprint(info: dict) -> str:
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return "etag:" + str(etag).strip('"')
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or ""
    if hasattr(mtime, "timestamp"):
        mtime = f"{mtime.timestamp():.6f}"
    return f"size:{info.get('size', 0)}:mtime:{mtime}"


def _entry(path: str, info: dict, like_uri: str) -> VideoEntry:
    return VideoEntry(
        storage.with_scheme(path, like_uri), int(info.get("size") or 0), fingerprint(info)
    )


def list_videos(
    input_uri: str, storage_cfg: StorageConfig = storage.NO_OPTIONS
) -> list[VideoEntry]:
    """All videos under a folder/prefix, matching a glob, or named by a manifest; sorted by URI.

    Storage refusals (no permission, no such bucket) fail fast as InputError."""
    try:
        return _list(input_uri, storage_cfg)
    except PermissionError as e:
        raise InputError(
            f"no permission to list {storage.redact(input_uri)}: check the AWS credentials "
            f"and the bucket policy ({storage.redact(str(e))})"
        ) from e
    except ValueError as e:  # unsupported scheme
        if isinstance(e, InputError):
            raise
        raise InputError(str(e)) from e


def _list(input_uri: str, storage_cfg: StorageConfig) -> list[VideoEntry]:
    fs = storage.filesystem(input_uri, storage_cfg)
    path = storage.strip_scheme(input_uri)
    if input_uri.lower().endswith(MANIFEST_EXTENSIONS) and fs.isfile(path):
        return _list_manifest(input_uri, storage_cfg)
    if _GLOB_CHARS & set(path):
        found = fs.glob(path, detail=True)
        if not found:
            _check_bucket(fs, path, input_uri)
    elif fs.isdir(path):
        found = fs.find(path, detail=True)
    elif fs.isfile(path):
        found = {path: fs.info(path)}
    else:
        _check_bucket(fs, path, input_uri)
        raise InputError(
            f"input {storage.redact(input_uri)} does not exist: give a folder, "
            "s3://bucket/prefix/, a glob or a manifest (.csv/.parquet with a uri column)"
        )
    entries = [
        _entry(p, info, input_uri)
        for p, info in found.items()
        if info.get("type", "file") == "file" and is_video(p)
    ]
    return sorted(entries, key=lambda e: e.uri)


def _check_bucket(fs, path: str, input_uri: str) -> None:
    """On object stores, an input that lists nothing may be a missing bucket: say so."""
    if not storage.is_remote(input_uri):
        return
    bucket = path.split("/", 1)[0]
    if not fs.exists(bucket):
        raise InputError(
            f"bucket {bucket!r} of input {storage.redact(input_uri)} does not exist "
            "(or these credentials cannot see it)"
        )


def read_manifest(manifest_uri: str, storage_cfg: StorageConfig) -> pyarrow.Table:  # noqa: F821
    """A manifest as an Arrow table (CSV or Parquet)."""
    fs = storage.filesystem(manifest_uri, storage_cfg)
    with fs.open(storage.strip_scheme(manifest_uri), "rb") as f:
        data = f.read()
    if manifest_uri.lower().endswith(".csv"):
        return pacsv.read_csv(io.BytesIO(data))
    return pq.read_table(io.BytesIO(data))


def resolve_uri(uri: str, manifest_uri: str) -> str:
    """Manifest URIs may be relative to the manifest's folder; '.' and '..' are resolved."""
    if storage.scheme_of(uri) != "file" or uri.startswith("/") or uri.startswith("file://"):
        return uri
    base = manifest_uri.rsplit("/", 1)[0] if "/" in manifest_uri else "."
    if storage.scheme_of(manifest_uri) == "file":
        return os.path.normpath(storage.strip_scheme(f"{base}/{uri}"))
    scheme, _, rest = base.partition("://")  # object stores: normalise the key, keep the bucket
    bucket, _, prefix = rest.partition("/")
    key = posixpath.normpath(posixpath.join("/", prefix, uri)).lstrip("/")
    return f"{scheme}://{bucket}/{key}"


def is_safe_uri(uri: str) -> bool:
    """Only s3:// and local paths, and no '..' segment that could climb out of a prefix."""
    if storage.scheme_of(uri) not in storage.SUPPORTED_SCHEMES:
        return False
    return ".." not in storage.strip_scheme(uri).replace("\\", "/").split("/")


def _list_manifest(manifest_uri: str, storage_cfg: StorageConfig) -> list[VideoEntry]:
    table = read_manifest(manifest_uri, storage_cfg)
    if "uri" not in table.column_names:
        raise InputError(
            f"manifest {storage.redact(manifest_uri)} has no 'uri' column "
            f"(columns: {', '.join(table.column_names)})"
        )
    entries: dict[str, VideoEntry] = {}
    raw = table["uri"].cast(pa.string())
    table = table.filter(pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(raw), ""), False))
    uris = [resolve_uri(str(raw).strip(), manifest_uri) for raw in table["uri"].to_pylist()]
    bad = [u for u in uris if not is_safe_uri(u)]
    if bad:
        shown = ", ".join(storage.redact(u) for u in bad[:3])
        raise InputError(
            f"manifest {storage.redact(manifest_uri)} has {len(bad)} URIs that are refused "
            f"(other schemes than s3:// and local paths, or '..' segments), e.g. {shown}"
        )
    if {"size", "etag"} <= set(table.column_names):  # an inventory: no request per video
        sizes, etags = table.column("size").to_pylist(), table.column("etag").to_pylist()
        for uri, size, tag in zip(uris, sizes, etags, strict=True):
            entries[uri] = VideoEntry(uri, int(size or 0), fingerprint({"ETag": tag}))
        return sorted(entries.values(), key=lambda e: e.uri)
    for uri in uris:
        fs = storage.filesystem(uri, storage_cfg)
        try:
            info = fs.info(storage.strip_scheme(uri))
        except FileNotFoundError:
            info = {"size": -1, "missing": True}
        entries[uri] = VideoEntry(uri, int(info.get("size") or 0), fingerprint(info))
    return sorted(entries.values(), key=lambda e: e.uri)
