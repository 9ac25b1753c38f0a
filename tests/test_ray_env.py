"""The driver's imports beside Ray's start-up (pipeline.ray_env.ensure_ray's preload)."""

from __future__ import annotations

import gc
import logging
import sys

from pipeline.ray_env import _import_paused


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
