"""The GPU path, on a machine with a CUDA GPU: `make test-gpu` (`make test` deselects these).

- The inferencer on the GPU computes what it computes on the CPU, in each precision.
- `jobs/index.py --device auto`, as users run it, puts its inference actors on the GPU (two per
  GPU with `--gpus-per-actor 0.5`) and writes the clips a CPU run writes, with the same
  embeddings up to the precision's rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import schema
from tests.inference_rows import clip_rows, spec_for
from tests.job_process import run_index_job

pytestmark = pytest.mark.gpu
MODEL_FLAGS = ["--encoder", "resnet18", "--temporal", "gru", "--image-size", "64", "--fps", "4"]
# relative error of embeddings against float32 on the CPU: TF32 convolutions (cuDNN's default
# for float32) round to 10 mantissa bits, fp16 to 10, bf16 to 7
TOLERANCE = {"fp32": 1e-2, "fp16": 1e-2, "bf16": 4e-2}


@pytest.fixture(scope="module")
def torch():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return torch


def embeddings(table: pa.Table) -> np.ndarray:
    return np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def test_auto_precision_is_bf16_where_the_gpu_has_it(torch):
    from pipeline.models.inference import compute_dtype

    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert compute_dtype(torch.device("cuda"), "auto") == expected
    assert compute_dtype(torch.device("cuda"), "fp32") is None
    assert compute_dtype(torch.device("cpu"), "bf16") is None  # CPUs always run float32


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_inferencer_on_gpu_computes_what_cpu_does(torch, precision):
    from pipeline.models.inference import ClipInferencer

    spec = spec_for()
    rows = clip_rows(6, 8, 64, seed=1)
    rows["error_stage"][2] = "decode"  # a failed clip stays a null row on either device
    cpu = ClipInferencer(spec, "cpu", 2, "r", precision=precision)(rows)
    gpu = ClipInferencer(spec, "cuda", 1, "r", precision=precision)(rows)
    assert gpu.schema == cpu.schema
    assert gpu.column("embedding").null_count == 1 and not gpu.column("embedding")[2].is_valid
    ok = np.arange(6) != 2
    err = relative_error(embeddings(gpu.filter(pa.array(ok))), embeddings(cpu.filter(pa.array(ok))))
    assert err < TOLERANCE[precision], f"{precision}: relative error {err:.2e}"
    probs = np.asarray(gpu.column(schema.CLIP_PROBS).to_pylist()[0])
    assert abs(probs.sum() - 1) < 1e-3


def test_batches_of_other_shapes_after_autotuning(torch):
    """cuDNN autotunes per shape: a run's smaller last batch must still come out right."""
    from pipeline.models.inference import ClipInferencer

    inferencer = ClipInferencer(spec_for(), "cuda", 1, "r")
    big, small = clip_rows(8, 8, 64, seed=2), clip_rows(3, 8, 64, seed=3)
    first = embeddings(inferencer(big))
    assert embeddings(inferencer(small)).shape == (3, first.shape[1])
    again = embeddings(inferencer(big))
    assert relative_error(again, first) < 1e-5  # same weights, same input: same result


def read_run(out: Path) -> tuple[dict, pa.Table]:
    """A run's record and its clips, in (video, clip) order."""
    (record_path,) = (out / schema.RUNS).glob("*.json")
    files = sorted((out / schema.CLIPS).rglob("*.parquet"))
    clips = pa.concat_tables([pq.read_table(f) for f in files])
    order = [("video_uri", "ascending"), ("clip_index", "ascending")]
    return json.loads(record_path.read_text()), clips.sort_by(order)


def test_index_job_uses_the_gpu_and_agrees_with_cpu(torch, sample_corpus, tmp_path):
    runs = {}
    for name, device_flags in {
        "gpu": ["--device", "auto", "--gpus-per-actor", "0.5"],
        "cpu": ["--device", "cpu"],
    }.items():
        out = tmp_path / name
        args = ["--input", str(sample_corpus), "--output", str(out), *MODEL_FLAGS, *device_flags]
        code, log = run_index_job(args, {}, tmp_path / f"{name}.log", timeout_s=600)
        assert code == 0, log[-3000:]
        runs[name] = read_run(out)
    (gpu_record, gpu_clips), (cpu_record, cpu_clips) = runs["gpu"], runs["cpu"]
    gpus = torch.cuda.device_count()
    assert gpu_record["cluster"]["GPU"] == gpus
    assert gpu_record["inference"] == {
        "device": "cuda", "num_gpus": 0.5, "num_cpus": 1.0, "threads": 1, "max_actors": 2 * gpus,
        "batch_size": 32, "calls_per_actor": 2,
    }  # fmt: skip
    assert cpu_record["inference"]["device"] == "cpu"
    assert gpu_record["counts"]["failed"] == 0 and gpu_clips.num_rows > 0
    for key in ("video_uri", "clip_index", "frame_indices"):
        assert gpu_clips.column(key).to_pylist() == cpu_clips.column(key).to_pylist()
    err = relative_error(embeddings(gpu_clips), embeddings(cpu_clips))
    assert err < TOLERANCE["bf16"], f"GPU (auto: bf16) vs CPU embeddings: relative error {err:.2e}"
