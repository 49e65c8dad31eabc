"""Reference-mode outputs of every image task stay what they were, bit for bit on the machine
that recorded them (tests/golden_runs.py); on another CPU or torch build, where convolution
kernels may round differently, within a tolerance of the recorded arrays."""
import json

import numpy as np
import pytest
import torch

from golden_runs import GOLDEN, arrays, digest, machine, runs

RECORD = json.loads((GOLDEN / "reference_hashes.json").read_text())
STORED = np.load(GOLDEN / "reference_outputs.npz")


@pytest.mark.parametrize("name", sorted(runs()))
def test_reference_outputs_unchanged(name):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = arrays(runs()[name]())
    finally:
        torch.set_num_threads(previous)
    expected = sorted(k.split("/", 1)[1] for k in RECORD["hashes"] if k.startswith(name + "/"))
    assert sorted(got) == expected, "the task's output fields changed"
    same_machine = RECORD["machine"] == machine()
    for field, arr in got.items():
        key = f"{name}/{field}"
        if same_machine:
            assert digest(arr) == RECORD["hashes"][key], f"{key} changed (bit-exact check)"
        else:  # another CPU kind: ISA-dependent rounding only
            np.testing.assert_allclose(arr, STORED[key], atol=2e-4, err_msg=key)
