"""Every task takes its config the same way, and a config in the wrong place is a clear TypeError;
the CLI refuses a folder holding another task's result unless --overwrite, and names an
unwritable folder in one line."""
import inspect
import json

import numpy as np
import pytest
from PIL import Image

import doubledip as dd
from doubledip.cli import main
from doubledip.engine.tasks import registry

H, W = 24, 28
CFG = dd.SolverConfig(iterations=2, repeats=1, seed=0)


def _img(seed=0):
    return np.random.default_rng(seed).random((H, W, 3)).astype(np.float32)


def _map():
    m = np.zeros((H, W), np.float32)
    m[6:14, 8:20] = 1
    return m


def _required_args(spec):
    return [[_img(0), _img(1)] if i.kind == "images" else (_map() if i.kind == "map" else _img(k))
            for k, i in enumerate(spec.required_inputs)]


@pytest.mark.parametrize("name", [s.name for s in registry.tasks()])
def test_config_comes_right_after_the_required_inputs_or_as_a_keyword(name):
    spec = registry.get(name)
    params = list(inspect.signature(spec.run).parameters.values())
    n = len(spec.required_inputs)
    assert [p.name for p in params[:n]] == [i.name for i in spec.required_inputs]
    assert params[n].name == "config"
    # everything after the config is keyword-only: no other argument can take its place
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[n + 1:])
    by_position = spec.run(*_required_args(spec), CFG)
    by_keyword = spec.run(*_required_args(spec), config=CFG)
    assert by_position.config == by_keyword.config and by_position.config.iterations == 2


def test_segment_takes_its_config_second():
    r = dd.segment(_img(), CFG)  # the call that used to treat the config as fg_hint
    assert r.config.iterations == 2 and r.mask.shape == (H, W)


@pytest.mark.parametrize("call,match", [
    (lambda: dd.segment(_img(), _map()), "config must be a doubledip.SolverConfig, got ndarray"),
    (lambda: dd.segment(_img(), _map(), 1 - _map()), "positional arguments"),  # hints are keywords
    (lambda: dd.segment(_img(), fg_hint=CFG, bg_hint=_map()), "fg_hint is a SolverConfig"),
    (lambda: dd.remove_watermark(_img(), CFG), "hint is a SolverConfig"),
    (lambda: dd.separate(CFG), "image is a SolverConfig"),
    (lambda: dd.separate_pair(_img(), CFG), "image2 is a SolverConfig"),
    (lambda: dd.dehaze(_img(), airlight=CFG), "airlight is a SolverConfig"),
    (lambda: dd.remove_watermark_multi(CFG), "images is a SolverConfig"),
])
def test_a_config_in_the_wrong_place_is_a_clear_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


@pytest.fixture
def image_file(tmp_path):
    p = tmp_path / "in.png"
    Image.fromarray((_img() * 255).astype(np.uint8)).save(p)
    return p


def test_cli_refuses_another_tasks_folder_unless_overwrite(tmp_path, image_file, capsys):
    out = tmp_path / "out"
    base = ["-o", str(out), "--iterations", "2", "--quiet"]
    assert main(["separate", str(image_file)] + base) == 0
    capsys.readouterr()  # the first run's own lines (its short-run warning)
    assert main(["dehaze", str(image_file), "--passes", "1"] + base) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err and "separate" in err
    assert json.loads((out / "result.json").read_text())["task"] == "separate"  # untouched
    assert main(["dehaze", str(image_file), "--passes", "1", "--overwrite"] + base) == 0
    assert sorted(p.name for p in out.iterdir()) == ["image.png", "result.json", "transmission.png"]
    # the same task again replaces its own files: nothing of the earlier run is left
    assert main(["dehaze", str(image_file), "--passes", "1", "--seed", "3"] + base) == 0
    assert json.loads((out / "result.json").read_text())["config"]["seed"] == 3


def test_cli_output_under_a_file_is_one_line_naming_the_folder(tmp_path, image_file, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "out"  # its parent is a file: no one can create it (root neither)
    assert main(["separate", str(image_file), "-o", str(out), "--iterations", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "Traceback" not in err


def test_result_json_records_the_device_used_the_inputs_and_versions(tmp_path, image_file):
    import torch

    hint = tmp_path / "hint.png"
    Image.fromarray((_map() * 255).astype(np.uint8)).save(hint)
    out = tmp_path / "wm"
    assert main(["remove-watermark", str(image_file), str(hint), "-o", str(out), "--iterations", "2",
                 "--repeats", "1", "--device", "auto", "--quiet"]) == 0
    meta = json.loads((out / "result.json").read_text())
    assert meta["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # not "auto"
    assert meta["inputs"] == {"image": {"path": str(image_file.resolve()), "size": [H, W]},
                              "hint": {"path": str(hint.resolve()), "size": [H, W]}}
    assert meta["versions"]["torch"] == torch.__version__ and meta["versions"]["doubledip"]
