"""SolverConfig(compile=True): compiled generators compute the same function, compile once per
group and shape (never per iteration), cache on disk, and use CUDA graphs safely on CUDA.

Fast tests use dynamo with the ``aot_eager`` backend (the traced forward and the AOTAutograd
backward, run by eager kernels: seconds, not minutes); one slow test runs inductor itself.
"""
import numpy as np
import pytest
import torch

import doubledip as dd
from doubledip.engine.solver import RunContext
from doubledip.engine import compiled as compiled_mod
from doubledip.engine.tasks import dehazing, separation

torch_dynamo_testing = pytest.importorskip("torch._dynamo.testing")


def _image(h=40, w=56, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx), np.cos(5 * yy), xx * yy], -1) * 0.4 + 0.5
    return np.clip(base + 0.05 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


@pytest.fixture
def counted(monkeypatch):
    """aot_eager under a counter: ``counted.frame_count`` = graphs compiled."""
    torch._dynamo.reset()
    counter = torch_dynamo_testing.CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(compiled_mod, "backend", counter)
    yield counter
    torch._dynamo.reset()


def test_compile_options_per_device(monkeypatch):
    monkeypatch.setattr(compiled_mod, "backend", None)
    cpu = compiled_mod.compile_options(torch.device("cpu"))
    assert cpu == {"fullgraph": True, "dynamic": False}
    cuda = compiled_mod.compile_options(torch.device("cuda", 0))
    assert cuda["mode"] == "reduce-overhead" and cuda["dynamic"] is False and cuda["fullgraph"] is True
    assert compiled_mod.uses_cuda_graphs(torch.device("cuda")) and not compiled_mod.uses_cuda_graphs(torch.device("cpu"))


def test_cache_dir_defaults_to_a_user_cache_and_respects_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = compiled_mod.cache_dir()
    assert path == tmp_path / "xdg" / "doubledip" / "inductor" and path.is_dir()
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(path)  # where inductor will write
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compiled_mod.cache_dir() == tmp_path / "mine" and (tmp_path / "mine").is_dir()


def _float64(problem):
    def cast(v):
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.double()
        if isinstance(v, list):
            return [cast(x) for x in v]
        if isinstance(v, tuple):
            return tuple(cast(x) for x in v)
        if isinstance(v, dict):
            return {k: cast(x) for k, x in v.items()}
        if isinstance(getattr(v, "base", None), torch.Tensor):  # augmentations made on demand
            v.base = cast(v.base)
        return v

    for k, v in vars(problem).items():
        if k != "nets":
            setattr(problem, k, cast(v))
    problem.nets.double()
    return problem


def _grads(problem, stage, k, ctx=None):
    problem.nets.zero_grad(set_to_none=True)
    loss = problem.step(stage, k, False, True, ctx).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in problem.nets.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("task", ["separate", "dehaze"])
def test_compiled_generators_give_the_same_loss_and_gradients(task, counted):
    """Float64 (float32 BatchNorm after the tiny-variance noise input amplifies rounding): the
    compiled graph's forward and AOTAutograd backward equal eager's."""
    x = torch.from_numpy(_image()).permute(2, 0, 1)[None].contiguous()
    if task == "separate":
        problem = separation.SeparationProblem(x, (8,), [5])
    else:
        problem = dehazing.DehazeProblem(x, torch.full((1, 3), 0.8), True, (8,), [5])
    _float64(problem)
    for net in problem.nets.values():
        net.set_memory_format(torch.contiguous_format)
    loss_eager, grads_eager = _grads(problem, 0, 2)
    ctx = RunContext(compiled=compiled_mod.CompiledGenerators(problem.nets, torch.device("cpu")))
    loss_compiled, grads_compiled = _grads(problem, 0, 2, ctx)
    assert counted.frame_count == len(problem.nets)
    assert float(loss_compiled) == pytest.approx(float(loss_eager), rel=1e-12)
    assert grads_compiled.keys() == grads_eager.keys()
    scale = max(float(g.abs().max()) for g in grads_eager.values())
    for name, g in grads_eager.items():
        torch.testing.assert_close(grads_compiled[name], g, rtol=1e-9, atol=1e-12 * scale, msg=name)


CASES = {
    "separate": (lambda c: dd.separate(_image(), c), 1),
    "dehaze": (lambda c: dd.dehaze(_image(), c, passes=1), 2),
    "segment": (lambda c: dd.segment(_image(), config=c), 2),
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_a_compiled_fit_compiles_once_per_group_and_matches_eager(task, counted):
    """A whole fit: one graph per generator group for all its iterations (the changing
    augmentations, noise seeds and tracking steps never recompile), the same first loss and the
    same trajectory within float32 rounding (which the BatchNorm after the noise input amplifies)."""
    from doubledip.kernels._dispatch import plain_layers

    run, groups = CASES[task]
    cfg = dd.SolverConfig(iterations=12, log_every=1, seed=2, device="cpu")
    with plain_layers():  # the compiled graph holds PyTorch's layers, not the C++ ones
        eager = run(cfg)
    assert counted.frame_count == 0
    fitted = run(cfg.replace(compile=True))
    assert counted.frame_count == groups
    losses_eager = np.array([h["loss"] for h in eager.history])
    losses_compiled = np.array([h["loss"] for h in fitted.history])
    assert losses_compiled[0] == pytest.approx(losses_eager[0], rel=1e-6)
    # float32 rounding differences grow step by step (the gradients themselves are compared in
    # float64 above): tight at first, loose later
    np.testing.assert_allclose(losses_compiled[:3], losses_eager[:3], rtol=1e-3)
    np.testing.assert_allclose(losses_compiled, losses_eager, rtol=0.1)
    assert fitted.config.compile is True


def test_compile_and_low_memory_are_refused_together():
    with pytest.raises(ValueError, match="cannot be combined"):
        dd.SolverConfig(compile=True, low_memory=True)


class _StaticOutput:
    """Stands in for a CUDA-graph replay: every call returns the same output buffer."""

    def __init__(self, net):
        self.net, self.buffer = net, None

    def __call__(self, x):
        y = self.net(x)
        if self.buffer is None:
            self.buffer = torch.empty_like(y)
        with torch.no_grad():
            self.buffer.copy_(y)
        return self.buffer


def test_cuda_graph_mode_copies_outputs_and_marks_each_step(monkeypatch, counted):
    """With CUDA graphs the graph's output buffer is reused by the next replay: what a task keeps
    (tracked best layers) must be copies, and each iteration must be marked."""
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    gens = compiled_mod.CompiledGenerators(torch.nn.ModuleDict({"g": dd.SkipUNet(dd.UNetConfig())}), torch.device("cpu"))
    gens.cuda_graphs = True
    gens._compiled["g"] = _StaticOutput(gens._compiled["g"])
    z1, z2 = torch.rand(1, 3, 96, 96), torch.rand(1, 3, 96, 96)
    gens.step_begin()
    y1 = gens["g"](z1)
    kept = y1.clone()
    gens.step_begin()
    y2 = gens["g"](z2)
    assert marks == [1, 1]
    assert y1.data_ptr() != y2.data_ptr()
    torch.testing.assert_close(y1, kept)  # not overwritten by the second replay
    assert not torch.equal(y1, y2)


@pytest.mark.slow
def test_inductor_compiled_separation_matches_eager():
    """Inductor itself (slow: a cold compile of about a minute on this CPU)."""
    torch._dynamo.reset()
    cfg = dd.SolverConfig(iterations=3, log_every=1, seed=1, device="cpu")
    eager = dd.separate(_image(), cfg)
    fitted = dd.separate(_image(), cfg.replace(compile=True))
    assert fitted.history[0]["loss"] == pytest.approx(eager.history[0]["loss"], rel=1e-5)
