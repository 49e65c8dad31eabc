"""Replay stopping rules on the curves of ``stopping_curves.py``: where each rule stops, what the
result there scores, and how far that is from the curve's true peak.

    python benchmarks/experiments/stopping_rules.py curve_seed*.json

A rule reads only what a run can see (the logged reconstruction PSNR, exclusion term, the change
of the result layers); the layer PSNR against the truth is read only to score where it stopped.
Because a stopping rule does not change the run before it stops, the layers at its stop are what
``dd.separate`` with that rule returns. Prints one Markdown table per rule family.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def cap(n):
    """Run to ``n`` iterations."""
    def rule(curve):
        return max(i for i, p in enumerate(curve) if p["iteration"] <= n)
    rule.name = f"cap {n}"
    return rule


def plateau(signal, patience, gain, start=1000, sign=1.0, capped=None):
    """The best of ``sign * signal`` has not risen by ``gain`` for ``patience`` iterations."""
    def rule(curve):
        best, best_at = -math.inf, 0
        for i, p in enumerate(curve):
            if capped is not None and p["iteration"] >= capped:
                return i
            v = p[signal]
            if v is None:
                continue
            v = sign * v
            if v > best + gain:
                best, best_at = v, p["iteration"]
            if p["iteration"] >= start and p["iteration"] - best_at >= patience:
                return i
        return len(curve) - 1
    rule.name = f"plateau {signal} {patience}/{gain}" + (f" cap {capped}" if capped else "")
    return rule


def slope(signal, window, gain, start=1500, capped=None):
    """``signal`` rose by less than ``gain`` over the last ``window`` iterations."""
    def rule(curve):
        for i, p in enumerate(curve):
            if capped is not None and p["iteration"] >= capped:
                return i
            back = [q for q in curve[:i] if q["iteration"] <= p["iteration"] - window]
            if p["iteration"] >= start and back and p[signal] - back[-1][signal] < gain:
                return i
        return len(curve) - 1
    rule.name = f"slope {signal} {window}/{gain}" + (f" cap {capped}" if capped else "")
    return rule


def settled(threshold, window=3, start=1500, capped=None, relative=False):
    """The mean change of the result layers per log over the last ``window`` logs is below
    ``threshold`` (``relative``: times the mixture's mean intensity, as the shipped rule)."""
    def rule(curve):
        limit = threshold * (MIXTURE_MEAN[0] if relative else 1.0)
        for i, p in enumerate(curve):
            if capped is not None and p["iteration"] >= capped:
                return i
            recent = [q["layer_change"] for q in curve[max(0, i - window + 1):i + 1] if q["layer_change"] is not None]
            if p["iteration"] >= start and len(recent) == window and sum(recent) / window < limit:
                return i
        return len(curve) - 1
    rule.name = (f"layers settled < {threshold}" + (" x mixture mean" if relative else "")
                 + (f" cap {capped}" if capped else ""))
    return rule


# the texture demo's mixture's mean intensity (main() reads it from the curves' .npz, else 0.619)
MIXTURE_MEAN = [0.619]


RULES = [cap(2000), cap(2500), cap(2800), cap(3000), cap(3500),
         plateau("psnr", 600, 0.05), plateau("psnr", 300, 0.05), plateau("psnr", 300, 0.2),
         slope("psnr", 500, 0.3), slope("psnr", 500, 0.5), slope("psnr", 500, 0.5, capped=2800),
         settled(0.003), settled(0.0025), settled(0.002), settled(0.003, capped=2800),
         # shipped (separation.SETTLE_BELOW, FAST_ITERATIONS): the default fast call
         settled(0.005, capped=2800, relative=True)]


def collapse_ratio(npz_path, at: int = 1000):
    """The collapse test's value (separation.COLLAPSE_AT): the flatter result layer's spatial
    standard deviation over the other's at iteration ``at``, from a curve's kept layers."""
    import numpy as np

    kept = np.load(npz_path)
    if f"layers_{at}" not in kept:
        return None
    layers = kept[f"layers_{at}"].astype(np.float32)
    spread = [float(layer.std(axis=(0, 1)).mean()) for layer in layers]
    return min(spread) / max(spread)


def main(argv=None) -> int:
    paths = (argv if argv is not None else sys.argv[1:])
    runs = [r for r in (json.loads(Path(p).read_text()) for p in paths) if isinstance(r, dict) and "curve" in r]
    defaults = [r for r in runs if r.get("default_call")]
    runs = [r for r in runs if not r.get("default_call") and r.get("iterations", 0) >= 2500]
    runs.sort(key=lambda r: r["seed"])
    print("| rule | " + " | ".join(f"seed {r['seed']}: stop, dB (peak - dB), s" for r in runs)
          + " | mean dB | worst dB | mean gap to peak |")
    print("|---|" + "---|" * (len(runs) + 3))
    for rule in RULES:
        cells, values, gaps = [], [], []
        for r in runs:
            curve = r["curve"]
            i = rule(curve)
            peak = max(p["mean_layer_psnr"] for p in curve)
            v = curve[i]["mean_layer_psnr"]
            values.append(v)
            gaps.append(peak - v)
            cells.append(f"{curve[i]['iteration']}, {v:.2f} ({peak - v:.2f}), {curve[i]['seconds']:.0f}")
        print(f"| {rule.name} | " + " | ".join(cells) + f" | {sum(values) / len(values):.2f} | {min(values):.2f} | "
              f"{sum(gaps) / len(gaps):.2f} |")
    print()
    print("| seed | peak dB | at iteration | at s | end dB |")
    print("|---|---|---|---|---|")
    for r in runs:
        best = max(r["curve"], key=lambda p: p["mean_layer_psnr"])
        print(f"| {r['seed']} | {best['mean_layer_psnr']:.2f} | {best['iteration']} | {best['seconds']:.0f} | "
              f"{r['curve'][-1]['mean_layer_psnr']:.2f} |")
    tested = [r for r in runs if r.get("collapse_test_at_1000") is not None]
    if tested:
        print()
        print("| seed | collapse test at 1000 (flatter layer's spread / the other's) | peak dB |")
        print("|---|---|---|")
        for r in tested:
            peak = max(q["mean_layer_psnr"] for q in r["curve"])
            print(f"| {r['seed']} | {r['collapse_test_at_1000']:.3f} | {peak:.2f} |")
    if defaults:
        print()
        print("| seed | default call: mean layer PSNR dB | seconds | iterations run | restarts | stop reason |")
        print("|---|---|---|---|---|---|")
        for r in sorted(defaults, key=lambda r: r["seed"]):
            run = r["curve"][-1]["iteration"] if r["curve"] else None
            print(f"| {r['seed']} | {r['mean_layer_psnr']:.2f} | {r['seconds']:.0f} | {run} | {r['restarts']} | "
                  f"{r['stop_reason']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
