"""benchmarks/experiments/vs_reference_speed.py: the pure logic (no authors' checkout, no timing runs)."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "experiments" / "vs_reference_speed.py"


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("vs_reference_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(side, task, size, rnd, s, peak, before=200.0):
    return {"side": side, "task": task, "size": size, "round": rnd, "s_per_iter": s, "cpu_s_per_iter": s / 2,
            "peak_rss_mb": peak,
            "rss_before_mb": before, "threads": 1, "commit": "abc1234"}


def test_missing_reference_exits_2(speed, tmp_path, capsys):
    assert speed.main([]) == 2
    assert speed.main(["--reference", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "dehazing.py").write_text("")  # a partial checkout is missing too
    assert speed.main(["--reference", str(tmp_path)]) == 2
    assert "--reference" in capsys.readouterr().err


def test_unknown_task_exits_2(speed, tmp_path):
    for name in speed.REFERENCE_FILES:
        (tmp_path / name).write_text("")
    assert speed.main(["--reference", str(tmp_path), "--tasks", "separate,inpaint"]) == 2


def test_warmup_off_the_block_grid_exits_2(speed, tmp_path, capsys):
    for name in speed.REFERENCE_FILES:
        (tmp_path / name).write_text("")
    assert speed.main(["--reference", str(tmp_path), "--warmup", "5", "--block", "3"]) == 2
    assert "multiple of --block" in capsys.readouterr().err


def test_table_medians_ratio_and_target(speed):
    runs = [_run("authors", "dehaze", 256, 0, 0.12, 800), _run("ours", "dehaze", 256, 0, 0.07, 600),
            _run("authors", "dehaze", 256, 1, 0.10, 810), _run("ours", "dehaze", 256, 1, 0.09, 590),
            _run("authors", "separate", 512, 0, 0.70, 1200), _run("ours", "separate", 512, 0, 0.50, 1000),
            _run("authors", "separate", 256, 0, 0.18, 700), _run("ours", "separate", 256, 0, 0.12, 650)]
    lines = speed.summarise(runs).splitlines()
    rows = [line.split(" | ") for line in lines[2:5]]
    # sorted by size, then in the task order: separate 256, dehaze 256, separate 512
    assert [(r[0].strip("| "), r[1]) for r in rows] == [("separate", "256"), ("dehaze", "256"), ("separate", "512")]
    sep, dehaze, big = rows
    assert sep[2:7] == ["0.180", "0.120", "0.67", "1.50x", "yes"]  # exactly 1.5x counts as met
    assert dehaze[2:7] == ["0.110", "0.080", "0.73", "1.38x", "no"]  # medians over the two rounds
    assert dehaze[7] == "0.055; 0.040 (1.38x)"  # CPU time: medians of the rounds' CPU s/iter
    assert dehaze[8:10] == ["805 (200)", "595 (200)"]
    assert dehaze[10].rstrip(" |") == "0.120, 0.100; 0.070, 0.090"
    assert big[6] == "no"


def test_table_with_one_side_missing(speed):
    row = speed.summarise([_run("authors", "segment", 256, 0, 0.1, 500)]).splitlines()[2]
    assert "| 0.100 | - | - | - | - | 0.050; - |" in row


def test_from_json_needs_no_reference(speed, tmp_path, capsys):
    f = tmp_path / "runs.json"
    f.write_text(json.dumps([_run("authors", "separate", 256, 0, 0.2, 700), _run("ours", "separate", 256, 0, 0.1, 600)]))
    assert speed.main(["--from-json", str(f)]) == 0
    assert "| separate | 256 | 0.200 | 0.100 | 0.50 | 2.00x | yes |" in capsys.readouterr().out


def test_ours_iterations_reach_the_timed_stage(speed):
    from doubledip.engine.solver import split_iterations
    assert speed.ours_iterations("separate", 60) == (60, 0, 0)
    for task, defaults in (("segment", (2000, 4000)), ("remove_watermark", (4000, 7000))):
        total, stage, offset = speed.ours_iterations(task, 60)
        parts = split_iterations(total, defaults)
        assert stage == 1 and parts[1] >= 60 and split_iterations(total - 1, defaults)[1] < 60
        assert offset == parts[0]


def test_synthetic_inputs_shapes(speed):
    x = speed.synthetic_inputs(64)
    assert x["image"].shape == (3, 64, 64) and x["hint"].shape == (1, 64, 64)
    assert 0 < x["hint"].mean() < 1 and (x["image2"] == x["image"][:, :, ::-1]).all()


def test_bound_table_from_counted_flops(speed):
    runs = [_run("authors", "separate", 256, 0, 0.2, 700), _run("ours", "separate", 256, 0, 0.15, 600),
            {"kind": "flops", "side": "authors", "task": "separate", "size": 256, "gflop_per_iter": 14.0,
             "matmul_gflops": 100.0},
            {"kind": "flops", "side": "ours", "task": "separate", "size": 256, "gflop_per_iter": 14.0,
             "matmul_gflops": 110.0}]
    text = speed.summarise(runs)
    assert "| separate | 256 | 0.200 | 0.150 |" in text  # the flops records are not timed rows
    row = next(line for line in text.splitlines() if line.startswith("| separate | 256 | 14.00"))
    # wall: matmul median of 100 and 110; authors 14 / 0.2 = 70 GFLOP/s = 67%; ceiling 0.2 * 105 / 14 = 1.5;
    # CPU: no CPU matmul rate recorded
    assert row.split(" | ")[4:] == ["105; -", "70, 67%; -", "93, 89%; -", "1.50x; - |"]
