"""cluster.yaml: the AWS cluster `ray up` starts (a CPU head, CPU decode workers, GPU workers).

Checked against the contract the jobs rely on and against Ray's own cluster-config schema, so a
typo that `ray up` would reject fails here first. Nothing here talks to AWS.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parent.parent / "cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    assert CLUSTER_YAML.is_file(), f"{CLUSTER_YAML} is missing: `ray up cluster.yaml` needs it"
    loaded = yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _gpus(node_type: dict) -> float:
    return float((node_type.get("resources") or {}).get("GPU", 0))


def _instance(node_type: dict) -> str:
    return str(node_type["node_config"]["InstanceType"])


def _types(config: dict) -> dict[str, dict]:
    return config["available_node_types"]


def test_names_and_provider(config: dict):
    assert isinstance(config["cluster_name"], str) and config["cluster_name"]
    assert config["provider"]["type"] == "aws"
    assert config["provider"].get("region"), "an AWS provider needs a region"


def test_head_is_an_existing_cpu_type(config: dict):
    types = _types(config)
    head = config["head_node_type"]
    assert head in types, f"head_node_type {head!r} not in {sorted(types)}"
    assert _gpus(types[head]) == 0
    assert not re.match(r"^[gp]\d", _instance(types[head])), "head should be a CPU instance"


def test_cpu_and_gpu_worker_types(config: dict):
    types = _types(config)
    workers = {n: t for n, t in types.items() if n != config["head_node_type"]}
    cpu = [n for n, t in workers.items() if _gpus(t) == 0 and t["resources"].get("CPU", 0) > 0]
    gpu = [n for n, t in workers.items() if _gpus(t) >= 1]
    assert cpu, f"no CPU worker type among {sorted(workers)}"
    assert gpu, f"no GPU worker type among {sorted(workers)}"
    for name in gpu:
        assert _instance(types[name]).startswith("g"), (name, _instance(types[name]))
    for name, t in workers.items():
        assert 0 <= t.get("min_workers", 0) <= t["max_workers"], name
        assert t["max_workers"] >= 1, f"{name} can never start"


def test_setup_installs_the_project(config: dict):
    commands = "\n".join(config["setup_commands"])
    assert "pip install" in commands
    assert re.search(r"-e\s+\S*reelay|-e\s+\.|\breelay\b", commands), commands
    # What is installed must be on the nodes: the checkout is mounted where pip looks.
    mounts = config.get("file_mounts") or {}
    assert any(src in (".", "./") for src in mounts.values()), mounts
    mounted = [dst for dst, src in mounts.items() if src in (".", "./")]
    assert any(Path(m).name in commands or m in commands for m in mounted), (mounted, commands)


def test_ray_accepts_the_config():
    """Ray's own schema (what `ray up` validates) accepts it; a typo in it would not pass."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))
    validate_config(prepare_config(copy.deepcopy(raw)))  # raises on an invalid config

    broken = copy.deepcopy(raw)
    next(iter(broken["available_node_types"].values()))["resourcez"] = {"CPU": 1}
    with pytest.raises(Exception, match="resourcez"):
        validate_config(prepare_config(broken))
