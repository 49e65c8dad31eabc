"""The authors' Double-DIP code, run from a checkout the user supplies (never copied here).

Their code (github.com/yossigandelsman/DoubleDIP) targets CUDA and the libraries of its time, so
it runs behind runtime shims, applied before it is imported from that path; none of their files
is edited:

- ``torch.cuda.FloatTensor`` / ``LongTensor`` are aliased to the CPU types; ``.cuda()`` on
  tensors and modules returns them unchanged;
- removed functions are provided again: ``skimage.measure.compare_psnr`` (as
  ``skimage.metrics.peak_signal_noise_ratio`` with data range 1, what it inferred for their
  non-negative float images), ``np.int`` / ``np.float`` / ``np.bool``, ``PIL.Image.ANTIALIAS``;
- ``cv2.ximgproc.guidedFilter`` (OpenCV contrib) is ``doubledip.engine.post.guided_filter``
  (He et al.'s colour guided filter), so both sides share one post-filter;
- plotting and video modules they import but a timed run does not use (``matplotlib``,
  ``torchvision``, ``skvideo``, ``progressbar``) are stubbed where not installed.

:func:`apply_shims` returns an undo function (the suite undoes them after its side-by-side);
the scripts in ``benchmarks/experiments/`` run the authors' code in processes of its own.

:class:`AuthorsLoop` runs their own ``optimize()`` loop, untouched, in a worker thread that stops
at the start of every iteration: ``advance()`` lets exactly one whole iteration of their loop run
(their closure's forward, loss and backward, their best-result tracking, ``torch.optim.Adam``).
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import types
from pathlib import Path

import numpy as np

TASKS = ("separate", "separate_pair", "segment", "dehaze", "remove_watermark")
EXTRA_TASKS = ("dehaze_ambient",)  # their __main__'s dehazing: a given airlight, learned by a third net
AIRLIGHT = (0.72, 0.70, 0.62)  # dehaze_ambient's given airlight (their tiananmen value, rounded)
REFERENCE_FILES = ("transparency_separation.py", "segmentation.py", "dehazing.py", "watermarks_removal.py")
# the per-iteration closure of the stage timed (segmentation and watermark: stage 2, the longer one)
CLOSURES = {"segment": "_step2_optimization_closure", "remove_watermark": "_step2_optimization_closure"}


def missing_files(reference) -> list[str]:
    """The files of the authors' checkout that are not at ``reference`` (all of them for None)."""
    ref = Path(reference) if reference else None
    return [f for f in REFERENCE_FILES if ref is None or not (ref / f).is_file()]


# ----------------------------------------------------------------------------------- shims

_MISSING = object()


def _opencv_guided_filter(guide, src, radius, eps, *args, **kwargs):
    """``cv2.ximgproc.guidedFilter(guide HxWxC, src HxW, radius, eps)`` via doubledip's filter."""
    import torch

    from doubledip.engine.post import guided_filter
    g = torch.from_numpy(np.ascontiguousarray(np.asarray(guide, np.float32).transpose(2, 0, 1)))[None]
    s = torch.from_numpy(np.ascontiguousarray(np.asarray(src, np.float32)))[None, None]
    return guided_filter(g, s, radius=int(radius), eps=float(eps))[0, 0].numpy()


class _Anything:
    """Absorbs any plotting call."""

    def __getattr__(self, name):
        return _Anything()

    def __call__(self, *a, **k):
        return _Anything()


def _absorb(attr):  # module-level __getattr__ of a stub: dunder lookups stay real misses
    if attr.startswith("__"):
        raise AttributeError(attr)
    return _Anything()


