"""An export reproduces the result: ``load_exported(d)`` gives the task's result fields (the nets'
outputs before any post-processing) within 1e-4, in ONNX and TorchScript, also when the result
is not the last iteration's.

Each run is forced to end worse than it was: gradient ascent (a negative lr) over its last
iterations, so that the tracked best (or chosen stage end) is an earlier iteration, and the test
checks that the last iteration's weights would not have passed. Separation's input noise is
switched on from the start (the method's ramp perturbs nothing before iteration 100), so the
exported input is a perturbed one.
"""
import copy
import json
import types

import numpy as np
import pytest
import torch

import doubledip as dd
from doubledip.engine import solver
from doubledip.engine.export import export, reference_outputs
from doubledip.engine.inputs import augment, unaugment
from doubledip.engine.tasks import dehazing, pair, segmentation, separation, watermark
from doubledip.exported import load_exported

TOL = 1e-4
H, W = 20, 28
_rng = np.random.default_rng(0)
IMG = _rng.random((H, W, 3)).astype(np.float32)
IMG2 = _rng.random((H, W, 3)).astype(np.float32)
HINT = np.zeros((H, W), np.float32)
HINT[5:12, 6:20] = 1
FORMATS = ["torchscript", "onnx"]


def _config(**kw):
    return dd.SolverConfig(seed=0, device="cpu", progress=False, repeats=1, **kw)


def _fit(cls, fit, ascent_after=None, ascent_stage=0, patches=()):
    """Run ``fit()`` with ``cls``'s problems captured, after iteration ``ascent_after`` (of stage
    ``ascent_stage``) gradient ascent, and ``patches`` ((module, name, value)...) applied.
    Returns the result, the problems, and the PSNR and outputs of every BestTracker update."""
    problems, tracked, outputs_seen = [], [], []
    with pytest.MonkeyPatch.context() as mp:
        init = cls.__init__

        def capture(self, *args, **kwargs):
            init(self, *args, **kwargs)
            problems.append(self)

        mp.setattr(cls, "__init__", capture)
        if ascent_after is not None:
            mp.setattr(cls, "lr_scale", lambda self, stage, k: -3.0 if stage == ascent_stage and k > ascent_after else 1.0)
        update = solver.BestTracker.update

        def spy(self, psnr, outputs):
            tracked.append(psnr.detach().clone())
            outputs_seen.append({k: v.clone() for k, v in outputs.items()})
            update(self, psnr, outputs)

        mp.setattr(solver.BestTracker, "update", spy)
        for module, name, value in patches:
            mp.setattr(module, name, value)
        result = fit()
    return types.SimpleNamespace(result=result, problems=problems, psnr=tracked, outputs=outputs_seen)


def _load(result, fmt, directory):
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxscript")
        pytest.importorskip("onnxruntime")
        export(result, directory, "onnx", exporter="legacy")
    else:
        export(result, directory, "torchscript")
    return load_exported(directory)


def _last_weights(problem, inputs) -> dict:
    """What an export of the nets as they ended would give (name -> H x W [x C])."""
    fake = types.SimpleNamespace(fitted=problem.fitted(inputs, 0))
    out = {}
    for name, y in reference_outputs(fake).items():
        y = y[0].transpose(1, 2, 0)
        out[name] = y[:, :, 0] if y.shape[2] == 1 else y
    return out


def _gap(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).max())


# ---- separation ---------------------------------------------------------------------------

# separation's input noise from the first iteration on (the ramp's starts at iteration 100)
NOISE_FROM_THE_START = [(separation, "noise_sigma", lambda k, last, after_ramp=1e-3: 0.0 if last else 1e-3)]


@pytest.fixture(scope="module")
def separated():
    """Reference mode; tracked at 0, 8, ..., 56 (the last); ascent after 48."""
    return _fit(separation.SeparationProblem, lambda: dd.separate(IMG, _config(iterations=57)), ascent_after=48,
                patches=NOISE_FROM_THE_START)


