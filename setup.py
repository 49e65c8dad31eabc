"""Builds the optional C++ CPU core ``doubledip.bindings._core`` (pybind11, OpenMP; no torch headers).

All other metadata lives in pyproject.toml. The extension is ``optional``: when no compiler (or no
OpenMP) is found the install still succeeds and the package falls back to the plain-torch path,
with one warning at run time (``DOUBLEDIP_REQUIRE_CPP=1`` turns that into an error).

``DOUBLEDIP_NATIVE=0`` builds for the baseline instruction set instead of this machine's
(``-march=native``): use it when the build and the run machines differ.
"""
import os
import sys
from glob import glob

from setuptools import setup

try:
    from pybind11.setup_helpers import Pybind11Extension, build_ext
except ImportError:  # only with --no-build-isolation and no pybind11: install without the core
    Pybind11Extension = None


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return ["/O2", "/openmp"]
    # IEEE-preserving: no errno from sqrtf, no FP traps (lets the loops vectorise); not -ffast-math
    args = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
    if os.environ.get("DOUBLEDIP_NATIVE", "1") != "0":
        args.append("-march=native")
    return args


if Pybind11Extension is None:
    print("doubledip: pybind11 not found, the C++ CPU core is not built", file=sys.stderr)
    setup()
    sys.exit(0)

core = Pybind11Extension(
    "doubledip.bindings._core",
    sorted(glob("doubledip/bindings/csrc/*.cpp")),
    include_dirs=["doubledip/bindings/csrc"],
    depends=sorted(glob("doubledip/bindings/csrc/*.h")),
    cxx_std=17,
    extra_compile_args=_compile_args(),
    extra_link_args=[] if sys.platform == "win32" else ["-fopenmp"],
    optional=True,
)

setup(ext_modules=[core], cmdclass={"build_ext": build_ext})
