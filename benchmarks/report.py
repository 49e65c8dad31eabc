"""RESULTS.md from one run of the suite: the current tables, with the machine, date and command.

    python benchmarks/report.py benchmarks/results.json \\
        --runs benchmarks/experiments/stopping_rules.md benchmarks/experiments/dehaze_vs_dcp.md \\
               benchmarks/experiments/segmentation_hints.md benchmarks/experiments/video.md \\
        > benchmarks/RESULTS.md

Reads a ``--benchmark-json`` file of ``python -m pytest benchmarks`` (pytest-benchmark) and writes
Markdown: the fused ops against their references, Adam, every task step per variant against
the reference variant, peak memory in fresh processes, and the authors' code side by side (when
the run had ``--reference-code``). Every ratio is between rows of that one run. ``--runs``
appends measurements that are runs of their own (quality per seed, time to quality), each a
Markdown file an experiment wrote with its own machine, date and command, as it is. Needs only the
standard library.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

TASKS = ("separate", "separate_pair", "segment", "dehaze", "remove_watermark", "dehaze_ambient")
VARIANT_ORDER = ("reference", "fast", "contiguous", "low_memory", "plain_layers", "conv1x1")
NOTABLE_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def _ms(seconds) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _x(ratio) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _mb(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _task_key(task: str) -> int:
    return TASKS.index(task) if task in TASKS else len(TASKS)


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def header(doc: dict) -> str:
    machine = doc.get("machine_info", {})
    ours = machine.get("doubledip", {})
    cpu = machine.get("cpu", {})
    flags = [f for f in NOTABLE_FLAGS if f in set(cpu.get("flags", []))]
    threads = ours.get("torch_threads")
    omp = ours.get("omp_num_threads")
    command = ours.get("command", "python -m pytest benchmarks ...")
    if omp:
        command = f"OMP_NUM_THREADS={omp} {command}"
    commit = doc.get("commit_info", {})
    lines = [
        "# Benchmark results",
        "",
        "Generated from one run of the benchmark suite (`benchmarks/README.md`) by",
        "`python benchmarks/report.py benchmarks/results.json > benchmarks/RESULTS.md`; earlier results are in",
        "git history and, summarised, in `benchmarks/experiments/README.md`. Times are medians of each",
        "benchmark's rounds; every ratio is between rows of this run on this machine. Measurements",
        "that are runs of their own (fast mode's default call per seed, dehazing against the dark",
        "channel prior, segmentation without hints, video) follow the suite's tables, each from its",
        "`benchmarks/experiments/*.md` with its own machine, date and command; the other screens",
        "are in `benchmarks/experiments/` (`runs_throughput.md`, ...).",
        "",
        f"- Date: {doc.get('datetime', '?')[:19].replace('T', ' ')} UTC",
        f"- Machine: {ours.get('cpu_model') or cpu.get('brand_raw', '?')}, {ours.get('logical_cpus', cpu.get('count', '?'))} "
        f"logical CPUs" + (f" ({', '.join(flags)})" if flags else "")
        + f"; CUDA: {ours.get('cuda_device') or 'none'}",
        f"- Software: torch {ours.get('torch', '?')}, Python {machine.get('python_version', '?')}, "
        f"doubledip at {ours.get('doubledip_commit') or commit.get('id', '?')[:7]}, "
        f"C++ core {'built' if ours.get('cpp_core') else 'not built'}, pytest-benchmark {doc.get('version', '?')}",
        f"- Threads: torch {threads} (OMP_NUM_THREADS={omp or 'unset'}); timer: {_timer(doc)}",
        f"- Command: `{command}`",
    ]
    return "\n".join(lines)


def _timer(doc: dict) -> str:
    timers = {b.get("options", {}).get("timer") for b in doc.get("benchmarks", [])} - {None}
    names = {"perf_counter": "perf_counter (wall clock)", "process_time": "process_time (this process's CPU time, "
             "all threads; robust to other processes on the machine)"}
    return "; ".join(names.get(t.split(".")[-1], t) for t in sorted(timers)) or "?"


def _by_kind(doc: dict) -> dict:
    out = defaultdict(list)
    for b in doc.get("benchmarks", []):
        info = b.get("extra_info", {})
        if "kind" in info and b.get("stats"):
            out[info["kind"]].append((info, b["stats"]))
    return out


def ops_section(rows) -> str:
    if not rows:
        return "## Fused ops\n\nNot measured in this run."
    cells = defaultdict(dict)
    for info, stats in rows:
        cells[(info["device"], info["op"], info["size"], info["pass"])][info["backend"]] = (stats["median"], info.get("bytes"))
    backends = [b for b in ("torch", "cpp", "triton") if any(b in c for c in cells.values())]
    head = ["device", "op", "size", "pass"] + [f"{b} ms" for b in backends] + \
           [f"{b} speed-up" for b in backends if b != "torch"] + ["GB/s (fastest)"]
    out = []
    for key in sorted(cells, key=lambda k: (k[0], ("exclusion", "blend", "noise").index(k[1]) if k[1] in
                                            ("exclusion", "blend", "noise") else 9, k[2], k[3] != "forward")):
        c = cells[key]
        ref = c.get("torch", (None, None))[0]
        best = min((v for v in c.values()), key=lambda v: v[0])
        gbs = f"{best[1] / best[0] / 1e9:.1f}" if best[1] else "-"
        out.append([key[0], key[1], str(key[2]), key[3]] + [_ms(c.get(b, (None,))[0]) for b in backends]
                   + [_x(ref / c[b][0]) if ref and b in c else "-" for b in backends if b != "torch"] + [gbs])
    return ("## Fused ops against their references\n\n"
            "`benchmarks/test_kernels.py`: 1 x 3 x S x S float32 inputs; `torch` is the plain-torch reference\n"
            "(`<op>_ref`); speed-up = reference / backend. `backward` is `loss.backward()` alone; noise has an\n"
            "identity backward (forward only). GB/s: the bytes a pass must move at least, over the fastest time.\n\n"
            + _table(head, out))


def adam_section(rows) -> str:
    if not rows:
        return ""
    cells = defaultdict(dict)
    meta = {}
    for info, stats in rows:
        key = (info["device"], info["task"])
        cells[key][info["backend"]] = stats["median"]
        meta[key] = info
    out = []
    for key in sorted(cells, key=lambda k: (k[0], _task_key(k[1]))):
        c, m = cells[key], meta[key]
        out.append([key[0], key[1], str(m.get("tensors")), f"{m.get('elements', 0) / 1e6:.2f} M", _ms(c.get("torch")),
                    _ms(c.get("cpp")), _x(c["torch"] / c["cpp"]) if "torch" in c and "cpp" in c else "-"])
    sqrt = rows[0][0].get("sqrt")
    return ("## Adam step\n\n"
            f"`test_kernels.py::test_adam`: one step of the solver's Adam (sqrt mode `{sqrt}`) over every parameter\n"
            "of a task's generators in its timed stage; `torch` = the `torch._foreach_*` path, `cpp` = the fused C++ step.\n\n"
            + _table(["device", "task", "tensors", "elements", "torch ms", "cpp ms", "speed-up"], out))


def steps_section(rows) -> str:
    if not rows:
        return "## Task steps\n\nNot measured in this run."
    cells = defaultdict(dict)
    meta = {}
    for info, stats in rows:
        key = (info["device"], info["size"], info.get("batch", 1), info["task"])
        cells[key][info["variant"]] = stats["median"]
        meta[key] = info
    variants = [v for v in VARIANT_ORDER if any(v in c for c in cells.values())]
    variants += sorted({v for c in cells.values() for v in c} - set(variants))
    blocks = []
    for dev, size, batch in sorted({k[:3] for k in cells}):
        out = []
        for key in sorted((k for k in cells if k[:3] == (dev, size, batch)), key=lambda k: _task_key(k[3])):
            c, m = cells[key], meta[key]
            ref = c.get("reference")
            row = [key[3]]
            for v in variants:
                if v not in c:
                    row.append("-")
                elif v == "reference":
                    row.append(_ms(ref))
                else:
                    row.append(f"{_ms(c[v])} ({_x(c[v] / ref) if ref else '-'})")
            iters = m.get("default_iterations")
            row.append(f"{3600 * batch / (ref * iters):.2f}" if ref and iters else "-")
            out.append(row)
        head = ["task"] + [f"{v} ms" + ("" if v == "reference" else " (/ reference)") for v in variants] + \
               ["images/hour (reference)"]
        blocks.append(f"### {size} x {size}, {batch} image(s) per step, {dev}\n\n" + _table(head, out))
    return ("## Task steps per variant\n\n"
            "`benchmarks/test_steps.py`: one optimisation step (forward, losses, backward, Adam) in the stage that\n"
            "dominates a default run (`doubledip.bench.variant_step`). In brackets: the variant's time over the\n"
            "reference's (below 1: faster). Variants: reference = reference mode as shipped; fast = fast mode's\n"
            "problem and precision (bf16 generators on CUDA only); contiguous = channels-last off; low_memory =\n"
            "recomputed activations; plain_layers = the C++ generator layers off; conv1x1 = 1x1 convolutions as\n"
            "PyTorch's grouped convolution. Images per hour at the task's default iterations.\n\n"
            + "\n\n".join(blocks))


def memory_section(rows) -> str:
    if not rows:
        return "## Peak memory\n\nNot measured in this run."
    cells = defaultdict(dict)
    for info, _ in rows:
        cells[(info["device"], info["size"], info["task"])][info["variant"]] = info
    variants = [v for v in ("reference", "low_memory", "authors") if any(v in c for c in cells.values())]
    head = ["device", "size", "task"] + [f"{v} MB" for v in variants] + ["after imports MB (ours; authors)"]
    if "authors" in variants:
        head[-1:-1] = [f"{v} / authors" for v in variants if v != "authors"]
    out = []
    for key in sorted(cells, key=lambda k: (k[0], k[1], _task_key(k[2]))):
        c = cells[key]
        peak = {v: c[v].get("peak_rss_mb") for v in variants if v in c}
        row = [key[0], str(key[1]), key[2]] + [_mb(peak.get(v)) for v in variants]
        if "authors" in variants:
            a = peak.get("authors")
            row += [_x(peak[v] / a) if a and peak.get(v) else "-" for v in variants if v != "authors"]
        imports = "; ".join(_mb(c[v].get("import_rss_mb")) for v in ("reference", "authors") if v in c)
        row.append(imports)
        out.append(row)
    cuda = [(k, c) for k, c in cells.items() if any("cuda_peak_mb" in i for i in c.values())]
    text = ("## Peak memory (fresh processes)\n\n"
            "`benchmarks/test_memory.py`: each figure is one child process (imports, the problem built, 3 steps;\n"
            "authors: their model built, 3 iterations of their loop): its peak resident set (`VmHWM`).\n\n"
            + _table(head, out))
    if cuda:
        text += "\n\nCUDA max allocated (MB): " + "; ".join(
            f"{k[2]} {k[1]} " + ", ".join(f"{v} {c[v]['cuda_peak_mb']:.0f}" for v in c if "cuda_peak_mb" in c[v])
            for k, c in sorted(cuda, key=lambda kc: (kc[0][1], _task_key(kc[0][2]))))
    return text


def authors_section(rows) -> str:
    if not rows:
        return ("## The authors' code side by side\n\n"
                "Not run: it needs `--reference-code PATH` (a checkout of github.com/yossigandelsman/DoubleDIP).")
    cells = defaultdict(dict)
    for info, stats in rows:
        cells[(info["size"], info["task"])][info["side"]] = stats["median"]
    out = []
    for key in sorted(cells, key=lambda k: (k[0], _task_key(k[1]))):
        c = cells[key]
        a, o = c.get("authors"), c.get("ours")
        out.append([key[1], str(key[0]), _ms(a), _ms(o), _x(a / o) if a and o else "-"])
    return ("## The authors' code side by side (CPU)\n\n"
            "`benchmarks/test_vs_authors.py`: one whole iteration of the authors' own loop (their code from\n"
            "`--reference-code`, behind `benchmarks/authors.py`'s shims) against one step of ours in reference\n"
            "mode, same image, stage, process and threads; speed-up = authors / ours.\n\n"
            + _table(["task", "size", "authors ms/iter", "ours ms/iter", "speed-up"], out))


def demoted(markdown: str) -> str:
    """``markdown`` with every heading one level down (its title becomes a section of RESULTS.md);
    lines inside code fences are left alone."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#") and line.lstrip("#").startswith(" "):
            line = "#" + line
        out.append(line)
    return "\n".join(out)


def report(doc: dict) -> str:
    kinds = _by_kind(doc)
    parts = [header(doc), ops_section(kinds["op"]), adam_section(kinds["adam"]), steps_section(kinds["step"]),
             memory_section(kinds["memory"]), authors_section(kinds["vs_authors"])]
    return "\n\n".join(p for p in parts if p) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", help="a --benchmark-json file of `python -m pytest benchmarks`")
    p.add_argument("--runs", nargs="*", default=[], metavar="MD",
                   help="Markdown files of experiments (benchmarks/experiments/*.md) to append as they are")
    args = p.parse_args(argv)
    with open(args.json) as f:
        doc = json.load(f)
    if not any(b.get("stats") for b in doc.get("benchmarks", [])):
        print(f"report: {args.json} holds no timed benchmarks (a --benchmark-disable run?)", file=sys.stderr)
        return 2
    sys.stdout.write(report(doc))
    for path in args.runs:
        with open(path) as f:
            text = f.read().strip()
        sys.stdout.write("\n" + demoted(text) + f"\n\n(From `{path}`.)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
