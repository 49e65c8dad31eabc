"""What the machine a measurement ran on is, and what a process used: standard library only
(the benchmark suite, the quality suite, the golden test and the memory estimates share these)."""
from __future__ import annotations

import platform
import resource
import sys


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo's "model name"; elsewhere what platform says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _status_mb(key: str):
    """A ``/proc/self/status`` size (``VmRSS``, ``VmHWM``) in MB, or None where Linux lacks it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def resident_mb():
    """This process's resident set now, in MB, or None where unknown (not Linux)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """This process's peak resident set in MB: ``VmHWM`` where Linux has it (the peak of this
    process image: ``ru_maxrss`` carries the parent's peak over ``fork`` + ``exec``), else
    ``ru_maxrss``."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20
