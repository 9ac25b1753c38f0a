"""Typed, frozen configuration for the jobs. Each stage takes the smallest piece it needs."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields

from pipeline.cpu_priority import DECODE_TASK_CPUS
from pipeline.models.config import ModelConfig, normalise_modalities


class ConfigError(ValueError):
    """A bad option: the message says what to do instead."""


class InputError(ValueError):
    """The input cannot be listed: missing, refused, or a manifest without a `uri` column.

    An input that exists but holds no videos is not an error (a nightly prefix may be empty
    yet): the run logs a warning and commits an empty run."""


class OutputError(ValueError):
    """The output location cannot be written (missing bucket, no permission)."""


@dataclass(frozen=True)
class GuardConfig:
    timeout_s: float = 600.0  # per guarded call (one work unit, or one header read)
    attempts: int = 2  # worker deaths tolerated before the video is an error
    recycle_after: int = 200  # tasks per worker process before it is replaced

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigError(f"--decode-timeout must be > 0 seconds (got {self.timeout_s:g})")
        if self.attempts < 1 or self.recycle_after < 1:
            raise ValueError("attempts and recycle_after must be >= 1")


RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


CLIP_MODES = ("windows", "shots")


@dataclass(frozen=True)
class SamplingConfig:
    """Which frames become clips: `fps` samples per second, `clip_frames` per clip; `clips`
    "windows" (fixed windows) or "shots" (windows of at most `clip_frames` inside each shot,
    cut where the decode stage finds a hard cut: pipeline.video.shots)."""

    fps: float = 1.0
    clip_frames: int = 16
    clip_stride: int | None = None  # sampled frames between clip starts; None = clip_frames
    image_size: int = 112
    clips: str = "windows"
    # "video", "audio" or "video,audio": with audio, each clip also carries its sound, mono at
    # `audio_rate`, as many samples as a full clip lasts (clip_frames / fps seconds)
    modalities: str = "video"
    audio_rate: int = 16_000

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "modalities", normalise_modalities(self.modalities))
        except ValueError as e:
            raise ConfigError(f"--{e}") from None
        if not 8_000 <= self.audio_rate <= 48_000:
            raise ConfigError(f"audio_rate must be in [8000, 48000] Hz (got {self.audio_rate})")
        if self.clips not in CLIP_MODES:
            raise ConfigError(
                f"--clips must be one of {', '.join(CLIP_MODES)} (got {self.clips!r})"
            )
        if self.clips == "shots" and self.clip_stride is not None:
            raise ConfigError(
                "--clip-stride does not apply to --clips shots (a shot's clips tile it); "
                "leave it out"
            )
        if not self.fps > 0:
            raise ConfigError(f"--fps must be > 0 (got {self.fps})")
        if self.clip_frames < 1:
            raise ConfigError(f"--clip-frames must be >= 1 (got {self.clip_frames})")
        if self.clip_stride is not None and self.clip_stride < 1:
            raise ConfigError(f"--clip-stride must be >= 1 (got {self.clip_stride})")
        if not 16 <= self.image_size <= 1024:
            raise ConfigError(f"--image-size must be in [16, 1024] (got {self.image_size})")

    @property
    def stride(self) -> int:
        return self.clip_stride or self.clip_frames

    @property
    def by_shot(self) -> bool:
        return self.clips == "shots"

    @property
    def hears(self) -> bool:
        """Whether the decode stage reads each clip's sound."""
        return "audio" in self.modalities

    @property
    def audio_samples(self) -> int:
        """Samples of sound per clip: a full clip's duration (shorter clips are zero-padded)."""
        return round(self.clip_frames / self.fps * self.audio_rate)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SamplingConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def check_modalities(model: ModelConfig, sampling: SamplingConfig) -> None:
    """What the model takes and what the decode stage reads must agree (both from
    --modalities)."""
    if model.modalities != sampling.modalities:
        raise ConfigError(
            f"the model's modalities ({model.modalities}) and the sampling's "
            f"({sampling.modalities}) differ: set both with --modalities"
        )


