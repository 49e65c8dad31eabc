"""low_memory's host-allocator settings (glibc): freed activations leave the process."""
import subprocess
import sys

import pytest

from doubledip.engine.nets import memory

glibc_only = pytest.mark.skipif(memory._glibc() is None, reason="glibc's mallopt/malloc_trim only")

CHILD = r"""
import torch
from doubledip.engine.nets import memory
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
torch.empty(30 << 18).fill_(1)   # a freed 30 MB mapped block: glibc's threshold rises to 30 MB
if FIX:
    assert memory.fix_mmap_threshold() and memory.fix_mmap_threshold()   # idempotent
before = rss()
x = torch.empty(20 << 18).fill_(1)   # 20 MB: mapped (fixed threshold) or from the heap
del x
print(rss() - before)
"""


@glibc_only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_fixed_threshold_returns_freed_full_size_tensors_to_the_kernel():
    kept = {}
    for fix in (False, True):
        out = subprocess.run([sys.executable, "-c", f"FIX = {fix}\n" + CHILD], capture_output=True, text=True,
                             check=True)
        kept[fix] = float(out.stdout.strip().splitlines()[-1])
    assert kept[True] < 2  # MB still resident after the free
    assert kept[False] > 15  # without it glibc keeps the block on its heap (what the setting is for)


@glibc_only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_release_free_heap_returns_a_freed_heap_block():
    code = CHILD.replace("if FIX:", "if False:").replace("del x\n", "del x\nmemory.release_free_heap()\n")
    out = subprocess.run([sys.executable, "-c", "FIX = False\n" + code], capture_output=True, text=True, check=True)
    assert float(out.stdout.strip().splitlines()[-1]) < 2


def test_settings_are_harmless_calls():
    memory.release_free_heap()
    assert memory.fix_mmap_threshold() in (True, False)
