"""doubledip.exported: the loader's own module, which runs an ONNX export without torch.

The export is written here (torch); the loading runs in a fresh interpreter, which must import
neither torch nor the training code (doubledip.engine) for it.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import doubledip as dd
from doubledip import exported
from doubledip.engine import export as engine_export

REPO = Path(dd.__file__).resolve().parents[1]
IMG = np.random.default_rng(0).random((20, 28, 3)).astype(np.float32)


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


def test_the_loader_lives_in_doubledip_exported():
    assert dd.load_exported is exported.load_exported
    assert engine_export.load_exported is exported.load_exported  # the old import still works
    assert engine_export.MANIFEST == exported.MANIFEST and engine_export.FORMATS == exported.FORMATS


def test_loading_an_onnx_export_leaves_torch_unimported(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    r = dd.separate(IMG, dd.SolverConfig(iterations=2, seed=0, device="cpu", progress=False))
    engine_export.export(r, tmp_path, "onnx", exporter="legacy")
    here = exported.load_exported(tmp_path)
    code = f"""
import sys
import numpy as np
import doubledip.exported
import doubledip as dd
loaded = dd.load_exported({str(tmp_path)!r})
heavy = sorted(m for m in sys.modules if m.split(".")[0] == "torch" or m.startswith("doubledip.engine"))
assert not heavy, heavy[:10]
np.save({str(tmp_path / "check.npy")!r}, np.stack(loaded["layers"] + [loaded["reconstruction"]]))
"""
    proc = _fresh_python(code)
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "check.npy")
    want = np.stack(here["layers"] + [here["reconstruction"]])
    np.testing.assert_array_equal(got, want)


def test_a_folder_that_is_not_an_export(tmp_path):
    with pytest.raises(ValueError, match="no manifest.json"):
        exported.load_exported(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        exported.load_exported(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "tflite", "generators": {}}))
    with pytest.raises(ValueError, match="expected a JSON object with 'format' in"):
        exported.load_exported(tmp_path)
