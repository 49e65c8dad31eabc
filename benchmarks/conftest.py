"""Options, parametrisation and machine record of the benchmark suite (see benchmarks/README.md)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from doubledip.bench import benched_tasks
from doubledip.machine import cpu_model

# the tasks with a benchmark problem in the task registry (doubledip bench times the same)
TASKS = tuple(benched_tasks())
ROOT = Path(__file__).resolve().parent.parent


def _csv(text: str, kind=str) -> list:
    return [kind(t.strip()) for t in str(text).split(",") if t.strip()]


def pytest_addoption(parser):
    g = parser.getgroup("doubledip benchmarks")
    g.addoption("--bench-sizes", default="128", metavar="N,N",
                help="image sides of the task steps, peak memory and the side-by-side (default 128)")
    g.addoption("--kernel-sizes", default="256,512", metavar="N,N",
                help="image sides of the fused ops (default 256,512)")
    g.addoption("--bench-tasks", default=",".join(TASKS), metavar="TASK,TASK", help="tasks (default: every task with a benchmark problem)")
    g.addoption("--bench-batch", default="1", metavar="N,N", help="images per batched run of the task steps (default 1)")
    g.addoption("--bench-device", default="cpu", metavar="DEV,DEV",
                help="cpu, cuda, or cpu,cuda (default cpu; cuda rows skip without a CUDA device)")
    g.addoption("--reference-code", default=None, metavar="PATH",
                help="a checkout of the authors' DoubleDIP code (github.com/yossigandelsman/DoubleDIP): "
                     "adds their code side by side; skipped without it")


def pytest_configure(config):
    bad = [t for t in _csv(config.getoption("--bench-tasks")) if t not in TASKS]
    if bad:
        raise pytest.UsageError(f"--bench-tasks: unknown task(s) {bad}; expected some of {list(TASKS)}")
    bad = [d for d in _csv(config.getoption("--bench-device")) if d not in ("cpu", "cuda")]
    if bad:
        raise pytest.UsageError(f"--bench-device: expected cpu and/or cuda, got {bad}")
    for option in ("--bench-sizes", "--kernel-sizes", "--bench-batch"):
        try:
            values = _csv(config.getoption(option), int)
        except ValueError:
            values = []
        if not values or min(values) < 1:
            raise pytest.UsageError(f"{option}: expected comma-separated positive integers, "
                                    f"got {config.getoption(option)!r}")


def pytest_generate_tests(metafunc):
    """The option-driven parameters, for the tests that take them by name."""
    opt = metafunc.config.getoption
    values = {"task": _csv(opt("--bench-tasks")), "size": _csv(opt("--bench-sizes"), int),
              "kernel_size": _csv(opt("--kernel-sizes"), int), "batch": _csv(opt("--bench-batch"), int),
              "device": _csv(opt("--bench-device"))}
    for name, params in values.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, params, indirect=name == "device",
                                 ids=[f"{name}{p}" if isinstance(p, int) else str(p) for p in params])


def _order(item) -> int:
    """Run order: everything else, then the authors' side-by-side (its shims are undone after its
    module), then the low_memory steps (on glibc they fix the allocator's mmap threshold for the
    rest of the process, which makes later steps pay page faults)."""
    params = getattr(item, "callspec", None)
    if params is not None and params.params.get("variant") == "low_memory" and "test_memory" not in item.nodeid:
        return 2
    return 1 if "test_vs_authors" in item.nodeid else 0


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_order)  # stable: the order of the files and parameters otherwise


@pytest.fixture(autouse=True)
def _one_backend(monkeypatch):
    """Each test starts from the default backend choice (tests set DOUBLEDIP_BACKEND themselves)."""
    monkeypatch.delenv("DOUBLEDIP_BACKEND", raising=False)


@pytest.fixture
def device(request):
    """The device of a parametrised test; CUDA rows skip where there is none."""
    import torch

    name = request.param
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("--bench-device cuda: no CUDA device here")
    return torch.device(name)


@pytest.fixture(scope="session")
def reference_code(request):
    """The path given with --reference-code (skips without one, or when the checkout is incomplete)."""
    from benchmarks.authors import missing_files

    path = request.config.getoption("--reference-code")
    if not path:
        pytest.skip("the authors' code side by side needs --reference-code PATH (a checkout of "
                    "github.com/yossigandelsman/DoubleDIP)")
    missing = missing_files(path)
    if missing:
        pytest.skip(f"--reference-code {path}: not a checkout of the authors' DoubleDIP code (missing "
                    f"{', '.join(missing)})")
    return Path(path).resolve()


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "doubledip"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-benchmark: no error where it is missing
def pytest_benchmark_update_machine_info(config, machine_info):
    """What report.py puts in RESULTS.md's header: the machine, the software, the command."""
    import torch

    from doubledip import bindings

    machine_info["doubledip"] = {
        "cpu_model": cpu_model(), "logical_cpus": os.cpu_count(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpp_core": bindings.core() is not None,
        "doubledip_commit": _commit(),
        "command": "python -m pytest " + " ".join(config.invocation_params.args),
        "options": {name: config.getoption(name) for name in
                    ("--bench-sizes", "--kernel-sizes", "--bench-tasks", "--bench-batch", "--bench-device",
                     "--reference-code")},
    }
