"""The reference-mode runs whose outputs must not change across refactors (tests/test_golden.py).

Every image task at a small size (not a multiple of the nets' stride) with fixed seeds and a few
iterations, through its public call. The hashes are bit-exact per machine kind (CPU model, torch
build): a few Adam steps turn the last-bit rounding differences of another CPU's kernels into
differences of 1e-2 (measured between an Intel Xeon and an AMD EPYC), so no tolerance tells a
changed computation from another machine. tests/golden/reference_hashes.json holds one record
per machine kind:

    python tests/golden_runs.py --add     # record this machine beside the others (numbers unchanged)
    python tests/golden_runs.py --write   # a change *meant* to change reference-mode numbers: this
                                          # machine's record only, the others dropped (say so in the commit)
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "golden"
H, W = 26, 34


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    yy, xx = np.mgrid[0:H, 0:W] / max(H, W)
    base = np.stack([np.sin(7 * xx + seed), np.cos(4 * yy), xx * yy], -1) * 0.4 + 0.5
    return np.clip(base + 0.05 * rng.standard_normal((H, W, 3)), 0, 1).astype(np.float32)


def _box(y0, y1, x0, x1, fill=1.0, background=0.0) -> np.ndarray:
    m = np.full((H, W), background, np.float32)
    m[y0:y1, x0:x1] = fill
    return m


def runs() -> dict:
    """name -> a function of no arguments returning the task's result (reference mode, CPU)."""
    import doubledip as dd

    cfg = dd.SolverConfig(iterations=6, repeats=1, log_every=3, seed=11, device="cpu")
    fg, bg = _box(9, 17, 12, 22), _box(5, 21, 8, 26, fill=0.0, background=1.0)
    return {
        "separate": lambda: dd.separate(_image(0), cfg),
        "separate_pair": lambda: dd.separate_pair(_image(0), _image(1), cfg),
        "segment": lambda: dd.segment(_image(0), cfg, fg_hint=fg, bg_hint=bg),
        "segment_no_hints": lambda: dd.segment(_image(0), config=cfg, hints="none"),
        "segment_auto_hints": lambda: dd.segment(_image(0), config=cfg),
        "dehaze": lambda: dd.dehaze(_image(0), cfg),
        "dehaze_given_airlight": lambda: dd.dehaze(_image(0), cfg, airlight=[0.8, 0.75, 0.7], passes=1),
        "remove_watermark": lambda: dd.remove_watermark(_image(0), _box(8, 16, 10, 24), cfg.replace(repeats=2)),
        "remove_watermark_multi": lambda: dd.remove_watermark_multi([_image(0), _image(1), _image(2)], cfg),
        "batch_separate": lambda: dd.batch("separate", [_image(0), _image(1)], cfg),
    }


def arrays(result) -> dict[str, np.ndarray]:
    """The result's public output arrays (a list of results: each one's, prefixed)."""
    if isinstance(result, list):
        return {f"{i}.{k}": v for i, r in enumerate(result) for k, v in arrays(r).items()}
    out = {}
    for name in ("layers", "images", "alphas", "image", "transmission", "airlight", "mask",
                 "soft_mask", "foreground", "background", "watermark", "reconstruction"):
        if not hasattr(result, name):
            continue
        value = getattr(result, name)
        if isinstance(value, list):
            for i, v in enumerate(value):
                out[f"{name}[{i}]"] = np.ascontiguousarray(np.asarray(v, np.float32))
        else:
            out[name] = np.ascontiguousarray(np.asarray(value, np.float32))
    return out


def digest(arr: np.ndarray) -> str:
    return hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()[:32]


def machine() -> str:
    """What the bit-exact hashes depend on: CPU model, torch version, its CPU capability."""
    import torch

    from doubledip.machine import cpu_model

    return f"{cpu_model()} | torch {torch.__version__} | {torch.backends.cpu.get_cpu_capability()}"


def records() -> dict[str, dict[str, str]]:
    """Machine kind -> {"task/field": hash}, as recorded."""
    path = GOLDEN / "reference_hashes.json"
    return json.loads(path.read_text())["machines"] if path.exists() else {}


def write(keep_others: bool) -> None:
    """Record this machine's hashes; ``keep_others``: beside the other machines' records, which
    must hold the same fields (else they are dropped)."""
    import torch

    torch.set_num_threads(1)
    GOLDEN.mkdir(exist_ok=True)
    hashes = {f"{name}/{field}": digest(arr) for name, run in runs().items() for field, arr in arrays(run()).items()}
    kept = {m: h for m, h in records().items() if keep_others and m != machine()}
    stale = [m for m, h in kept.items() if sorted(h) != sorted(hashes)]
    if stale:
        sys.exit(f"the recorded fields of {stale} differ from this run's: the outputs changed; use --write")
    kept[machine()] = hashes
    (GOLDEN / "reference_hashes.json").write_text(json.dumps({"machines": kept}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(hashes)} hashes for {machine()} ({len(kept)} machine kinds recorded)")


if __name__ == "__main__":
    if sys.argv[1:] not in (["--write"], ["--add"]):
        sys.exit("usage: python tests/golden_runs.py --write | --add")
    write(keep_others=sys.argv[1] == "--add")
