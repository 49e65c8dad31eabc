"""Reference-mode outputs of every image task stay what they were, bit for bit, on each machine
kind recorded (tests/golden_runs.py). On a kind with no record the fields are checked and the
numbers skipped: across CPU kinds a few Adam steps amplify last-bit rounding to 1e-2, beyond
any tolerance that would still catch a change."""
import numpy as np
import pytest
import torch

from golden_runs import arrays, digest, machine, records, runs

RECORDS = records()


def test_every_record_holds_the_same_fields():
    fields = {m: sorted(h) for m, h in RECORDS.items()}
    assert fields and len({tuple(f) for f in fields.values()}) == 1, fields


@pytest.mark.parametrize("name", sorted(runs()))
def test_reference_outputs_unchanged(name):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = arrays(runs()[name]())
    finally:
        torch.set_num_threads(previous)
    any_record = next(iter(RECORDS.values()))
    expected = sorted(k.split("/", 1)[1] for k in any_record if k.startswith(name + "/"))
    assert sorted(got) == expected, "the task's output fields changed"
    for arr in got.values():
        assert np.isfinite(arr).all()
    here = RECORDS.get(machine())
    if here is None:
        pytest.skip(f"no bit-exact record for this machine kind ({machine()}; recorded: {sorted(RECORDS)}); "
                    "with unchanged code, add one: python tests/golden_runs.py --add")
    for field, arr in got.items():
        key = f"{name}/{field}"
        assert digest(arr) == here[key], f"{key} changed (bit-exact check)"
