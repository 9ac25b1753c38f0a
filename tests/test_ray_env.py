"""The driver's imports beside Ray's start-up (pipeline.ray_env.ensure_ray's preload)."""

from __future__ import annotations

import gc
import logging
import sys

from pipeline.ray_env import _import_paused
from tests.job_process import run_python


def test_preload_imports_the_modules_with_the_collector_paused_then_back_on(tmp_path, monkeypatch):
    (tmp_path / "reelay_preload_probe.py").write_text(
        "import gc\nCOLLECTING_WHILE_IMPORTED = gc.isenabled()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "reelay_preload_probe", raising=False)
    collecting = gc.isenabled()
    _import_paused(("reelay_preload_probe",))
    assert sys.modules["reelay_preload_probe"].COLLECTING_WHILE_IMPORTED is False
    assert gc.isenabled() == collecting


def test_a_preload_that_fails_is_logged_not_raised(caplog):
    with caplog.at_level(logging.DEBUG, logger="reelay.ray"):
        _import_paused(("pipeline.no_such_module", "json"))
    assert "pipeline.no_such_module" in caplog.text
    assert "json" in sys.modules


STATE_API_PROBE = """
import ray
from ray.util.state import get_actor

from pipeline.ray_env import ensure_ray, shutdown_ray

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
shutdown_ray()
"""


def test_private_ray_for_training_serves_the_state_api(tmp_path):
    """Ray Train's placement-group cleaner asks the State API every second whether the train
    controller lives; on a Ray started without it, it logs a warning each time (70 lines in
    one `make demo`) and could not clean up after a dead controller."""
    code, log = run_python(["-c", STATE_API_PROBE], {}, tmp_path / "probe.log", timeout_s=120)
    assert code == 0, log
    assert "PROBE STATE ALIVE" in log
