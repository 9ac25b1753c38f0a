"""Stage 0 (list) and the storage helpers, on real local folders and a moto S3 server over HTTP.

No Ray here: listing runs on the driver. Files are tiny byte strings: listing never opens them.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.config import StorageConfig
from pipeline.listing import InputError, VideoEntry, is_video, list_videos, resolve_uri

# name -> whether it is a video the lister must keep
LOCAL_TREE = {
    "a.mp4": True,
    "B.MKV": True,  # extension match is case-insensitive
    "c.WebM": True,
    "notes.txt": False,
    "thumb.jpg": False,
    "mp4": False,  # no extension at all
    "sub/d.avi": True,  # recursion
    "sub/deeper/e.mov": True,
    "sub/deeper/readme.md": False,
    "sub/f.mp4.part": False,  # only the last suffix counts
    "vidéo à tester.mp4": True,  # non-ASCII name with spaces
}


def _make_tree(root: Path, names: dict[str, bool] = LOCAL_TREE) -> Path:
    for i, name in enumerate(sorted(names)):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * (i + 1))  # distinct sizes
    return root


def _uris(entries: list[VideoEntry]) -> list[str]:
    return [e.uri for e in entries]


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return _make_tree(tmp_path / "corpus")


# ---------------------------------------------------------------------------------- local folders


def test_local_folder_filters_extensions_recursively_and_sorts(tree: Path):
    entries = list_videos(str(tree))
    expected = sorted(str(tree / n) for n, keep in LOCAL_TREE.items() if keep)
    assert _uris(entries) == expected  # absolute paths, sorted, only videos, all depths
    for e in entries:
        assert Path(e.uri).is_absolute()
        assert e.size == Path(e.uri).stat().st_size > 0
        assert e.fingerprint.startswith(f"size:{e.size}:mtime:")


def test_local_folder_trailing_slash_relative_path_and_file_scheme(tree: Path, monkeypatch):
    expected = _uris(list_videos(str(tree)))
    assert _uris(list_videos(str(tree) + "/")) == expected
    assert _uris(list_videos(f"file://{tree}")) == expected
    monkeypatch.chdir(tree.parent)
    assert _uris(list_videos("corpus")) == expected  # a relative input lists absolute URIs


def test_fingerprint_changes_with_content(tree: Path):
    video = tree / "a.mp4"
    before = {e.uri: e.fingerprint for e in list_videos(str(tree))}[str(video)]
    video.write_bytes(b"changed content, longer")
    os.utime(video, (1_700_000_000, 1_700_000_000))
    after = {e.uri: e.fingerprint for e in list_videos(str(tree))}[str(video)]
    assert before != after
    assert after.startswith("size:23:")


def test_single_video_file(tree: Path):
    entries = list_videos(str(tree / "sub" / "d.avi"))
    assert _uris(entries) == [str(tree / "sub" / "d.avi")]


def test_is_video():
    assert is_video("x/y/Z.MP4") and is_video("s3://b/k/clip.m4v") and is_video("a.b.mkv")
    assert not is_video("x/mp4") and not is_video("a.mp4.tmp") and not is_video("a.csv")


def test_inventory_manifest_gives_size_and_etag_without_a_request_per_video(tree: Path):
    """An S3 Inventory's columns: the entries carry them as listed (the files need not even be
    reachable from the driver), and an ETag fingerprint as a listing of the prefix gives."""
    manifest = tree / "inventory.parquet"
    rows = {"uri": ["s3://b/x.mp4", "a.mp4", "", None], "size": [7, 9, 0, 0],
            "etag": ['"abc"', "def", "x", "y"]}  # fmt: skip
    pq.write_table(pa.table(rows), manifest)
    assert list_videos(str(manifest)) == [
        VideoEntry(str(tree / "a.mp4"), 9, "etag:def"),  # not a.mp4's real size
        VideoEntry("s3://b/x.mp4", 7, "etag:abc"),
    ]


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("*.mp4", ["a.mp4", "vidéo à tester.mp4"]),
        ("**/*.avi", ["sub/d.avi"]),
        ("sub/**", ["sub/d.avi", "sub/deeper/e.mov"]),
        ("[aB]*", ["B.MKV", "a.mp4"]),
    ],
)
def test_local_glob(tree: Path, pattern: str, names: list[str]):
    assert _uris(list_videos(f"{tree}/{pattern}")) == sorted(str(tree / n) for n in names)


def test_missing_path_is_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="does not exist"):
        list_videos(str(tmp_path / "no_such_folder"))


# ---------------------------------------------------------------------------------- manifests


def test_csv_manifest_with_relative_and_absolute_uris(tree: Path, tmp_path: Path):
    elsewhere = _make_tree(tmp_path / "elsewhere", {"x.mp4": True})
    manifest = tree / "lists" / "manifest.csv"
    manifest.parent.mkdir()
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["label", "uri"])  # uri need not be the first column
        w.writerow(["l1", "../a.mp4"])  # relative to the manifest's folder
        w.writerow(["l2", "../sub/deeper/e.mov"])
        w.writerow(["l3", str(elsewhere / "x.mp4")])  # absolute
        w.writerow(["l4", "../a.mp4"])  # duplicate: listed once
        w.writerow(["l5", "../vidéo à tester.mp4"])
    entries = list_videos(str(manifest))
    expected = sorted(
        [
            str(tree / "a.mp4"),
            str(tree / "sub/deeper/e.mov"),
            str(elsewhere / "x.mp4"),
            str(tree / "vidéo à tester.mp4"),
        ]
    )
    assert _uris(entries) == expected
    by_uri = {e.uri: e for e in entries}
    assert by_uri[str(tree / "a.mp4")].size == (tree / "a.mp4").stat().st_size


def test_manifest_entry_that_does_not_exist_is_kept_for_the_errors_table(tree: Path):
    manifest = tree / "m.csv"
    manifest.write_text("uri\na.mp4\ngone.mp4\n", encoding="utf-8")
    entries = {e.uri: e for e in list_videos(str(manifest))}
    assert set(entries) == {str(tree / "a.mp4"), str(tree / "gone.mp4")}
    assert entries[str(tree / "gone.mp4")].size == -1  # listed, fails later with a reason


def test_parquet_manifest(tree: Path):
    manifest = tree / "manifest.parquet"
    pq.write_table(
        pa.table({"uri": ["sub/d.avi", str(tree / "B.MKV"), None], "split": ["a", "b", "c"]}),
        manifest,
    )
    assert _uris(list_videos(str(manifest))) == sorted(
        [str(tree / "sub/d.avi"), str(tree / "B.MKV")]
    )


@pytest.mark.parametrize(
    ("uri", "manifest", "expected"),
    [
        ("a.mp4", "/data/lists/m.csv", "/data/lists/a.mp4"),
        ("../raw/a.mp4", "/data/lists/m.csv", "/data/raw/a.mp4"),
        ("./sub/a.mp4", "/data/m.csv", "/data/sub/a.mp4"),
        ("/abs/a.mp4", "/data/m.csv", "/abs/a.mp4"),
        ("s3://other/k.mp4", "/data/m.csv", "s3://other/k.mp4"),
        ("a.mp4", "s3://bkt/lists/m.csv", "s3://bkt/lists/a.mp4"),
        ("../raw/a.mp4", "s3://bkt/lists/m.csv", "s3://bkt/raw/a.mp4"),
        ("./a.mp4", "s3://bkt/m.csv", "s3://bkt/a.mp4"),
    ],
)
def test_resolve_uri_relative_to_the_manifest(uri: str, manifest: str, expected: str):
    assert resolve_uri(uri, manifest) == expected


@pytest.mark.parametrize(
    "row", ["https://cdn.example/v.mp4", "/data/../etc/v.mp4", "s3://bkt/raw/../../v.mp4"]
)
def test_manifest_refuses_other_schemes_and_dotdot(tree: Path, row: str):
    manifest = tree / "m.csv"
    manifest.write_text(f"uri\na.mp4\n{row}\n", encoding="utf-8")
    with pytest.raises(InputError, match="refused"):
        list_videos(str(manifest))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_manifest_without_uri_column_is_input_error(tmp_path: Path, suffix: str):
    manifest = tmp_path / f"m{suffix}"
    table = pa.table({"path": ["a.mp4"], "label": ["x"]})
    if suffix == ".csv":
        manifest.write_text("path,label\na.mp4,x\n", encoding="utf-8")
    else:
        pq.write_table(table, manifest)
    with pytest.raises(InputError, match="no 'uri' column") as info:
        list_videos(str(manifest))
    assert "path" in str(info.value)  # names the columns it found


# ---------------------------------------------------------------------------------- S3 (moto)


@pytest.fixture()
def s3_tree(s3_bucket: str):
    import boto3

    client = boto3.client("s3")
    bodies = {
        "raw/a.mp4": b"a" * 10,
        "raw/Upper.MP4": b"u" * 11,
        "raw/sub/b.mkv": b"b" * 12,
        "raw/notes.txt": b"n",
        "raw2/c.mp4": b"c" * 13,  # shares the "raw" string prefix, not the folder
        "lists/manifest.csv": b"uri\n../raw/a.mp4\ns3://%s/raw2/c.mp4\n" % s3_bucket.encode(),
    }
    for key, body in bodies.items():
        client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    etags = {
        key: client.head_object(Bucket=s3_bucket, Key=key)["ETag"].strip('"') for key in bodies
    }
    return s3_bucket, etags


@pytest.mark.parametrize("suffix", ["/", ""])
def test_s3_prefix_listing(s3_tree, suffix: str):
    bucket, etags = s3_tree
    entries = list_videos(f"s3://{bucket}/raw{suffix}")
    keys = ["raw/Upper.MP4", "raw/a.mp4", "raw/sub/b.mkv"]
    assert _uris(entries) == [f"s3://{bucket}/{k}" for k in keys]
    for e, key in zip(entries, keys, strict=True):
        assert e.fingerprint == f"etag:{etags[key]}"
        assert e.size == {"raw/Upper.MP4": 11, "raw/a.mp4": 10, "raw/sub/b.mkv": 12}[key]


def test_s3_glob_and_manifest(s3_tree):
    bucket, etags = s3_tree
    assert _uris(list_videos(f"s3://{bucket}/raw/*.mp4")) == [f"s3://{bucket}/raw/a.mp4"]
    entries = list_videos(f"s3://{bucket}/lists/manifest.csv")
    assert _uris(entries) == [f"s3://{bucket}/raw/a.mp4", f"s3://{bucket}/raw2/c.mp4"]
    assert entries[1].fingerprint == f"etag:{etags['raw2/c.mp4']}"


def test_s3_missing_prefix_is_input_error(s3_bucket: str):
    with pytest.raises(InputError, match="does not exist"):
        list_videos(f"s3://{s3_bucket}/nothing/here/")


# ---------------------------------------------------------------------------------- storage


@pytest.mark.parametrize(
    ("text", "secrets", "kept"),
    [
        (
            "https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAEXAMPLE%2F20260101&X-Amz-Signature=deadbeef01&x-id=GetObject",
            ["AKIAEXAMPLE", "deadbeef01", "AWS4-HMAC-SHA256"],
            ["https://b.s3.amazonaws.com/v.mp4?", "x-id=GetObject"],
        ),
        (
            "https://h.example/v.mp4?AWSAccessKeyId=AKIAOLD&Signature=s1gn&Expires=17",
            ["AKIAOLD", "s1gn"],
            ["https://h.example/v.mp4"],
        ),
        (
            "https://h.example/v.mp4?X-Amz-Security-Token=T0KEN&part=1",
            ["T0KEN"],
            ["part=1"],
        ),
        ("s3://AKIAUSER:pa55word@bucket/key.mp4", ["AKIAUSER", "pa55word"], ["bucket/key.mp4"]),
        # In the middle of an error message, as error rows carry them.
        (
            "Error reading https://alice:s3cr3t@cdn.example/v.mp4 (caused by HTTPError: 403)",
            ["alice", "s3cr3t"],
            ["Error reading https://", "cdn.example/v.mp4", "403"],
        ),
    ],
)
def test_redact_removes_credentials(text: str, secrets: list[str], kept: list[str]):
    out = storage.redact(text)
    for s in secrets:
        assert s not in out, out
    for k in kept:
        assert k in out, out


def test_redact_leaves_plain_uris_alone():
    for text in ["s3://bucket/user@example.com/v.mp4", "/data/vidéo à tester.mp4", "s3://b/k"]:
        assert storage.redact(text) == text


def test_local_copy_of_a_local_path_is_the_file_itself(tmp_path: Path):
    f = tmp_path / "v.mp4"
    f.write_bytes(b"abc")
    assert storage.local_copy(str(f), "any", StorageConfig()) == f


def test_local_copy_downloads_once_then_reuses(s3_bucket: str, tmp_path: Path, monkeypatch):
    import boto3

    cache = tmp_path / "cache"
    monkeypatch.setenv("REELAY_CACHE_DIR", str(cache))
    client = boto3.client("s3")
    body = os.urandom(3 * 2**20 + 17)
    client.put_object(Bucket=s3_bucket, Key="raw/v.mp4", Body=body)
    uri = f"s3://{s3_bucket}/raw/v.mp4"
    (entry,) = list_videos(uri)

    first = storage.local_copy(uri, entry.fingerprint, StorageConfig())
    assert first.parent == cache and first.suffix == ".mp4"
    assert first.read_bytes() == body
    assert [p.name for p in cache.iterdir()] == [first.name]  # no .part- leftovers

    # Reused: the object is gone from S3, the cached copy still answers.
    client.delete_object(Bucket=s3_bucket, Key="raw/v.mp4")
    assert storage.local_copy(uri, entry.fingerprint, StorageConfig()) == first

    # A new fingerprint (changed content) is a new download, not the stale copy.
    client.put_object(Bucket=s3_bucket, Key="raw/v.mp4", Body=b"new content")
    storage.filesystem(uri).invalidate_cache()
    (changed,) = list_videos(uri)
    assert changed.fingerprint != entry.fingerprint
    second = storage.local_copy(uri, changed.fingerprint, StorageConfig())
    assert second != first and second.read_bytes() == b"new content"


def test_local_copy_trims_cache_to_budget(s3_bucket: str, tmp_path: Path, monkeypatch):
    import boto3

    cache = tmp_path / "cache"
    monkeypatch.setenv("REELAY_CACHE_DIR", str(cache))
    monkeypatch.setenv("REELAY_CACHE_BYTES", "1500")
    client = boto3.client("s3")
    paths = []
    for i in range(3):
        client.put_object(Bucket=s3_bucket, Key=f"v{i}.mp4", Body=bytes([i]) * 1000)
        paths.append(storage.local_copy(f"s3://{s3_bucket}/v{i}.mp4", f"fp{i}", StorageConfig()))
        os.utime(paths[-1], (1_700_000_000 + i, 1_700_000_000 + i))  # strictly increasing ages
    assert paths[-1].exists()  # the newest is always kept
    assert sum(p.stat().st_size for p in cache.iterdir()) <= 1500
    assert not paths[0].exists()