def apply_shims():
    """Make the authors' CUDA-era code import and run on a current CPU-only stack. Returns a
    function that undoes every change (attributes restored, stub modules removed)."""
    import PIL.Image
    import skimage.measure
    import skimage.metrics
    import torch

    saved = []

    def put(obj, name, value):
        saved.append((obj, name, obj.__dict__.get(name, _MISSING) if isinstance(obj, type)
                      else getattr(obj, name, _MISSING)))
        setattr(obj, name, value)

    added_modules = []

    def stub(name, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        added_modules.append(name)
        return module

    put(torch.cuda, "FloatTensor", torch.FloatTensor)
    put(torch.cuda, "LongTensor", torch.LongTensor)
    put(torch.Tensor, "cuda", lambda self, *a, **k: self)
    put(torch.nn.Module, "cuda", lambda self, *a, **k: self)
    for alias, kind in (("int", int), ("float", float), ("bool", bool)):
        if alias not in np.__dict__:
            put(np, alias, kind)
    if not hasattr(PIL.Image, "ANTIALIAS"):
        put(PIL.Image, "ANTIALIAS", PIL.Image.LANCZOS)

    def compare_psnr(im_true, im_test, data_range=None):
        return skimage.metrics.peak_signal_noise_ratio(
            im_true, im_test, data_range=1.0 if data_range is None else data_range)
    put(skimage.measure, "compare_psnr", compare_psnr)

    if "cv2" not in sys.modules:
        cv2 = stub("cv2")
        cv2.ximgproc = stub("cv2.ximgproc", guidedFilter=_opencv_guided_filter)
    if "matplotlib" not in sys.modules:
        try:
            import matplotlib  # the real one when installed
            matplotlib.use("agg")
        except ImportError:
            mpl = stub("matplotlib", use=lambda *a, **k: None)
            mpl.pyplot = stub("matplotlib.pyplot", __getattr__=_absorb)
            mpl.image = stub("matplotlib.image", __getattr__=_absorb)
    try:
        import torchvision  # noqa: F401  (the real one when installed)
    except ImportError:
        tv = stub("torchvision")
        tv.utils = stub("torchvision.utils", make_grid=lambda *a, **k: torch.zeros(3, 1, 1))
    for name in ("skvideo", "progressbar"):
        try:
            __import__(name)
        except ImportError:
            stub(name, __getattr__=_absorb)
    if "skvideo.io" not in sys.modules:
        sys.modules["skvideo"].io = stub("skvideo.io", __getattr__=_absorb)

    def undo():
        for obj, name, value in reversed(saved):
            if value is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, value)
        for name in added_modules:
            sys.modules.pop(name, None)
        saved.clear()
        added_modules.clear()

    return undo


def their_modules(reference) -> list[str]:
    """Names in ``sys.modules`` that were loaded from the checkout at ``reference``."""
    root = str(Path(reference).resolve())
    return [name for name, m in list(sys.modules.items())
            if str(getattr(m, "__file__", None) or "").startswith(root)]


def prepare_process(reference, seed: int) -> None:
    """Ready this process, for good, to run the authors' code: shims applied, ``reference``
    importable, the working directory a fresh temporary one with the ``output/`` their save
    functions write to, Python's, NumPy's and torch's generators seeded with ``seed``."""
    apply_shims()
    sys.path.insert(0, str(Path(reference).resolve()))
    work = Path(tempfile.mkdtemp(prefix="doubledip_authors_"))
    (work / "output").mkdir()
    os.chdir(work)
    seed_everything(seed)


def seed_everything(seed: int) -> None:
    import random

    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------- models