def test_separation_best_is_an_earlier_iteration(separated):
    r, (problem,) = separated.result, separated.problems
    psnr = torch.cat(separated.psnr).tolist()
    assert max(range(len(psnr)), key=psnr.__getitem__) < len(psnr) - 1 and psnr[-1] < max(psnr) - 0.5
    assert sorted(r.fitted["noise"]) == ["layer_0", "layer_1"]  # the best step's inputs were perturbed
    last = _last_weights(problem, {"layer_0": problem.inputs[0][0], "layer_1": problem.inputs[1][0]})
    assert min(_gap(last[f"layer_{i}"], r.layers[i]) for i in range(2)) > 1e-2


@pytest.mark.parametrize("fmt", FORMATS)
def test_separation_export_gives_the_result(separated, fmt, tmp_path):
    r = separated.result
    out = _load(r, fmt, tmp_path)
    for i in range(2):
        assert _gap(out["layers"][i], r.layers[i]) < TOL, (fmt, i)
    assert _gap(out["reconstruction"], r.reconstruction) < 2 * TOL
    # the fixed noise alone (unperturbed) is another input, so another output
    noise = {n: np.load(tmp_path / f"{n}.noise.npy") for n in ("layer_0", "layer_1")}
    assert _gap(load_exported(tmp_path, inputs=noise)["layer_0"], r.layers[0]) > TOL


def test_a_resumed_run_exports_what_the_uninterrupted_run_does(separated, tmp_path):
    """The snapshot travels in the run's checkpoint: a run stopped after its best step (at its
    7th logged step, iteration 55) and resumed exports the uninterrupted run's generators."""
    from doubledip.engine import checkpoint

    want = separated.result
    config = _config(iterations=57, log_every=8, checkpoint_dir=str(tmp_path / "ck"), checkpoint_every=8)
    logged = []

    def stop_at_the_7th(record):
        logged.append(record["iteration"])
        if len(logged) == 7:
            checkpoint.request_stop()

    fit = lambda c: lambda: dd.separate(IMG, c)  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        _fit(separation.SeparationProblem, fit(config.replace(callback=stop_at_the_7th)), ascent_after=48,
             patches=NOISE_FROM_THE_START)
    checkpoint.reset()
    got = _fit(separation.SeparationProblem, fit(config.replace(resume=True)), ascent_after=48,
               patches=NOISE_FROM_THE_START).result
    assert checkpoint.resumed_at() == 56
    for name, net in want.fitted["nets"].items():
        mine = got.fitted["nets"][name].state_dict()
        assert all(torch.equal(v, mine[k]) for k, v in net.state_dict().items()), name
        assert torch.equal(got.fitted["inputs"][name], want.fitted["inputs"][name])
    out = _load(got, "torchscript", tmp_path / "ts")
    assert max(_gap(out["layers"][i], want.layers[i]) for i in range(2)) < TOL


def test_fast_separation_exports_the_newest_term_of_its_average(tmp_path):
    """Fast mode's layers are a moving average of the tracked iterations' layers, which no single
    set of weights outputs: the files hold the last tracked iteration's generators (the average's
    newest term), and the manifest says that they are not the result."""
    run = _fit(separation.SeparationProblem,
               lambda: dd.separate(IMG, _config(iterations=17, mode="fast", early_stop=False)))
    r, newest = run.result, run.outputs[-1]
    out = _load(r, "torchscript", tmp_path)
    for i in range(2):
        want = newest[f"layer_{i}"][0].permute(1, 2, 0).numpy()
        assert _gap(out["layers"][i], want) < TOL
        assert _gap(out["layers"][i], r.layers[i]) > 1e-3  # the average is another image
    notes = json.loads((tmp_path / "manifest.json").read_text())["not_included"]
    assert any("moving average" in n and "last tracked iteration" in n for n in notes)


def test_batched_separation_exports_each_images_best(tmp_path):
    """Two images of one batch: each result's export is its own best (the blocks of the stacked
    nets' weights that belong to it)."""
    run = _fit(separation.SeparationProblem,
               lambda: separation.separate_many([IMG, IMG2], _config(iterations=41)), ascent_after=24)
    assert torch.stack(run.psnr).argmax(0).tolist() != [len(run.psnr) - 1] * 2
    for b, r in enumerate(run.result):
        out = _load(r, "torchscript", tmp_path / str(b))
        assert max(_gap(out["layers"][i], r.layers[i]) for i in range(2)) < TOL, b


