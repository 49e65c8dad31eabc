"""doubledip.machine: the CPU model and the peak resident set, shared by the benchmark suite,
the quality suite, the golden test and the memory estimates."""
import json
import subprocess
import sys

from doubledip.machine import cpu_model

# a fresh interpreter: this process's peak already holds torch and the other tests
_CHILD = """
import json
import numpy as np
from doubledip.machine import peak_rss_mb
before = peak_rss_mb()
block = np.ones(64 * 2 ** 20 // 8)  # 64 MB, touched
after = peak_rss_mb()
print(json.dumps([before, after]))
"""


def test_the_cpu_model_is_a_name():
    name = cpu_model()
    assert isinstance(name, str) and name.strip() == name and name


def test_the_peak_resident_set_grows_with_what_the_process_touches():
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=120)
    before, after = json.loads(out.stdout)
    assert before > 1 and after >= before + 48, (before, after)


def test_the_resident_set_is_a_positive_size_below_the_peak():
    from doubledip.machine import peak_rss_mb, resident_mb

    now = resident_mb()
    assert now is not None and 1 < now <= peak_rss_mb() + 1e-6
