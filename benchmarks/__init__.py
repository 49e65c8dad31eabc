"""doubledip's benchmark suite (pytest-benchmark; see benchmarks/README.md). A package so that
its modules import each other by name (``benchmarks.authors``), never through ``sys.path``."""