@dataclass(frozen=True)
class PlanConfig:
    """How videos are cut into work units, within a memory budget per decode task.

    A decode task holds: the decoder's own frames (reference frames and conversion buffers,
    about DECODER_FRAMES native frames), one chunk of native frames (`decode_chunk_bytes`) and
    its unit's resized output. The planner shrinks a video's units to fit `task_memory_bytes`,
    refuses a video whose frames alone cannot fit, and Ray reserves the budget per decode task
    (its `memory` resource), so a node never runs more decode tasks than its memory holds.
    """

    unit_frames: int = 128  # sampled frames per work unit (long videos split into time ranges)
    # native-resolution frames decoded at once, at most: a chunk costs about 3.5 times its size
    # at the peak (decord's batch, its numpy copy, the allocator's slack); with 16 MiB chunks a
    # 720p decode task peaks near 0.4 GiB (near 1 GiB with 192 MiB chunks), no slower
    decode_chunk_bytes: int = 16 * 2**20
    task_memory_bytes: int = 1024 * 2**20  # per decode task (--decode-memory-mib)
    guard: GuardConfig = GuardConfig()  # time budget, crash retries, worker recycling

    DECODER_FRAMES = 8  # native frames the decoder itself holds (measured order of magnitude)

    def __post_init__(self) -> None:
        if self.unit_frames < 1:
            raise ConfigError(f"--unit-frames must be >= 1 (got {self.unit_frames})")
        if self.task_memory_bytes < 64 * 2**20:
            raise ConfigError("--decode-memory-mib must be >= 64")

    @property
    def chunk_bytes(self) -> int:
        """Native frames decoded at once: `decode_chunk_bytes`, at most a quarter of the budget."""
        return min(self.decode_chunk_bytes, self.task_memory_bytes // 4)

    def frames_per_unit(self, width: int, height: int, image_size: int) -> int:
        """Sampled frames per unit for this resolution within the memory budget (0: none fit)."""
        native = width * height * 3
        left = self.task_memory_bytes - self.DECODER_FRAMES * native - max(self.chunk_bytes, native)
        if left <= 0:
            return 0
        return max(0, min(self.unit_frames, left // (image_size * image_size * 3)))

    def decode_task_options(self, num_cpus: float = 1.0) -> dict:
        """Ray remote args of the decode tasks: `num_cpus` (half a CPU beside CPU inference
        actors: `ray_env.size_inference`), the memory budget, recycling."""
        return {
            "num_cpus": num_cpus,
            "memory": self.task_memory_bytes,
            "max_calls": self.guard.recycle_after,
        }


@dataclass(frozen=True)
class StorageConfig:
    """Extra fsspec options (JSON from --storage-options), merged over the AWS defaults."""

    options: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | None) -> StorageConfig:
        if not text:
            return cls()
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--storage-options is not valid JSON: {e}") from e
        if not isinstance(value, dict):
            raise ConfigError("--storage-options must be a JSON object, e.g. '{\"anon\": true}'")
        return cls(options=value)

    def __hash__(self) -> int:  # dict field: hash by content
        return hash(json.dumps(self.options, sort_keys=True))


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CPU_BATCH, GPU_BATCH = 8, 32  # clips per forward pass unless --batch-size says otherwise
# actor calls Ray Data runs at once per actor unless --calls-per-actor says otherwise: on a GPU
# the next batch's input and the last one's output rows are made while the model runs (the
# model itself still runs one batch at a time); CPU actors have no idle core to do it on
CPU_CALLS, GPU_CALLS = 1, 2


@dataclass(frozen=True)
class InferConfig:
    """Where and how the models run."""

    # clips per forward pass; None: 8 on CPU actors, 32 on GPU actors, where Ray Data's fixed
    # cost per batch (~9 ms) would otherwise take a third of the time
    batch_size: int | None = None
    device: str = "auto"  # auto | cpu | cuda
    # compute dtype on GPUs (autocast; CPUs always run float32): auto = bf16 where the GPU
    # has it (Ampere and later), else fp16
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    gpus_per_actor: float = 1.0  # < 1 packs several actors on a GPU
    cpus_per_actor: float = 1.0
    max_actors: int | None = None  # None: one per GPU, or CPUs/2 on CPU clusters
    # torch threads per CPU actor; None: twice its CPUs, so that inference also takes the
    # cores decode leaves idle (decode is usually the cheaper stage)
    torch_threads: int | None = None
    keep_frame_features: bool = False  # write (T, D) CNN features per clip (clips.frame_features)
    calls_per_actor: int | None = None  # None: 1 on CPU actors, 2 on GPU actors (GPU_CALLS)
    # CPUs Ray reserves per plan and decode task; None: half a CPU beside CPU actors (whose
    # threads then yield to decoding: pipeline.cpu_priority), one beside GPU actors. Below
    # one CPU, CPU actors run at idle priority; at one or more they keep their priority
    cpus_per_task: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1 (got {self.batch_size})")
        if self.calls_per_actor is not None and self.calls_per_actor < 1:
            raise ConfigError(f"--calls-per-actor must be >= 1 (got {self.calls_per_actor})")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda (got {self.device!r})")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})"
            )
        if not 0 < self.gpus_per_actor <= 1:
            raise ConfigError(
                f"--gpus-per-actor must be in (0, 1], e.g. 0.5 for two actors per GPU "
                f"(got {self.gpus_per_actor})"
            )
        if self.cpus_per_actor <= 0:
            raise ConfigError("--cpus-per-actor must be > 0")
        if self.cpus_per_task is not None and self.cpus_per_task <= 0:
            raise ConfigError(f"--cpus-per-task must be > 0 (got {self.cpus_per_task})")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"--torch-threads must be >= 1 (got {self.torch_threads})")
        if self.max_actors is not None and self.max_actors < 1:
            raise ConfigError(
                f"--max-actors must be >= 1 (got {self.max_actors}); leave it out for one "
                "actor per GPU, or one per two CPUs on a CPU cluster"
            )

    def batch_for(self, device: str) -> int:
        """Clips per forward pass on `device` ("cpu" or "cuda"): --batch-size, else the
        device's default."""
        return self.batch_size or (GPU_BATCH if device == "cuda" else CPU_BATCH)

    def task_cpus_for(self, device: str) -> float:
        """CPUs per plan and decode task beside actors on `device`: --cpus-per-task, else
        half a CPU beside CPU actors (pipeline.cpu_priority) and one beside GPU actors."""
        return self.cpus_per_task or (1.0 if device == "cuda" else DECODE_TASK_CPUS)

    def calls_for(self, device: str) -> int:
        """Ray Data calls at once per actor on `device`: --calls-per-actor, else the device's
        default (the model still runs one batch at a time)."""
        return self.calls_per_actor or (GPU_CALLS if device == "cuda" else CPU_CALLS)


