"""The ``doubledip`` command end to end, its errors included."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from doubledip.cli import main


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "in.png"
    Image.fromarray((rng.random((20, 28, 3)) * 255).astype(np.uint8)).save(p)
    return p


@pytest.fixture
def hint_file(tmp_path):
    h = np.zeros((20, 28), np.uint8)
    h[5:12, 6:20] = 255
    p = tmp_path / "hint.png"
    Image.fromarray(h).save(p)
    return p


def test_separate_writes_images_and_result_json(tmp_path, image_file, capsys):
    out = tmp_path / "out"
    rc = main(["separate", str(image_file), "-o", str(out), "--iterations", "3", "--seed", "2", "--quiet"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["layer_0.png", "layer_1.png", "reconstruction.png", "result.json"]
    meta = json.loads((out / "result.json").read_text())
    assert meta["config"]["seed"] == 2 and meta["config"]["iterations"] == 3
    assert str(out.resolve()) in capsys.readouterr().out


def test_a_short_run_prints_its_warning_as_one_line(tmp_path, image_file, capsys):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CLI prints the warning itself: no Python warning escapes
        assert main(["separate", str(image_file), "-o", str(tmp_path / "o"), "--iterations", "3", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("doubledip: warning: the layers reproduce")]


def test_every_task_subcommand_runs(tmp_path, image_file, hint_file):
    runs = {
        "dehaze": ["dehaze", str(image_file), "--passes", "1", "--airlight", "0.8", "0.8", "0.9"],
        "pair": ["separate-pair", str(image_file), str(image_file)],
        "segment": ["segment", str(image_file), "--fg-hint", str(hint_file), "--bg-hint", str(hint_file)],
        "segment0": ["segment", str(image_file)],
        "wm": ["remove-watermark", str(image_file), str(hint_file), "--repeats", "1"],
        "wmm": ["remove-watermark-multi", str(image_file), str(image_file), "--repeats", "1"],
    }
    for name, args in runs.items():
        out = tmp_path / name
        assert main(args + ["-o", str(out), "--iterations", "2", "--quiet"]) == 0, name
        assert (out / "result.json").exists(), name


@pytest.mark.parametrize("args,needle", [
    (["dehaze", "missing.png"], "no such file"),
    (["separate-pair", "IMG", "missing.png"], "no such file"),
    (["remove-watermark-multi", "IMG"], "at least 2 images"),
    (["segment", "IMG", "--fg-hint", "IMG"], "both fg_hint and bg_hint"),
    (["separate", "IMG", "--iterations", "0"], "iterations must be >= 1"),
    (["separate", "IMG", "--device", "tpu"], "device must be"),
    (["separate", "IMG", "--iterations", "many"], "invalid int value"),
    (["frobnicate"], "invalid choice"),
])
def test_errors_exit_2_with_one_line_and_no_output(tmp_path, image_file, capsys, args, needle):
    out = tmp_path / "out"
    args = [str(image_file) if a == "IMG" else a for a in args]
    rc = main(args + ["-o", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not out.exists()


def test_not_an_image_file(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00\x01not an image")
    assert main(["dehaze", str(bad), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    assert "not a readable image" in capsys.readouterr().err


def test_module_entry_point_runs_the_demo(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "doubledip", "demo", "--iterations", "2", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "input.png").exists() and (out / "image.png").exists() and (out / "transmission.png").exists()
    meta = json.loads((out / "result.json").read_text())
    assert meta["config"]["mode"] == "fast"
    assert meta["run"]["stop_reason"] != "no fit"  # the demo fits (fast dehazing's default does not)
    assert str(out.resolve()) in proc.stdout


def test_missing_required_argument_is_a_usage_error(capsys):
    assert main(["separate"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1


def test_several_images_run_as_one_batch(tmp_path, image_file):
    other = tmp_path / "sub" / "in.png"
    other.parent.mkdir()
    other.write_bytes(image_file.read_bytes())
    second = tmp_path / "second.png"
    second.write_bytes(image_file.read_bytes())
    out = tmp_path / "out"
    args = ["separate", str(image_file), str(other), str(second), "-o", str(out), "--iterations", "2", "--quiet"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["0_in", "1_in", "second"]
    for folder in out.iterdir():
        assert (folder / "layer_0.png").exists() and (folder / "result.json").exists()
    seeds = sorted(json.loads((out / f / "result.json").read_text())["config"]["seed"] for f in ("0_in", "1_in", "second"))
    assert seeds == [0, 1, 2]


def test_several_images_of_different_sizes_fail_cleanly(tmp_path, image_file, capsys):
    small = tmp_path / "small.png"
    Image.new("RGB", (10, 12)).save(small)
    out = tmp_path / "out"
    assert main(["dehaze", str(image_file), str(small), "-o", str(out), "--iterations", "2", "--quiet"]) == 2
    assert "one size" in capsys.readouterr().err
    assert not out.exists()


def test_bench_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", "--task", "dehaze", "--size", "32", "--batch", "1", "2", "--steps", "1", "-o", str(out)]) == 0
    table = capsys.readouterr().out
    assert "s/iter" in table and table.count("dehaze") == 2
    rows = json.loads((out / "bench.json").read_text())
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["seconds_per_iteration"] > 0 and r["gflop_per_iteration"] > 0 and r["matmul_gflops"] > 0
    # FLOPs scale with the number of images in the batch (the grouped convs are counted right)
    assert rows[1]["gflop_per_iteration"] == pytest.approx(2 * rows[0]["gflop_per_iteration"], rel=0.05)


def test_bench_rejects_an_unknown_task(capsys):
    assert main(["bench", "--task", "colorize", "--size", "32", "--steps", "1"]) == 2
    assert "task must be one of" in capsys.readouterr().err


def test_compile_and_low_memory_flags_reach_the_config(tmp_path, image_file, monkeypatch):
    testing = pytest.importorskip("torch._dynamo.testing")
    import torch

    from doubledip.engine import compiled

    torch._dynamo.reset()
    counter = testing.CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(compiled, "backend", counter)  # dynamo without inductor: seconds
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["separate", str(image_file), "-o", str(out), "--iterations", "3", "--quiet",
                 "--compile", "--device", "cpu"]) == 0
    meta = json.loads((out / "result.json").read_text())
    assert meta["config"]["compile"] is True and meta["config"]["low_memory"] is False
    assert counter.frame_count == 1
    low = tmp_path / "low"
    assert main(["separate", str(image_file), "-o", str(low), "--iterations", "3", "--quiet", "--low-memory"]) == 0
    assert json.loads((low / "result.json").read_text())["config"]["low_memory"] is True
    assert main(["separate", str(image_file), "-o", str(tmp_path / "both"), "--quiet", "--compile", "--low-memory"]) == 2
    assert not (tmp_path / "both").exists()
    bench_out = tmp_path / "b"
    assert main(["bench", "--task", "dehaze", "--size", "32", "--steps", "1", "--compile", "--device", "cpu",
                 "-o", str(bench_out)]) == 0
    (row,) = json.loads((bench_out / "bench.json").read_text())
    assert row["compile"] is True and row["first_step_seconds"] > 0
    torch._dynamo.reset()