def test_an_augmented_step_runs_augment_net_unaugment_in_the_graph(separated, tmp_path):
    """The exported graph of a generator whose kept step was augmented (index 4 or a rotation):
    unaugment(net(augment(z))) in the image's orientation, as the task ran it."""
    r = separated.result
    for index in (4, 5):  # upside down; upside down and rotated (the padded size is square)
        fake = copy.copy(r)
        fake.fitted = dict(r.fitted, augmentation={n: index for n in r.fitted["nets"]})
        want = {}
        (top, left), (h, w) = r.fitted["offset"], r.fitted["size"]
        with torch.no_grad():
            for name, net in r.fitted["nets"].items():
                net = copy.deepcopy(net)
                y = unaugment(net(augment(r.fitted["inputs"][name], index)), index)
                want[name] = y[0, :, top:top + h, left:left + w].permute(1, 2, 0).numpy()
        for fmt in FORMATS:
            out = _load(fake, fmt, tmp_path / f"{fmt}{index}")
            for name in want:
                assert _gap(out[name], want[name]) < 3e-5, (fmt, index, name)


# ---- two-image separation -----------------------------------------------------------------

@pytest.fixture(scope="module", params=["reference", "fast"])
def paired(request):
    """Tracked every iteration; ascent after 16 of 25. Fast mode: scalar mixing weights."""
    return _fit(pair.PairProblem, lambda: dd.separate_pair(IMG, IMG2, _config(iterations=25, mode=request.param,
                                                                               early_stop=False), method="dip"),
                ascent_after=16)


@pytest.mark.parametrize("fmt", FORMATS)
def test_pair_export_gives_the_result(paired, fmt, tmp_path):
    r, (problem,) = paired.result, paired.problems
    psnr = torch.cat(paired.psnr).tolist()
    assert max(range(len(psnr)), key=psnr.__getitem__) < len(psnr) - 1
    last = _last_weights(problem, problem.inputs)
    assert _gap(last["layer_0"], r.layers[0]) > 1e-3
    out = _load(r, fmt, tmp_path)
    for i in range(2):
        assert _gap(out["layers"][i], r.layers[i]) < TOL, (fmt, i)
    # reference mode: the alpha generators' outputs; fast mode: constants (no alpha generators)
    assert _gap([out["alpha_0"], out["alpha_1"]], r.alphas) < TOL


# ---- dehazing -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dehazed():
    """Fast mode (no guided filter: the result's transmission is the net's, clamped to [0.1, 1]),
    one pass learning the airlight, the fit kept (no fallback to the classic result); tracked at
    0, 8, ..., 32; ascent after 16."""
    return _fit(dehazing.DehazeProblem,
                lambda: dd.dehaze(IMG, _config(iterations=33, mode="fast", early_stop=False), passes=1,
                                  learn_airlight=True, keep_fit=True), ascent_after=16)


@pytest.mark.parametrize("fmt", FORMATS)
def test_dehaze_export_gives_the_nets_outputs_of_the_result(dehazed, fmt, tmp_path):
    r, (problem,) = dehazed.result, dehazed.problems
    psnr = torch.cat(dehazed.psnr).tolist()
    assert max(range(len(psnr)), key=psnr.__getitem__) < len(psnr) - 1
    assert sorted(r.fitted["noise"]) == ["airlight", "image"]  # perturbed; the transmission's is not
    last = _last_weights(problem, problem.inputs)
    assert _gap(np.clip(last["transmission"], 0.1, 1), r.transmission) > 1e-3
    out = _load(r, fmt, tmp_path)
    assert _gap(np.clip(out["transmission"], 0.1, 1), r.transmission) < TOL
    assert _gap(out["airlight"].mean(axis=(0, 1)), r.airlight) < TOL


# ---- segmentation -------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["stage_1_end", "latched"])
def segmented(request):
    """2 + 6 iterations with hints. stage_1_end: ascent in stage 2, whose end is then worse: the
    result is stage 1's end. latched: the stop threshold at 0 dB latches stage 2's first
    iteration, and ascent follows it."""
    patches = [(segmentation, "STOP_PSNR", 0.0)] if request.param == "latched" else []
    fit = lambda: dd.segment(IMG, _config(iterations=8, log_every=100), fg_hint=HINT, bg_hint=1 - HINT)  # noqa: E731
    return request.param, _fit(segmentation.SegmentationProblem, fit, ascent_after=0, ascent_stage=1, patches=patches)


