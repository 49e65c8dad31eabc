"""doubledip.machine: the CPU model and the peak resident set, shared by the benchmark suite,
the quality suite, the golden test and the memory estimates."""
import numpy as np

from doubledip.machine import cpu_model, peak_rss_mb


def test_the_cpu_model_is_a_name():
    name = cpu_model()
    assert isinstance(name, str) and name.strip() == name and name


def test_the_peak_resident_set_grows_with_what_the_process_touches():
    before = peak_rss_mb()
    block = np.ones(64 * 2 ** 20 // 8)  # 64 MB, touched
    after = peak_rss_mb()
    assert before > 1 and after >= before + 48, (before, after)
    del block
    assert peak_rss_mb() >= after  # a peak does not fall
