"""The output contract: table names, columns and pyarrow schemas (docs/schema.md mirrors it)."""

from __future__ import annotations

import pyarrow as pa

from pipeline.storage import redact

SCHEMA_VERSION = 2
TOPK = 5

VIDEOS = "videos"
CLIPS = "clips"
ERRORS = "errors"
SHOTS = "shots"  # --clips shots: one row per shot of each video
RUNS = "_runs"
LEDGER = "_ledger"  # what each committed run indexed: the incremental runs' memory
STAGING = "_staging"
SEARCH = "_search"  # nearest-neighbour graphs per run and table (pipeline.ann)
ACTIVE = "_active"  # a marker per run in progress: one writer per output (writer_lease)
PARTITION_KEY = "run_date"  # Hive partition of every table: videos/run_date=YYYY-MM-DD/...


# In every Parquet file's footer, whoever writes it (Ray Data's writer or ours), so that a file
# copied out of the lake still says which contract it follows.
VERSION_METADATA = {b"reelay.schema_version": str(SCHEMA_VERSION).encode()}


def embedding_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def videos_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("video_uri", pa.string()),
            ("status", pa.string()),  # ok | error
            ("num_frames", pa.int64()),
            ("fps", pa.float64()),
            ("duration_s", pa.float64()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("has_audio", pa.bool_()),  # the file has a sound track (its header lists one)
            ("num_clips", pa.int32()),
            ("embedding", embedding_type(dim)),
            ("label", pa.string()),
            ("score", pa.float32()),
            ("size_bytes", pa.int64()),
            ("fingerprint", pa.string()),
            ("model_version", pa.string()),
            ("run_id", pa.string()),
            ("indexed_at", pa.timestamp("us", tz="UTC")),
        ],
        metadata=VERSION_METADATA,
    )


# --clips shots, in the pipeline only (never committed): each work unit's number, first frame,
# clips made and cuts found, on its first row; the driver numbers clips and shots from them
UNIT_SHOT_COLUMNS = ("unit_index", "unit_first_frame", "unit_clips", "unit_cuts", "unit_cut_times")

# per frame of a clip: 64-bit perceptual hashes (pipeline.video.fingerprint) of the whole frame
# and of its centre, as int64 bit patterns (Parquet readers without unsigned types read them)
FRAME_HASHES_TYPE = pa.list_(pa.list_(pa.int64(), 2))

FRAME_FEATURES = "frame_features"  # optional clips column: (T, D) CNN features per clip
AUDIO_EMBEDDING = "audio_embedding"  # clips column of models that hear: the sound's part


def clips_schema(
    dim: int, frame_features: tuple[int, int] | None = None, audio_dim: int = 0
) -> pa.Schema:
    """The clips table; with `frame_features=(T, D)` it also keeps the per-frame CNN features
    (--keep-frame-features), which training can reuse to fit new temporal heads cheaply; with
    `audio_dim`, a model that hears, the sound's embedding."""
    base = pa.schema(
        [
            ("video_uri", pa.string()),
            ("clip_index", pa.int32()),
            ("shot_index", pa.int32()),  # --clips shots: the video's shot; null for windows
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("frame_indices", pa.list_(pa.int32())),
            ("frame_hashes", FRAME_HASHES_TYPE),
            ("embedding", embedding_type(dim)),
            ("label", pa.string()),
            ("score", pa.float32()),
            ("topk_labels", pa.list_(pa.string())),
            ("topk_scores", pa.list_(pa.float32())),
            # the clip's loudness (RMS of its samples, 0 silent .. 1); null where the run did
            # not read sound (--modalities video) or the video has none
            ("audio_rms", pa.float32()),
            ("model_version", pa.string()),
            ("run_id", pa.string()),
        ],
        metadata=VERSION_METADATA,
    )
    if audio_dim:  # the embedding's last audio_dim values, null where the clip had no sound
        base = base.append(pa.field(AUDIO_EMBEDDING, embedding_type(audio_dim)))
    if frame_features is None:
        return base
    t, d = frame_features
    return base.append(pa.field(FRAME_FEATURES, pa.list_(pa.list_(pa.float32(), d), t)))


ERRORS_SCHEMA = pa.schema(
    [
        ("video_uri", pa.string()),
        ("stage", pa.string()),  # list | plan | decode | infer
        ("error_type", pa.string()),
        ("message", pa.string()),
        ("run_id", pa.string()),
    ],
    metadata=VERSION_METADATA,
)

LEDGER_SCHEMA = pa.schema(
    [
        ("video_uri", pa.string()),
        ("fingerprint", pa.string()),
        ("model_version", pa.string()),
        ("status", pa.string()),  # ok | error
        ("run_id", pa.string()),
    ],
    metadata=VERSION_METADATA,
)

# Columns of the in-flight clip rows that are not part of the clips table (dropped at write time).
CLIP_PROBS = "probs"  # (K,) softmax, averaged into the video's label
VIDEO_META_COLUMNS = (
    "num_frames",
    "fps",
    "duration_s",
    "width",
    "height",
    "has_audio",
    "size_bytes",
    "fingerprint",
)

# Float columns are written without dictionary encoding (it only costs time on them).
DICTIONARY_COLUMNS = [
    "video_uri",
    "status",
    "label",
    "model_version",
    "run_id",
    "stage",
    "error_type",
    "fingerprint",
]


# the error fields every in-flight row carries (empty strings: no error)
ERROR_FIELDS = ("error_stage", "error_type", "error_message")
MAX_MESSAGE = 2000


def no_error() -> dict:
    return dict.fromkeys(ERROR_FIELDS, "")


def error_fields(stage: str, exc: BaseException) -> dict:
    """An exception as row fields: stage, type and a one-line, credential-free message."""
    message = " ".join(str(exc).split()) or repr(exc)
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and str(cause) and str(cause) not in message:
        message += f" (caused by {type(cause).__name__}: {' '.join(str(cause).split())})"
    return {
        "error_stage": stage,
        "error_type": type(exc).__name__,
        "error_message": redact(message)[:MAX_MESSAGE],
    }


SHOTS_SCHEMA = pa.schema(
    [
        ("video_uri", pa.string()),
        ("shot_index", pa.int32()),  # 0, 1, ... in time order; clips.shot_index refers to it
        ("start_s", pa.float64()),  # the shot's first sampled frame (0 for the first shot)
        ("end_s", pa.float64()),  # the next shot's start, or the video's end
        ("num_clips", pa.int32()),  # clips indexed in the shot
        ("run_id", pa.string()),
    ],
    metadata=VERSION_METADATA,
)
