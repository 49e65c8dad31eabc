"""Export of fitted generators (issue 6): ONNX checked in onnxruntime (CPU), TorchScript, the
manifest, load_exported, a size the nets' stride does not divide, the CLI's --export.

Each exported layer is compared with the fitted torch net (``result.fitted``) re-run on its input
(batch statistics, contiguous memory), cropped: that is what the files hold. That they are the
task's result fields is tests/test_exported_best.py's part; the loader's own module (no torch for
ONNX files), tests/test_exported_loader.py's. ONNX goes through the dynamo exporter for two tasks
and the TorchScript-based one for the rest, to keep this file quick; "auto" tries dynamo first.
"""
import copy
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import doubledip as dd
from doubledip.engine.export import export, load_exported

H, W = 20, 28  # neither divisible by the nets' stride (8 to 32): padded, then cropped back
# onnxruntime and torch both compute in float32; the first BatchNorm normalises a conv of the
# tiny-variance noise input, which amplifies their different summation orders (measured up to
# 1.1e-5 on the learned-airlight net on this machine, 3e-8 to 3.4e-6 on the others)
TOL = 3e-5

_rng = np.random.default_rng(0)
IMG = _rng.random((H, W, 3)).astype(np.float32)
IMG2 = _rng.random((H, W, 3)).astype(np.float32)
HINT = np.zeros((H, W), np.float32)
HINT[5:12, 6:20] = 1

TASKS = {
    # key: (fit, names, ONNX exporter used in the parity test)
    "separate": (lambda c: dd.separate(IMG, c), ["layer_0", "layer_1"], "legacy"),
    "separate_pair": (lambda c: dd.separate_pair(IMG, IMG2, c), ["layer_0", "layer_1", "alpha_0", "alpha_1"], "legacy"),
    "segment": (lambda c: dd.segment(IMG, c, fg_hint=HINT, bg_hint=1 - HINT), ["foreground", "background", "mask"], "dynamo"),
    "dehaze": (lambda c: dd.dehaze(IMG, c, passes=1, airlight=[0.8, 0.8, 0.9]), ["image", "transmission"], "dynamo"),
    "dehaze_learned": (lambda c: dd.dehaze(IMG, c), ["image", "transmission", "airlight"], "legacy"),
    "remove_watermark": (lambda c: dd.remove_watermark(IMG, HINT, c), ["clean", "watermark", "mask"], "legacy"),
    "remove_watermark_multi": (lambda c: dd.remove_watermark_multi([IMG, IMG2], c),
                               ["clean_0", "clean_1", "mask", "watermark"], "legacy"),
}
CONFIG = dd.SolverConfig(iterations=3, repeats=1, seed=0, device="cpu")


@pytest.fixture(scope="module")
def results():
    return {key: fit(CONFIG) for key, (fit, _, _) in TASKS.items()}


@pytest.fixture(scope="module")
def ts_exports(results, tmp_path_factory):
    """key -> folder with the result's TorchScript export (shared by the tests that only read it)."""
    root = tmp_path_factory.mktemp("ts")
    return {key: r.export(root / key, format="torchscript") for key, r in results.items()}


def _needs_onnx():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    return pytest.importorskip("onnxruntime")


