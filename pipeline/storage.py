"""Object storage access through fsspec: local paths and s3:// (any S3-compatible store).

s3fs honours the standard AWS settings (AWS_ENDPOINT_URL, keys, region, profiles); extra options
come from --storage-options. Ray Data gets the same filesystem wrapped for pyarrow.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import fsspec
import pyarrow.fs as pafs
import s3fs
from fsspec.implementations.local import LocalFileSystem

from pipeline.config import StorageConfig

NO_OPTIONS = StorageConfig()

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
SUPPORTED_SCHEMES = ("s3", "file")


class S3NoBucketCreation(s3fs.S3FileSystem):
    """s3fs, except that making a folder never creates its bucket. s3fs creates a missing
    bucket (in the default region) on `makedirs`, so a mistyped --output bucket would be
    created instead of failing with "no such bucket"; here it raises FileNotFoundError.
    Creating a bucket explicitly (`mkdir("bucket")`) still works."""

    async def _mkdir(self, path, acl=False, create_parents=True, **kwargs):
        _, key, _ = self.split_path(self._strip_protocol(path).rstrip("/"))
        if key:  # a folder: its bucket must exist
            create_parents = False
        return await super()._mkdir(path, acl=acl, create_parents=create_parents, **kwargs)


def scheme_of(uri: str) -> str:
    m = _SCHEME.match(uri)
    return m.group(1).lower() if m else "file"


def is_remote(uri: str) -> bool:
    return scheme_of(uri) != "file"


# botocore retries throttling (503 SlowDown), resets and timeouts with backoff; "adaptive" also
# rate-limits the client when S3 pushes back. User options (--storage-options) win.
S3_DEFAULTS = {
    "config_kwargs": {
        "retries": {"max_attempts": 10, "mode": "adaptive"},
        "connect_timeout": 10,
        "read_timeout": 120,
    },
}


def s3_options(options: dict) -> dict:
    merged = {**S3_DEFAULTS, **options}
    merged["config_kwargs"] = {**S3_DEFAULTS["config_kwargs"], **options.get("config_kwargs", {})}
    return merged


def filesystem(uri: str, storage: StorageConfig = NO_OPTIONS) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem for a URI; unknown schemes fail with the supported list."""
    scheme = scheme_of(uri)
    if scheme not in SUPPORTED_SCHEMES:
        raise ValueError(
            f"unsupported URI scheme {scheme!r} in {redact(uri)}: use a local path "
            "or s3://bucket/key"
        )
    if scheme == "s3":
        return S3NoBucketCreation(**s3_options(storage.options))
    return fsspec.filesystem("file")


def strip_scheme(uri: str) -> str:
    """The path part fsspec and pyarrow expect: bucket/key for s3, an absolute path locally."""
    if scheme_of(uri) == "file":
        return str(Path(uri.removeprefix("file://")).expanduser().absolute())
    return _SCHEME.sub("", uri)


def with_scheme(path: str, like_uri: str) -> str:
    """The inverse of strip_scheme for a path on the same filesystem as `like_uri`."""
    scheme = scheme_of(like_uri)
    return path if scheme == "file" else f"{scheme}://{path.lstrip('/')}"


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def write_whole(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write a small file, and the folders above it, that readers see whole or not at all:
    the one writer of every small file (run records, markers, reports, best.pt).

    An S3 PUT is atomic already. A local write goes to a temporary name beside the file and is
    renamed over it: a plain rewrite truncates first, and a reader in between reads nothing.
    """
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, data)
        return
    # not mkstemp: its files are private (0600); open() gives the umask's mode, as before
    tmp = os.path.join(os.path.dirname(path), f".part-{secrets.token_hex(8)}")
    try:
        with open(tmp, "xb") as out:
            out.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def arrow_filesystem(uri: str, storage: StorageConfig = NO_OPTIONS) -> pafs.FileSystem:
    """A pyarrow filesystem for Ray Data's readers and writers (fsspec underneath for s3)."""
    if scheme_of(uri) == "file":
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem(uri, storage)))


_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:X-Amz-[A-Za-z-]+|AWSAccessKeyId|Signature|Expires|x-amz-security-token|"
    r"sig|token|key)=)[^&\s]*"
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")


def one_line(error: BaseException) -> str:
    """An exception as one line of at most 300 characters (its type where it says nothing)."""
    return " ".join(str(error).split())[:300] or type(error).__name__


def redact(text: str) -> str:
    """Remove credentials from URIs and messages: userinfo and signed query strings."""
    text = _USERINFO.sub(r"\1***@", text)
    return _SECRET_QUERY.sub(r"\1***", text)


def cache_dir() -> Path:
    return Path(os.environ.get("REELAY_CACHE_DIR", Path(tempfile.gettempdir()) / "reelay-cache"))


def local_copy(uri: str, fingerprint: str, storage: StorageConfig) -> Path:
    """A local path for a video: the file itself, or a node-local cached download.

    Downloads stream to a temporary name and are renamed into place, so concurrent tasks on one
    node share one copy and a crash never leaves a partial file under the final name.
    """
    if not is_remote(uri):
        return Path(strip_scheme(uri))
    key = hashlib.sha256(f"{uri}\0{fingerprint}".encode()).hexdigest()[:32]
    target = cache_dir() / f"{key}{Path(strip_scheme(uri)).suffix}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fs = filesystem(uri, storage)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out, fs.open(strip_scheme(uri), "rb") as src:
            shutil.copyfileobj(src, out, length=8 * 2**20)
        os.replace(tmp, target)
        trim_cache(target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def trim_cache(keep: Path, max_bytes: int | None = None) -> None:
    """Delete the oldest cached downloads beyond `max_bytes` (REELAY_CACHE_BYTES, default 20 GiB).

    A file still open by another task survives its unlink on POSIX, so trimming is always safe.
    """
    limit = max_bytes or int(os.environ.get("REELAY_CACHE_BYTES", 20 * 2**30))
    entries = []
    for p in keep.parent.iterdir():
        if p.name.startswith(".part-") or p == keep:
            continue
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        entries.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in entries) + keep.stat().st_size
    for _, size, p in sorted(entries):
        if total <= limit:
            break
        p.unlink(missing_ok=True)
        total -= size
