"""The three executors give the same outputs and manifest: local worker processes and Ray tasks
(a local Ray instance, 2 CPUs) against the run in this process (CPU, fixed seeds)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import doubledip as dd
from doubledip.runs import manifest as mf

CFG = dd.SolverConfig(iterations=3, seed=4, device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(24, 32), (24, 32), (32, 24)]):
        Image.fromarray((rng.random((*shape, 3)) * 255).astype(np.uint8)).save(root / f"im{i}.png")
    (root / "broken.png").write_bytes(b"nope")
    return root


@pytest.fixture(scope="module")
def serial(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "out"
    dd.run_many("separate", [images], out, CFG)
    return out


@pytest.fixture(scope="module")
def ray_instance():
    if os.environ.get("DOUBLEDIP_REQUIRE_RAY") == "1":
        import ray  # CI installs the [ray] extra: a missing ray fails here
    else:
        ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'doubledip[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _outputs(out):
    """name -> {file: pixels or result values}, and name -> final (status, error) from the manifest."""
    got = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = {f.name: np.asarray(Image.open(f)) for f in folder.glob("*.png")}
        meta = json.loads((folder / "result.json").read_text())
        files["values"] = (meta["values"], meta["final"].get("loss"))
        got[folder.name] = files
    state = {r["name"]: (r["status"], r["error"]) for r in mf.latest(mf.read(out / "manifest.jsonl")).values()}
    return got, state


def _assert_same(out, serial):
    got, state = _outputs(out)
    want, want_state = _outputs(serial)
    assert state == want_state and sorted(got) == sorted(want)
    assert sorted(s for s, _ in state.values()) == ["done", "done", "done", "failed"]
    for name in want:
        assert sorted(got[name]) == sorted(want[name])
        for f in want[name]:
            if f == "values":
                assert got[name][f] == want[name][f], (name, f)
            else:
                assert np.array_equal(got[name][f], want[name][f]), (name, f)


def test_local_workers_equal_serial(images, serial, tmp_path):
    out = tmp_path / "out"
    report = dd.run_many("separate", [images], out, CFG, workers=2)
    assert len(report.done) == 3 and len(report.failed) == 1
    _assert_same(out, serial)
    # the manifest was written by this process alone, one running and one final line per input
    recs = mf.read(out / "manifest.jsonl")
    assert len(recs) == 8 and {r["pid"] for r in recs} == {os.getpid()}


def test_ray_tasks_equal_serial(images, serial, tmp_path, ray_instance):
    out = tmp_path / "out"
    report = dd.run_many("separate", [images], out, CFG, ray="local", num_cpus=1)
    assert len(report.done) == 3 and len(report.failed) == 1
    _assert_same(out, serial)
    assert ray_instance.is_initialized()  # an instance started by the caller is left running
    # a rerun through Ray redoes nothing
    assert not dd.run_many("separate", [images], out, CFG, ray="local").ran


def test_ray_fractional_gpus_need_gpus(images, tmp_path, ray_instance):
    with pytest.raises(ValueError, match="num_gpus=0.5 asked for, but the Ray cluster has 0"):
        dd.run_many("separate", [images], tmp_path / "out", CFG, ray="local", num_gpus=0.5)
