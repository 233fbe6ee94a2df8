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
#: built-ins registered after the golden values were written: there is no code "before"
#: to reproduce; their parity tests pin them to their official code instead
#: (tests/strategies/test_<name>_strategy.py)
NEWER_THAN_GOLDEN = {"mmpareto", "dgl", "dgl_cremad", "dgl_ks", "mla"}


#: built-in strategies added after the golden file (they never ran in the code before
#: named modalities); each has its own parity test against its official code instead
AFTER_GOLDEN = {"pmr", "pmr_cremad", "inforeg", "gblend"}


def test_the_golden_file_covers_every_case_and_every_registered_builtin_strategy():
    from balgrad.strategies._registry import STRATEGY_REGISTRY

    assert set(META) == {c.key for c in CASES}
    builtins = {e.name for e in STRATEGY_REGISTRY.entries(plugins=False) if e.origin == "balgrad"}
    assert builtins - NEWER_THAN_GOLDEN - AFTER_GOLDEN <= {c.strategy for c in CASES}


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


def test_two_tower_state_dicts_and_groups_keep_the_layout_of_before():
    """Run folders written before modalities were named load as they are: the same keys,
    shapes and order (keys recorded on commit 94872c8), the same group layout."""
    from strategy_reference import make_model

    recorded = json.loads((HERE / "m2_state_dict_keys.json").read_text())
    from golden.cases import SHAPES

    for name, layout in recorded.items():
        model = make_model(seed=3, **SHAPES[name])
        got = [[k, list(v.shape)] for k, v in model.state_dict().items()]
        assert got == layout["state_dict"], name
        groups = {g: [list(p.shape) for p in ps] for g, ps in model.parameter_groups().items()}
        assert groups == layout["groups"], name