@pytest.mark.parametrize("fmt", FORMATS)
def test_segmentation_export_gives_the_chosen_stage_end(segmented, fmt, tmp_path):
    case, run = segmented
    r, (problem,) = run.result, run.problems
    (p1, _), (p2, _) = problem.stage_ends
    if case == "stage_1_end":
        assert float(p2) < float(p1)  # the result is stage 1's end
    else:
        assert float(p2) >= float(p1) and bool(problem.stopped.all())
    last = _last_weights(problem, problem.inputs)
    assert _gap(last["mask"], r.soft_mask) > 1e-3
    out = _load(r, fmt, tmp_path)
    assert _gap(out["mask"], r.soft_mask) < TOL
    assert _gap(out["foreground"], r.foreground) < TOL and _gap(out["background"], r.background) < TOL


# ---- watermarks: one run (a median of one is that run) ------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_one_watermark_run_exports_its_last_iterations_nets(fmt, tmp_path):
    """With repeats=1 the result is one run's last iteration (the weights before the solver's
    last update); with more, medians over runs, which the manifest says the files are not."""
    r = dd.remove_watermark(IMG, HINT, _config(iterations=4))
    out = _load(r, fmt, tmp_path)
    assert _gap(out["watermark"], r.watermark) < TOL and _gap(out["mask"], r.mask) < TOL
    hint = HINT[:, :, None]
    assert _gap((1 - hint) * IMG + hint * out["clean"], r.image) < TOL
    multi = dd.remove_watermark_multi([IMG, IMG2], _config(iterations=3))
    out = _load(multi, fmt, tmp_path / "multi")
    assert _gap(out["mask"], multi.mask) < TOL
    manifest_notes = " ".join(json.loads((tmp_path / "multi" / "manifest.json").read_text())["not_included"])
    assert "medians" in manifest_notes and "last run only" in manifest_notes


# ---- the snapshot's bookkeeping -----------------------------------------------------------

def test_keep_where_and_snapshot_take_each_problems_own_blocks():
    take = torch.tensor([True, False, True])
    new, kept = torch.arange(12.0).reshape(6, 2), -torch.ones(6, 2)
    got = solver.keep_where(take, new, kept)
    assert got.tolist() == [[0, 1], [2, 3], [-1, -1], [-1, -1], [8, 9], [10, 11]]
    assert solver.keep_where(take, torch.tensor(5.0), torch.tensor(1.0)).item() == 5.0  # shared: any
    with pytest.raises(ValueError, match="3 blocks along dim 0, got \\(4, 2\\)"):
        solver.keep_where(take, torch.zeros(4, 2), torch.zeros(4, 2))

    nets = torch.nn.ModuleDict({"g": torch.nn.Linear(2, 6)})  # weight 6 x 2, bias 6: 3 blocks
    snap = solver.Snapshot(nets, 3)
    snap.update(None, {"z": torch.zeros(3, 1, 2, 2)})
    first = {k: v.clone() for k, v in snap.weights.items()}
    with torch.no_grad():
        for p in nets.parameters():
            p.add_(1.0)
    snap.update(take, {"z": torch.ones(3, 1, 2, 2)}, augmentation=4)
    w, w0 = snap.weights["g.weight"], first["g.weight"]
    assert torch.equal(w[:2], w0[:2] + 1) and torch.equal(w[2:4], w0[2:4]) and torch.equal(w[4:], w0[4:] + 1)
    assert snap.inputs["z"][:, 0, 0, 0].tolist() == [1, 0, 1] and snap.augmentation.tolist() == [4, 0, 4]
    other = solver.Snapshot.choose(~take, snap, snap)
    assert torch.equal(other.weights["g.bias"], snap.weights["g.bias"])
    with pytest.raises(ValueError, match="expected the nets and inputs of the first update"):
        snap.update(take, {"other": torch.zeros(3, 1, 2, 2)})
