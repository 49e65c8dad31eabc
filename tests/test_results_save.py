"""result.save(dir): a reused folder ends up holding only this result's files; what doubledip did
not write is never deleted; another task's result is replaced only with overwrite=True; an
unwritable folder is a one-line ValueError. result.json records the device, inputs, versions."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import doubledip as dd
from doubledip.engine import results as results_mod
from doubledip.engine.io import describe_input
from doubledip.engine.results import (DehazeResult, MultiWatermarkResult, SeparationResult, describe_run,
                                      public_fields, read_result_json)

H, W = 9, 11
RNG = np.random.default_rng(0)


def _img(c=3):
    return RNG.random((H, W, c) if c > 1 else (H, W)).astype(np.float32)


def _dehaze():
    return DehazeResult(task="dehaze", image=_img(), transmission=_img(1), airlight=np.array([0.8, 0.7, 0.6]))


def _separation():
    return SeparationResult(task="separate", layers=[_img(), _img()], reconstruction=_img())


def _multi(n):
    return MultiWatermarkResult(task="remove_watermark_multi", images=[_img() for _ in range(n)],
                                watermark=_img(), mask=_img(1))


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fake_export(folder, files=("layer_0.pt", "layer_0.input.npy", "layer_0.noise.npy")):
    """What result.export writes, as far as save() reads it: files listed by a doubledip manifest."""
    folder.mkdir()
    for f in files:
        (folder / f).write_bytes(b"x")
    manifest = {"doubledip_export": 1, "task": "separate",
                "generators": {"layer_0": {"file": files[0], "input_file": files[1], "noise_file": files[2],
                                           "kind": "image"}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


# ---- reusing a folder ---------------------------------------------------------------------------

def test_saving_again_replaces_the_earlier_results_files(tmp_path):
    _multi(3).save(tmp_path)
    assert "image_2.png" in _names(tmp_path)
    r = _multi(2)
    r.save(tmp_path)
    assert _names(tmp_path) == ["image_0.png", "image_1.png", "mask.png", "result.json", "watermark.png"]
    meta = json.loads((tmp_path / "result.json").read_text())
    assert meta["files"] == _names(tmp_path)
    from PIL import Image
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "mask.png")),
                                  (np.clip(r.mask, 0, 1) * 255 + 0.5).astype(np.uint8))


def test_saving_again_removes_the_earlier_export_but_not_user_files(tmp_path):
    _separation().save(tmp_path)
    _fake_export(tmp_path / "export")
    (tmp_path / "notes.txt").write_text("mine")
    _separation().save(tmp_path)
    assert _names(tmp_path) == ["layer_0.png", "layer_1.png", "notes.txt", "reconstruction.png", "result.json"]
    # a file of the user's inside export/ keeps the folder and itself
    _fake_export(tmp_path / "export")
    (tmp_path / "export" / "README").write_text("mine")
    _separation().save(tmp_path)
    assert _names(tmp_path / "export") == ["README"]


def test_another_tasks_result_is_refused_and_left_as_it_was(tmp_path):
    _dehaze().save(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError) as err:
        _separation().save(tmp_path)
    msg = str(err.value)
    for part in (str(tmp_path), "'dehaze'", "'separate'", "overwrite=True", "--overwrite"):
        assert part in msg
    assert _snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_overwrite_replaces_another_tasks_result_and_keeps_user_files(tmp_path):
    _dehaze().save(tmp_path)
    _fake_export(tmp_path / "export")
    (tmp_path / "notes.txt").write_text("mine")
    _separation().save(tmp_path, overwrite=True)
    assert _names(tmp_path) == ["layer_0.png", "layer_1.png", "notes.txt", "reconstruction.png", "result.json"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert read_result_json(tmp_path)["task"] == "separate"


def test_a_folder_of_user_files_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"not ours")
    (tmp_path / "layer_0.png").write_bytes(b"same name as ours")
    (tmp_path / "sub").mkdir()
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="not a doubledip result") as err:
        _separation().save(tmp_path)
    assert str(tmp_path) in str(err.value) and "overwrite=True" in str(err.value)
    assert _snapshot(tmp_path) == before and _names(tmp_path) == ["layer_0.png", "photo.png", "sub"]
    _separation().save(tmp_path, overwrite=True)
    # written beside them: the file of one of the result's names replaced, nothing deleted
    assert _names(tmp_path) == ["layer_0.png", "layer_1.png", "photo.png", "reconstruction.png", "result.json", "sub"]
    assert (tmp_path / "photo.png").read_bytes() == b"not ours"
    assert (tmp_path / "layer_0.png").read_bytes() != b"same name as ours"


def test_a_result_json_that_is_not_doubledips_is_a_user_file(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps({"task": "mine", "score": 3}))
    with pytest.raises(ValueError, match="not a doubledip result"):
        _dehaze().save(tmp_path)
    (tmp_path / "result.json").write_text("{broken")
    with pytest.raises(ValueError, match="not a doubledip result"):
        _dehaze().save(tmp_path)


def test_hidden_entries_and_a_lone_export_do_not_block_a_save(tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"finder")
    _fake_export(tmp_path / "export")  # exported before saving: the export is kept
    _separation().save(tmp_path)
    assert _names(tmp_path) == [".DS_Store", "export", "layer_0.png", "layer_1.png", "reconstruction.png", "result.json"]
    assert "manifest.json" in _names(tmp_path / "export")


def test_a_result_json_written_before_the_file_list_is_recognised(tmp_path):
    # result.json as doubledip 0.1.0 wrote it: no "doubledip_result" marker, no "files" list
    (tmp_path / "image_0.png").write_bytes(b"old")
    (tmp_path / "image_5.png").write_bytes(b"old")
    old = {"task": "remove_watermark_multi", "seconds": 1.0, "config": {}, "values": {}, "final": {},
           "images": {"image_0": "image_0.png", "image_5": "image_5.png"}, "history": []}
    (tmp_path / "result.json").write_text(json.dumps(old))
    _multi(2).save(tmp_path)
    assert _names(tmp_path) == ["image_0.png", "image_1.png", "mask.png", "result.json", "watermark.png"]


def test_listed_names_outside_the_folder_are_never_deleted(tmp_path):
    outside = tmp_path / "keep.txt"
    outside.write_text("mine")
    folder = tmp_path / "out"
    folder.mkdir()
    meta = {"doubledip_result": 1, "task": "dehaze", "images": {}, "files": ["../keep.txt", "/etc/hostname", ".."]}
    (folder / "result.json").write_text(json.dumps(meta))
    _dehaze().save(folder)
    assert outside.read_text() == "mine"


def test_extra_images_are_listed_and_replaced_with_the_result(tmp_path):
    r = _dehaze()
    r.save(tmp_path, extra_images={"input": _img()})
    assert _names(tmp_path) == ["image.png", "input.png", "result.json", "transmission.png"]
    assert "input.png" in json.loads((tmp_path / "result.json").read_text())["files"]
    r.save(tmp_path)  # this time without the input: the earlier one goes
    assert _names(tmp_path) == ["image.png", "result.json", "transmission.png"]
    for bad in ("image", "../x", ".hidden"):
        with pytest.raises(ValueError, match="extra_images"):
            r.save(tmp_path, extra_images={bad: _img()})


def test_the_cli_demo_layout_can_be_saved_again(tmp_path):
    """The CLI demo: save, then input.png beside it (unlisted), then export/; run it again."""
    from doubledip.engine.io import save_png

    _dehaze().save(tmp_path)
    save_png(tmp_path / "input.png", _img())
    _fake_export(tmp_path / "export")
    _dehaze().save(tmp_path)  # the second run: the earlier export goes, input.png is not doubledip's
    assert _names(tmp_path) == ["image.png", "input.png", "result.json", "transmission.png"]
    save_png(tmp_path / "input.png", _img())
    _fake_export(tmp_path / "export")
    assert _names(tmp_path) == ["export", "image.png", "input.png", "result.json", "transmission.png"]


def test_a_real_export_is_replaced_by_the_next_save_and_written_again(tmp_path):
    r = dd.separate(np.random.default_rng(1).random((20, 28, 3)).astype(np.float32),
                    dd.SolverConfig(iterations=2, device="cpu"))
    r.save(tmp_path)
    r.export(tmp_path / "export", "torchscript")
    exported = set(_names(tmp_path / "export"))
    assert "manifest.json" in exported and len(exported) > 1
    r.save(tmp_path)
    assert "export" not in _names(tmp_path)
    r.export(tmp_path / "export", "torchscript")
    assert set(_names(tmp_path / "export")) == exported


# ---- folders that cannot be written ------------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_an_unwritable_folder_is_a_one_line_value_error():
    with pytest.raises(ValueError, match=r"^cannot write to '/proc/doubledip-test/out': ") as err:
        _dehaze().save("/proc/doubledip-test/out")
    assert "\n" not in str(err.value)
    assert isinstance(err.value.__cause__, OSError)


def test_a_path_under_a_file_or_a_file_is_a_value_error(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="cannot write to") as err:
        _dehaze().save(f / "out")
    assert str(f / "out") in str(err.value) and isinstance(err.value.__cause__, OSError)
    with pytest.raises(ValueError, match="not a folder"):
        _dehaze().save(f)


def test_a_failed_write_leaves_the_earlier_result_whole(tmp_path, monkeypatch):
    _dehaze().save(tmp_path)
    before = _snapshot(tmp_path)

    def denied(path, img):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(results_mod, "save_png", denied)
    with pytest.raises(ValueError, match=f"cannot write to '{tmp_path}': Permission denied"):
        _dehaze().save(tmp_path)
    assert _snapshot(tmp_path) == before
    assert _names(tmp_path) == ["image.png", "result.json", "transmission.png"]  # no temporary folder


# ---- what result.json records ----------------------------------------------------------------

def test_result_json_records_device_inputs_and_versions(tmp_path):
    r = _dehaze()
    assert r.device == "" and r.inputs == {}  # until the task fills them
    src = tmp_path / "hazy.png"
    describe_run(r, torch.device("cpu"), {"image": describe_input(src, (H, W))})
    r.save(tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "result.json").read_text())
    assert meta["device"] == "cpu"
    assert meta["inputs"] == {"image": {"path": str(src), "size": [H, W]}}
    import doubledip

    assert meta["versions"] == {"doubledip": doubledip.__version__, "torch": torch.__version__,
                                "python": "%d.%d.%d" % sys.version_info[:3], "numpy": np.__version__}
    assert meta["doubledip_result"] == 1
    assert public_fields(r) == ["image", "transmission", "airlight"]


def test_describe_run_sets_one_or_each_result():
    a, b = _separation(), _separation()
    out = describe_run([a, b], "cpu", [{"image": describe_input(np.zeros((H, W, 3)), (H, W))},
                                       {"image": describe_input("b.png", torch.Size([H, W]))}])
    assert out == [a, b]
    assert a.inputs == {"image": {"path": None, "size": [H, W]}}
    assert b.inputs["image"]["path"].endswith("b.png") and b.inputs["image"]["size"] == [H, W]
    describe_run([a, b], "cpu", {"image": describe_input(None, (1, 2))})  # one dict for all
    assert a.inputs == b.inputs == {"image": {"path": None, "size": [1, 2]}}
    assert a.inputs is not b.inputs
    with pytest.raises(ValueError, match=r"one inputs dict per result \(2\), got 1"):
        describe_run([a, b], "cpu", [{}])
    with pytest.raises(TypeError, match="device"):
        describe_run(a, 0, {})
    with pytest.raises(TypeError, match="describe_input"):
        describe_run(a, "cpu", {"image": (H, W)})
    with pytest.raises(TypeError, match="result"):
        describe_run(["not a result"], "cpu", {})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_is_recorded_with_its_index():
    r = describe_run(_dehaze(), "cuda", {})
    assert r.device == f"cuda:{torch.cuda.current_device()}"
