"""Ray as the jobs start it (pipeline.ray_env.ensure_ray)."""

from __future__ import annotations

from tests.job_process import run_python

STATE_API_PROBE = """
import ray
from ray.util.state import get_actor

from pipeline.ray_env import ensure_ray

ensure_ray(state_api=True)


@ray.remote(num_cpus=0)
class Probe:
    def actor_id(self):
        return ray.get_runtime_context().get_actor_id()


probe = Probe.remote()
# this Ray's address: the test session's own Ray runs beside it, and without an address the
# State API client refuses to choose between two Rays on one machine
here = ray.get_runtime_context().gcs_address
print("PROBE STATE", get_actor(ray.get(probe.actor_id.remote()), address=here, timeout=30).state)
ray.shutdown()
"""


def test_private_ray_for_training_serves_the_state_api(tmp_path):
    """Ray Train's placement-group cleaner asks the State API every second whether the train
    controller lives; on a Ray started without it, it logs a warning each time (70 lines in
    one `make demo`) and could not clean up after a dead controller."""
    code, log = run_python(["-c", STATE_API_PROBE], {}, tmp_path / "probe.log", timeout_s=120)
    assert code == 0, log
    assert "PROBE STATE ALIVE" in log
