"""Two modalities are unchanged: for every strategy and option set, on (image, text)
models of several shapes, the gradient written to ``.grad`` and every statistic equal
the golden values written by the code before modalities were named (commit 94872c8,
``golden/make_m2_golden.py``) to 1e-12 in float64, over three SGD steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from golden.cases import CASES, run_case
from safetensors.torch import load_file

HERE = Path(__file__).parent / "golden"
GOLDEN = load_file(str(HERE / "m2_golden.safetensors"))
META = json.loads((HERE / "m2_golden.json").read_text())


def test_the_golden_file_covers_every_case_and_every_registered_builtin_strategy():
    from balgrad.strategies.registry import STRATEGY_REGISTRY

    assert set(META) == {c.key for c in CASES}
    builtins = {e.name for e in STRATEGY_REGISTRY.entries(plugins=False) if e.origin == "balgrad"}
    assert builtins <= {c.strategy for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_two_modalities_reproduce_the_code_before_named_modalities(case):
    golden = META[case.key]
    result = run_case(case)
    if golden["error"] is not None:
        assert result.error is not None, "the old code refused this case"
        return
    assert result.error is None, result.error
    assert len(result.grads) == len(golden["stats"])
    for step, grads in enumerate(result.grads):
        want = {
            k.split("|")[2]: v for k, v in GOLDEN.items() if k.startswith(f"{case.key}|{step}|")
        }
        assert set(grads) == set(want), f"step {step}: parameters with a gradient differ"
        for name, g in grads.items():
            err = (g - want[name]).abs().max().item()
            assert err <= 1e-12, f"step {step}, {name}: max |Δ| = {err:.3g}"
    for step, (stats, want) in enumerate(zip(result.stats, golden["stats"])):
        assert set(stats) == set(want), f"step {step}: statistics differ in names"
        for k, v in want.items():
            same = (math.isnan(v) and math.isnan(stats[k])) or abs(stats[k] - v) <= 1e-12
            assert same, f"step {step}, {k}: {stats[k]!r} != {v!r}"
    assert result.lrs == golden["lrs"]