@dataclass(frozen=True)
class RunMode:
    """Which videos a run takes: all, only new/changed (--incremental), or last failures."""

    incremental: bool = False
    retry_errors: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class IndexConfig:
    """Everything one index run needs."""

    input_uri: str
    output_uri: str
    sampling: SamplingConfig = SamplingConfig()
    model: ModelConfig = ModelConfig()
    plan: PlanConfig = PlanConfig()
    infer: InferConfig = InferConfig()
    storage: StorageConfig = StorageConfig()
    mode: RunMode = RunMode()
    checkpoint_uri: str | None = None
    seed: int = 0
    offline: bool = False  # --weights never downloads (also REELAY_OFFLINE, HF_HUB_OFFLINE)
    labels: tuple[str, ...] = ()  # --labels: zero-shot classes of a CLIP model
    run_id: str | None = None
    max_failure_fraction: float = 0.5
    progress_interval_s: float = 10.0
    # a run whose work makes no progress this long stops (RunStalled, exit 4) instead of
    # waiting for ever on a cluster that lost the nodes it needs; 0 waits for ever
    stall_timeout_s: float = 1800.0
    # videos per commit (pipeline.index.job): a long run commits in parts, each a run of its
    # own, so that a crash loses one part's work; 0 commits once, at the end
    commit_every: int = 0

    def __post_init__(self) -> None:
        if not self.input_uri:
            raise ConfigError(
                "--input is required: a folder, s3://bucket/prefix/, glob or manifest"
            )
        if not self.output_uri:
            raise ConfigError("--output is required: a local folder or s3://bucket/prefix")
        if self.run_id is not None and not RUN_ID_PATTERN.match(self.run_id):
            raise ConfigError(
                f"--run-id {self.run_id!r} is not allowed: use 1-64 letters, digits, '.', '_' or"
                " '-', starting with a letter or digit"
            )
        if not 0.0 <= self.max_failure_fraction <= 1.0:
            raise ConfigError("--max-failure-fraction must be between 0 and 1")
        if self.stall_timeout_s and self.stall_timeout_s <= self.plan.guard.timeout_s:
            raise ConfigError(
                f"--stall-timeout {self.stall_timeout_s:g} must be longer than --decode-timeout "
                f"{self.plan.guard.timeout_s:g} (one work unit may take that long), or 0 to "
                "wait for ever"
            )
        if self.commit_every < 0:
            raise ConfigError(
                f"--commit-every must be >= 0 (got {self.commit_every}): videos per commit, "
                "or 0 to commit once at the end"
            )
        if not self.checkpoint_uri:  # a checkpoint brings both its own
            check_modalities(self.model, self.sampling)
        if self.infer.keep_frame_features and self.model.modalities == "audio":
            raise ConfigError(
                "--keep-frame-features keeps the frame encoder's features: a model of "
                "--modalities audio has none"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["storage"] = {"options": sorted(self.storage.options)}  # keys only: no secrets in records
        return d