def synthetic_inputs(size: int, seed: int = 0) -> dict:
    """Random image(s) in [0, 1] (3 x H x W float32) and a rectangular hint (1 x H x W): the
    rectangle of ``doubledip.bench``'s problems."""
    rng = np.random.default_rng(seed)
    image = rng.random((3, size, size), dtype=np.float32)
    hint = np.zeros((1, size, size), np.float32)
    hint[:, size // 3: 2 * size // 3, size // 4: 3 * size // 4] = 1
    return {"image": image, "image2": np.ascontiguousarray(image[:, :, ::-1]), "hint": hint}


def build(task: str, size: int, seed: int = 0):
    """The authors' model for ``task`` on :func:`synthetic_inputs`, and the name of its
    per-iteration closure of the stage timed. Their modules must be importable (shims applied,
    the checkout on ``sys.path``). Built with ``plot_during_training=False`` (no printing)."""
    x = synthetic_inputs(size, seed)
    closure = CLOSURES.get(task, "_optimization_closure")
    if task == "separate":
        from transparency_separation import Separation
        return Separation("case", x["image"], plot_during_training=False), closure
    if task == "separate_pair":
        from transparency_separation import TwoImagesSeparation
        return TwoImagesSeparation("case1", "case2", x["image"], x["image2"], plot_during_training=False), closure
    if task == "segment":  # their stage 1 must run once before stage 2 can report
        from segmentation import Segmentation
        return Segmentation("case", x["image"], plot_during_training=False, first_step_iter_num=1,
                            fg_hint=x["hint"], bg_hint=1 - x["hint"]), closure
    if task == "dehaze":  # their dehaze()'s first pass: the airlight from the dark channel prior
        from dehazing import Dehaze
        return Dehaze("case", x["image"], plot_during_training=False, use_deep_channel_prior=True,
                      gt_ambient=None, clip=True), closure
    if task == "dehaze_ambient":
        from dehazing import Dehaze
        return Dehaze("case", x["image"], plot_during_training=False, use_deep_channel_prior=False,
                      gt_ambient=np.asarray(AIRLIGHT), clip=True), closure
    if task == "remove_watermark":
        from watermarks_removal import Watermark
        return Watermark("case", x["image"], plot_during_training=False, num_iter_first_step=0,
                         watermark_hint=x["hint"]), closure
    raise ValueError(f"task must be one of {TASKS + EXTRA_TASKS}, got {task!r}")


class _Stop(Exception):
    """Raised in the authors' closure to leave their loop."""


class AuthorsLoop:
    """Their ``model.optimize()`` in a worker thread, held at the start of every call of
    ``closure``: :meth:`advance` runs one whole iteration of their loop (from one closure call to
    the next: forward, loss, backward, their tracking, Adam). :meth:`close` leaves their loop."""

    def __init__(self, model, closure: str):
        self._go = threading.Semaphore(0)
        self._arrived = threading.Semaphore(0)
        self._stop = False
        self._error = None
        self._done = False
        self.iterations = 0
        inner = getattr(model, closure)

        def held(step, *rest):
            self._arrived.release()
            self._go.acquire()
            if self._stop:
                raise _Stop
            return inner(step, *rest)

        setattr(model, closure, held)
        self._thread = threading.Thread(target=self._run, args=(model,), daemon=True, name="authors-loop")
        self._thread.start()
        self._wait()  # at the first timed iteration (earlier stages run freely)

    def _run(self, model) -> None:
        try:
            model.optimize()
        except _Stop:
            pass
        except BaseException as exc:  # handed to the caller in advance()
            self._error = exc
        finally:
            self._done = True
            self._arrived.release()

    def _wait(self) -> None:
        self._arrived.acquire()
        if self._error is not None:
            raise RuntimeError("the authors' loop failed") from self._error
        if self._done and not self._stop:
            raise RuntimeError("the authors' loop ended before the iterations asked for")

    def advance(self) -> None:
        self._go.release()
        self._wait()
        self.iterations += 1

    def close(self) -> None:
        if not self._done:
            self._stop = True
            self._go.release()
        self._thread.join()


def peak_child(reference: str, task: str, size: int, steps: int, seed: int = 0) -> dict:
    """In a fresh process: their model built and ``steps`` iterations of their loop run; the
    process's peak resident set and its peak after the imports, in MB (cf. ``bench.peak_memory``)."""
    import torch

    from doubledip.machine import peak_rss_mb
    before = peak_rss_mb()
    prepare_process(reference, seed)
    model, closure = build(task, size, seed)
    loop = AuthorsLoop(model, closure)
    try:
        for _ in range(steps):
            loop.advance()
    finally:
        loop.close()
    return {"peak_rss_mb": peak_rss_mb(), "import_rss_mb": before,
            "threads": torch.get_num_threads()}


def peak_memory(reference, task: str, size: int, steps: int = 3, timeout: float = 900) -> dict:
    """:func:`peak_child` in a fresh Python process (this repository's root on its path)."""
    import json
    import subprocess

    root = Path(__file__).resolve().parent.parent
    code = (f"import json; from benchmarks.authors import peak_child; "
            f"print(json.dumps(peak_child({str(reference)!r}, {task!r}, {size}, {steps})))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=root, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the authors' {task} at {size} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------- processes
# helpers of the scripts in benchmarks/experiments/ that run each side in a process of its own

def rss_mb() -> float:
    """This process's resident set now, in MB (Linux; NaN elsewhere)."""
    from doubledip.machine import resident_mb

    now = resident_mb()
    return float("nan") if now is None else now


def peak_mb() -> float:
    """This process's peak resident set, in MB (``doubledip.bench``'s measure)."""
    from doubledip.machine import peak_rss_mb
    return peak_rss_mb()


def block_median(stamps, warmup: int) -> float:
    """Median seconds per iteration over consecutive (iteration, time) stamps past ``warmup``."""
    import statistics
    pts = [(i, t) for i, t in stamps if i >= warmup]
    rates = [(t1 - t0) / (i1 - i0) for (i0, t0), (i1, t1) in zip(pts, pts[1:]) if i1 > i0]
    return statistics.median(rates) if rates else float("nan")


def commit() -> str:
    """doubledip's git commit (with ``+dirty`` when its tree has changes), or "unknown"."""
    import subprocess
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "doubledip"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_worker(cmd: list, threads: int, marker: str, what: str) -> dict:
    """Run a worker process (from the repository root) with ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``
    at ``threads``; its record is the JSON after ``marker`` on its stdout (``what`` names it
    when it fails)."""
    import json
    import subprocess
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    for line in proc.stdout.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker):])
    raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
