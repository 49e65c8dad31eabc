"""Screens and side-by-sides outside the benchmark suite (see README.md here). Those that load
the authors' code run from the repository root as ``python -m benchmarks.experiments.<name>``."""
