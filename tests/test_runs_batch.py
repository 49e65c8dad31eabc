"""``dd.run_many`` / ``doubledip batch`` in this process: inputs and names, the manifest, failures
and exit codes, resume and retry, atomic outputs and Ctrl-C (tiny images, a few iterations)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import doubledip as dd
from doubledip.cli import main
from doubledip.runs import inputs as run_inputs
from doubledip.runs import manifest as mf
from doubledip.runs.batch import BatchInterrupted

CFG = dd.SolverConfig(iterations=3, seed=1, device="cpu")


def _png(path, seed, size=(24, 32)):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def folders(tmp_path):
    """a/x.png, a/y.png, b/x.png (a file name twice), b/notes.txt (not an image)."""
    _png(tmp_path / "a" / "x.png", 0)
    _png(tmp_path / "a" / "y.png", 1)
    _png(tmp_path / "b" / "x.png", 2)
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    return tmp_path


def _records(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_names_are_unique_and_stable(folders):
    keys = [str(folders / "a" / "x.png"), str(folders / "b" / "x.png"), str(folders / "a" / "y.png")]
    names = run_inputs.assign_names(keys)
    assert names[keys[2]] == "y"
    assert names[keys[0]] != names[keys[1]] and all(names[k].startswith("x-") for k in keys[:2])
    assert run_inputs.assign_names(list(reversed(keys))) == names  # not order-dependent
    # a name given before is kept, and a newcomer of that stem gets another
    known = {keys[0]: "x"}
    again = run_inputs.assign_names(keys, known)
    assert again[keys[0]] == "x" and again[keys[1]] != "x"
    assert run_inputs.assign_names([str(folders / "m" / "manifest.jsonl.png")])  # never the manifest's name
    assert run_inputs.assign_names([str(folders / "manifest.jsonl.png")])[str(folders / "manifest.jsonl.png")] != "manifest.jsonl"


def test_inputs_files_folders_globs_and_sidecars(folders, tmp_path):
    from doubledip.engine.tasks import registry

    got = run_inputs.collect(registry.get("separate"), [str(folders / "a"), str(folders / "b" / "*.png"),
                                                        str(folders / "a" / "x.png")])
    assert [k for k, _, _ in got] == sorted(str((folders / p).resolve()) for p in ("a/x.png", "a/y.png", "b/x.png"))
    # remove_watermark: the hint beside each image; an image without one cannot run
    _png(tmp_path / "w" / "p.png", 3)
    _png(tmp_path / "w" / "p.hint.png", 4)
    _png(tmp_path / "w" / "q.png", 5)
    got = {os.path.basename(k): (paths, missing) for k, paths, missing in
           run_inputs.collect(registry.get("remove_watermark"), [str(tmp_path / "w")])}
    assert sorted(got) == ["p.png", "q.png"]
    assert got["p.png"][0]["hint"].endswith("p.hint.png") and not got["p.png"][1]
    assert "q.hint.png" in got["q.png"][1]
    with pytest.raises(ValueError, match="matched no file"):
        run_inputs.collect(registry.get("separate"), [str(tmp_path / "nothing" / "*.png")])
    with pytest.raises(ValueError, match="no such file or folder"):
        run_inputs.collect(registry.get("separate"), [str(tmp_path / "missing.png")])


def test_batch_outputs_equal_single_runs_and_manifest_records_states(folders, tmp_path):
    out = tmp_path / "out"
    report = dd.run_many("separate", [folders / "a", folders / "b"], out, CFG)
    assert len(report.done) == 3 and not report.failed
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert len(names) == 4 and "manifest.jsonl" in names and "y" in names
    recs = _records(out)
    assert [r["status"] for r in recs] == ["running", "done"] * 3
    for r in recs:
        assert set(r) >= {"input", "status", "output", "seconds", "error", "config"}
    done = [r for r in recs if r["status"] == "done"]
    assert all(r["output"] == r["name"] and r["seconds"] > 0 and r["error"] is None for r in done)
    assert done[0]["config"]["task"] == "separate" and done[0]["config"]["iterations"] == 3
    # each input's output is what a run of its own gives (same seed)
    single = dd.separate(str(folders / "a" / "y.png"), CFG)
    got = np.asarray(Image.open(out / "y" / "layer_0.png"))
    single.save(tmp_path / "single")
    assert np.array_equal(got, np.asarray(Image.open(tmp_path / "single" / "layer_0.png")))
    assert not list(out.glob(".partial-*"))


def test_failed_input_message_exit_code_and_retry(folders, tmp_path, capsys):
    bad = folders / "b" / "bad.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    argv = ["batch", "separate", str(folders / "b"), "-o", str(out), "--iterations", "2", "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "1 of 2 inputs failed" in err
    failed = [r for r in _records(out) if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["output"] is None and not (out / failed[0]["name"]).exists()
    # the single-image CLI's own message for the same file
    assert main(["separate", str(bad), "-o", str(tmp_path / "one"), "--iterations", "2", "--quiet"]) == 2
    single = capsys.readouterr().err.strip()
    assert single == f"doubledip: error: {failed[0]['error']}"
    # a rerun redoes nothing: the failure stays failed (exit 1), the done output untouched
    done_folder = out / "x"
    before = _mtimes(done_folder)
    n = len(_records(out))
    assert main(argv) == 1
    assert len(_records(out)) == n and _mtimes(done_folder) == before
    # --retry-failed runs it again; fixed, it is done
    _png(bad, 9)
    assert main(argv + ["--retry-failed"]) == 0
    assert _mtimes(done_folder) == before
    assert mf.latest(mf.read(out / "manifest.jsonl"))[str(bad.resolve())]["status"] == "done"


def test_usage_errors_exit_2(folders, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", "separate", str(tmp_path / "none" / "*.png"), "-o", str(out)]) == 2
    assert "matched no file" in capsys.readouterr().err
    assert main(["batch", "separate", str(folders / "a"), "-o", str(out), "--workers", "0"]) == 2
    assert main(["batch", "nosuchtask", str(folders / "a"), "-o", str(out)]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["batch", "separate", str(folders / "a"), "-o", str(tmp_path / "file"), "--quiet"]) == 2
    with pytest.raises(TypeError, match="unexpected options"):
        dd.run_many("separate", [folders / "a"], out, CFG, options={"passes": 1})


def test_other_settings_refused_unless_overwrite(folders, tmp_path):
    out = tmp_path / "out"
    dd.run_many("separate", [folders / "a" / "y.png"], out, CFG)
    first = (out / "y" / "result.json").read_text()
    with pytest.raises(ValueError, match=r"other settings: y \(iterations: 3 -> 4\)"):
        dd.run_many("separate", [folders / "a" / "y.png"], out, CFG.replace(iterations=4))
    report = dd.run_many("separate", [folders / "a" / "y.png"], out, CFG.replace(iterations=4), overwrite=True)
    assert report.ran and json.loads((out / "y" / "result.json").read_text())["config"]["iterations"] == 4
    assert (out / "y" / "result.json").read_text() != first
    # settings that do not change the result (the device's threads) redo nothing
    assert not dd.run_many("separate", [folders / "a" / "y.png"], out, CFG.replace(iterations=4, threads=1)).ran


def test_ctrl_c_leaves_valid_manifest_and_no_partial_output(folders, tmp_path, monkeypatch):
    from doubledip.engine.results import _ResultBase

    out = tmp_path / "out"
    original = _ResultBase.save
    calls = []

    def save_then_interrupt(self, directory, *args, **kwargs):
        calls.append(directory)
        if len(calls) == 2:  # Ctrl-C while the second input's files are being written
            original(self, directory, *args, **kwargs)
            raise KeyboardInterrupt
        return original(self, directory, *args, **kwargs)

    monkeypatch.setattr(_ResultBase, "save", save_then_interrupt)
    with pytest.raises(BatchInterrupted) as stop:
        dd.run_many("separate", [folders / "a", folders / "b"], out, CFG, checkpoint_every=0)
    assert len(stop.value.report.done) == 1 and len(stop.value.report.running) == 1
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    state = mf.latest(mf.read(out / "manifest.jsonl"))
    assert sorted(r["status"] for r in state.values()) == ["done", "running"]
    folders_left = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(folders_left) == 1  # the done one only: no partial or half-written folder
    monkeypatch.setattr(_ResultBase, "save", original)
    done = out / folders_left[0]
    before = _mtimes(done)
    report = dd.run_many("separate", [folders / "a", folders / "b"], out, CFG, checkpoint_every=0)
    assert len(report.done) == 3 and len(report.skipped) == 1 and _mtimes(done) == before


def test_cut_off_manifest_line_is_skipped_and_appends_start_fresh(tmp_path):
    book = mf.Manifest(tmp_path)
    book.append({"input": "/x.png", "name": "x", "status": "running"})
    book.close()
    with open(tmp_path / "manifest.jsonl", "a") as fh:
        fh.write('{"input": "/y.png", "status": "do')  # a kill in the middle of a write
    assert [r["input"] for r in mf.read(tmp_path / "manifest.jsonl")] == ["/x.png"]
    book = mf.Manifest(tmp_path)
    book.append({"input": "/x.png", "name": "x", "status": "done"})
    book.close()
    recs = mf.read(tmp_path / "manifest.jsonl")
    assert [(r["input"], r["status"]) for r in recs] == [("/x.png", "running"), ("/x.png", "done")]
    with pytest.raises(ValueError, match="status must be one of"):
        mf.Manifest(tmp_path).append({"input": "/x.png", "status": "paused"})


def test_second_batch_on_same_out_is_refused(folders, tmp_path):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".batch.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="another doubledip batch is writing"):
            dd.run_many("separate", [folders / "a"], out, CFG)


def test_sidecar_task_and_progress_bar(tmp_path, capsys):
    _png(tmp_path / "w" / "p.png", 3)
    h = np.zeros((24, 32), np.uint8)
    h[6:14, 8:20] = 255
    Image.fromarray(h).save(tmp_path / "w" / "p.hint.png")
    _png(tmp_path / "w" / "q.png", 5)
    out = tmp_path / "out"
    rc = main(["batch", "remove-watermark", str(tmp_path / "w"), "-o", str(out), "--iterations", "2",
               "--repeats", "1"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "batch remove_watermark" in err and "2/2" in err  # one bar over the batch
    state = {os.path.basename(k): r for k, r in mf.latest(mf.read(out / "manifest.jsonl")).items()}
    assert state["p.png"]["status"] == "done" and state["p.png"]["inputs"]["hint"].endswith("p.hint.png")
    assert state["q.png"]["status"] == "failed" and "q.hint.png" in state["q.png"]["error"]