def reference(result, memory_format=torch.contiguous_format) -> dict:
    """name -> the fitted net re-run on its fixed input, cropped (alpha nets: the mixing weight)."""
    f = result.fitted
    (top, left), (h, w), (hp, wp) = f["offset"], f["size"], f["padded"]
    out = {}
    with torch.no_grad():
        for name, net in f["nets"].items():
            net = copy.deepcopy(net)  # batch norm updates running statistics (unused) in place
            net.set_memory_format(memory_format)
            y = net(f["inputs"][name])
            if name.startswith("alpha_"):
                out[name] = (0.9 * y[:, :, hp // 2:hp // 2 + 1, wp // 2:wp // 2 + 1] + 0.05).numpy()
            else:
                out[name] = y[:, :, top:top + h, left:left + w].numpy()
    return out


def _hwc(y):
    y = y[0].transpose(1, 2, 0)
    return y[:, :, 0] if y.shape[2] == 1 else y


@pytest.mark.parametrize("key", list(TASKS))
def test_onnx_matches_the_fitted_nets_in_onnxruntime(key, results, tmp_path):
    ort = _needs_onnx()
    import onnx

    result, (_, names, exporter) = results[key], TASKS[key]
    export(result, tmp_path, "onnx", exporter=exporter)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["exporter"] == exporter and list(manifest["generators"]) == names
    ref = reference(result)
    as_fitted = reference(result, torch.channels_last)  # the memory format the fit ran in
    for name in names:
        path = tmp_path / manifest["generators"][name]["file"]
        model = onnx.load(str(path))
        # the exporter would write training-mode BatchNorm2d as an inference BatchNormalization
        # (running statistics): the graph computes batch statistics with plain ops instead
        assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"]
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        baked = session.run(None, {})[0]  # the fixed input is stored in the file
        fed = session.run(None, {"z": np.load(tmp_path / f"{name}.input.npy")})[0]
        assert baked.shape == ref[name].shape
        assert np.array_equal(baked, fed)
        assert np.abs(baked - ref[name]).max() < TOL, (key, name, np.abs(baked - ref[name]).max())
        # channels-last and contiguous torch runs differ by float rounding only
        assert np.abs(baked - as_fitted[name]).max() < 1e-4


@pytest.mark.parametrize("key", list(TASKS))
def test_torchscript_matches_the_fitted_nets(key, results, ts_exports):
    result, (_, names, _) = results[key], TASKS[key]
    tmp_path = ts_exports[key]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    ref = reference(result)
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(tmp_path / manifest["generators"][name]["file"]))
        with torch.no_grad():
            baked = module().numpy()
            again = module().numpy()  # running statistics move; batch statistics do not
            fed = module(torch.from_numpy(np.load(tmp_path / f"{name}.input.npy"))).numpy()
        assert np.abs(baked - ref[name]).max() < TOL, (key, name)
        assert np.array_equal(baked, again) and np.array_equal(baked, fed)


def test_load_exported_round_trip(results, ts_exports, tmp_path):
    """Layers at the caller's size in the task's layout, recombined images as the manifest says."""
    _needs_onnx()
    r = results["separate_pair"]
    export(r, tmp_path / "pair", "onnx", exporter="legacy")
    out = dd.load_exported(tmp_path / "pair")
    ref = reference(r)
    assert out["layer_0"].shape == (H, W, 3) and out["layer_0"].dtype == np.float32
    assert np.abs(out["layer_1"] - _hwc(ref["layer_1"])).max() < TOL
    assert out["alphas"].shape == (2,) and 0.05 < out["alphas"].min() <= out["alphas"].max() < 0.95
    assert np.allclose(out["alphas"], [ref["alpha_0"].item(), ref["alpha_1"].item()], atol=TOL)
    a = out["alpha_1"]
    assert np.allclose(out["mixture_1"], a * out["layer_0"] + (1 - a) * out["layer_1"], atol=1e-6)
    assert [x.shape for x in out["layers"]] == [(H, W, 3)] * 2

    out = load_exported(ts_exports["separate"])
    assert np.allclose(out["reconstruction"], np.clip(out["layer_0"] + out["layer_1"], 0, 1))

    out = load_exported(ts_exports["segment"])
    assert out["mask"].shape == (H, W) and out["foreground"].shape == (H, W, 3)
    m = out["mask"][:, :, None]
    assert np.allclose(out["image"], m * out["foreground"] + (1 - m) * out["background"], atol=1e-6)

    out = load_exported(ts_exports["dehaze"])  # a known airlight: a constant in the manifest
    assert np.allclose(out["airlight"], [0.8, 0.8, 0.9])
    t = out["transmission"][:, :, None]
    assert np.allclose(out["hazy"], t * out["image"] + (1 - t) * out["airlight"], atol=1e-6)

    out = load_exported(ts_exports["remove_watermark_multi"])
    m = out["mask"][:, :, None]
    assert np.allclose(out["image_1"], m * out["watermark"] + (1 - m) * out["clean_1"], atol=1e-6)
    assert len(out["cleans"]) == 2


def test_load_exported_with_another_input(results, ts_exports):
    r, tmp_path = results["segment"], ts_exports["segment"]
    z = r.fitted["inputs"]["mask"] + 0.01 * torch.randn(r.fitted["inputs"]["mask"].shape)
    out = load_exported(tmp_path, inputs={"mask": z.numpy()})
    net = copy.deepcopy(r.fitted["nets"]["mask"])
    net.set_memory_format(torch.contiguous_format)
    with torch.no_grad():
        want = net(z)[0, 0, 2:2 + H, 2:2 + W].numpy()  # 20 x 28 padded to 24 x 32: offset (2, 2)
    assert np.abs(out["mask"] - want).max() < TOL
    with pytest.raises(ValueError, match="expected \\[1, 2, 24, 32\\]"):
        load_exported(tmp_path, inputs={"mask": np.zeros((1, 2, 20, 28), np.float32)})
    with pytest.raises(ValueError, match="expected generator names"):
        load_exported(tmp_path, inputs={"nope": z.numpy()})


@pytest.mark.parametrize("key,layers,values,recombined", [
    ("separate", ["layer_0", "layer_1"], [], ["reconstruction"]),
    ("separate_pair", ["layer_0", "layer_1"], ["alpha_0", "alpha_1"], ["mixture_0", "mixture_1"]),
    ("segment", ["foreground", "background", "mask"], [], ["image"]),
    ("dehaze_learned", ["image", "transmission", "airlight"], [], ["hazy"]),
    ("remove_watermark", ["clean", "watermark", "mask"], [], ["image"]),
    ("remove_watermark_multi", ["clean_0", "clean_1", "mask", "watermark"], [], ["image_0", "image_1"]),
])
def test_manifest_contents(key, layers, values, recombined, results, ts_exports):
    r, tmp_path = results[key], ts_exports[key]
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["task"] == r.task and m["format"] == "torchscript"
    assert m["layers"] == layers and m["values"] == values
    assert [e["name"] for e in m["recombine"]] == recombined and all(e["formula"] for e in m["recombine"])
    f = r.fitted
    assert m["size"] == [H, W] and m["padded"] == list(f["padded"]) and m["offset"] == list(f["offset"])
    assert m["padded"] != m["size"]
    assert "batch statistics" in m["batch_norm"]
    for name, g in m["generators"].items():
        assert (tmp_path / g["file"]).is_file() and (tmp_path / g["input_file"]).is_file()
        assert g["input_shape"] == list(f["inputs"][name].shape)
        assert g["output_shape"] == ([1, 1, 1, 1] if name in values else [1, f["nets"][name].config.out_channels, H, W])
    if key.startswith(("dehaze", "remove_watermark")):  # post-processing the files cannot hold
        assert any("last" in s for s in m["not_included"])
    if key == "remove_watermark":
        assert m["recombine"][0]["op"] is None and "hint" in m["recombine"][0]["formula"]


def test_size_not_divisible_by_the_stride(tmp_path):
    """21 x 27 (odd): padded to 96 x 96 for the 5-level nets, the graph crops back to 21 x 27."""
    img = np.random.default_rng(1).random((21, 27, 3)).astype(np.float32)
    r = dd.separate(img, CONFIG.replace(iterations=2))
    assert r.fitted["padded"] == (96, 96) and r.fitted["offset"] == (37, 34)
    r.export(tmp_path / "ts", "torchscript")
    out = load_exported(tmp_path / "ts")
    ref = reference(r)
    assert out["layer_0"].shape == (21, 27, 3)
    assert np.abs(out["layer_0"] - _hwc(ref["layer_0"])).max() < TOL
    _needs_onnx()
    export(r, tmp_path / "onnx", "onnx", exporter="legacy")
    out = load_exported(tmp_path / "onnx")
    assert out["layer_1"].shape == (21, 27, 3)
    assert np.abs(out["layer_1"] - _hwc(ref["layer_1"])).max() < TOL


def test_onnx_runs_from_numpy_and_onnxruntime_alone(results, tmp_path):
    """The README's snippet, in a fresh interpreter that imports no doubledip and no torch."""
    _needs_onnx()
    r = results["separate"]
    export(r, tmp_path, "onnx", exporter="legacy")
    code = f"""
import json, sys
import numpy as np, onnxruntime as ort
d = {str(tmp_path)!r}
manifest = json.load(open(d + "/manifest.json"))
layers = {{name: ort.InferenceSession(d + "/" + g["file"]).run(None, {{}})[0][0].transpose(1, 2, 0)
          for name, g in manifest["generators"].items()}}
np.save(d + "/check.npy", np.stack([layers["layer_0"], layers["layer_1"]]))
assert not [m for m in sys.modules if m.startswith(("doubledip", "torch"))]
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "check.npy")
    ref = reference(r)
    assert np.abs(got[0] - _hwc(ref["layer_0"])).max() < TOL
    assert np.abs(got[1] - _hwc(ref["layer_1"])).max() < TOL


def test_auto_falls_back_to_the_legacy_exporter(results, tmp_path, monkeypatch):
    _needs_onnx()
    real = torch.onnx.export

    def no_dynamo(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("dynamo exporter unavailable (test)")
        return real(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    r = results["segment"]
    export(r, tmp_path, "onnx")
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["exporter"] == "legacy" and m["opset"] >= 17
    out = load_exported(tmp_path)
    assert np.abs(out["foreground"] - _hwc(reference(r)["foreground"])).max() < TOL


def test_export_replaces_an_earlier_export(results, tmp_path):
    results["separate_pair"].export(tmp_path, "torchscript")
    (tmp_path / "mine.npy").write_bytes(b"user file")
    results["separate"].export(tmp_path, "torchscript")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["layer_0.input.npy", "layer_0.pt", "layer_1.input.npy", "layer_1.pt",
                     "manifest.json", "mine.npy"]


def test_bad_arguments(results, tmp_path):
    r = results["separate"]
    with pytest.raises(ValueError, match="format must be one of .* got 'tflite'"):
        r.export(tmp_path, "tflite")
    with pytest.raises(ValueError, match="exporter must be one of"):
        export(r, tmp_path, "onnx", exporter="fast")
    with pytest.raises(ValueError, match="result.fitted"):
        export(object(), tmp_path)
    with pytest.raises(ValueError, match="no manifest.json"):
        load_exported(tmp_path / "nothing")
    assert not any(tmp_path.iterdir())


def test_cli_export(tmp_path):
    from PIL import Image

    from doubledip.cli import main

    src = tmp_path / "in.png"
    Image.fromarray((IMG * 255).astype(np.uint8)).save(src)
    out = tmp_path / "out"
    assert main(["separate", str(src), "-o", str(out), "--iterations", "2", "--quiet",
                 "--export", "torchscript"]) == 0
    m = json.loads((out / "export" / "manifest.json").read_text())
    assert m["task"] == "separate" and m["format"] == "torchscript"
    loaded = load_exported(out / "export")
    assert loaded["reconstruction"].shape == (H, W, 3)


def test_cli_export_errors(tmp_path, capsys, monkeypatch):
    from doubledip.cli import main

    src = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray((IMG * 255).astype(np.uint8)).save(src)
    out = tmp_path / "out"
    assert main(["separate", str(src), "-o", str(out), "--export", "tflite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice: 'tflite'" in err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else real(n, *a))
    assert main(["separate", str(src), "-o", str(out), "--iterations", "2", "--export", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "doubledip[onnx]" in err
    assert not out.exists()


def test_fast_mode_pair_exports_its_scalar_weights_as_constants(tmp_path):
    """Fast mode has no alpha generators: the weights travel in the manifest's constants."""
    rng = np.random.default_rng(0)
    a = rng.random((20, 28, 3)).astype(np.float32)
    r = dd.separate_pair(a, a[::-1].copy(), dd.SolverConfig(iterations=3, mode="fast"), method="dip")
    r.export(tmp_path, "torchscript")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(manifest["generators"]) == ["layer_0", "layer_1"]
    out = dd.load_exported(tmp_path)
    assert set(manifest["constants"]) == {"alpha_0", "alpha_1"}
    np.testing.assert_allclose(out["mixture_0"], out["alpha_0"] * out["layer_0"] + (1 - out["alpha_0"]) * out["layer_1"],
                               atol=1e-6)
