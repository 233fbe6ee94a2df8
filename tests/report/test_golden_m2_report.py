"""At M = 2 (image, text) the report is the one the two-modality code wrote: every text
output of tests/report/golden/m2/ byte for byte (a JSON file value for value, its floats
to 1e-12), and the data each figure plots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))

from write_golden import FIGURES, OUTPUTS, build  # noqa: E402

#: figures that may hold panels after the golden ones (ΔGap vs r gained the per-modality
#: scores); the golden panels themselves must be unchanged
EXTRA_PANELS = {"gap_vs_ratio.png": 2}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return build(GOLDEN / "m2" / "input", tmp_path_factory.mktemp("golden") / "run", mp)


def _close(got, want, where: str = "") -> None:
    """JSON values equal, floats to 1e-12 relative (scipy's t-interval bounds differ from
    the formula's in the last bit: its mean and standard error sum in another order)."""
    assert type(got) is type(want), where
    if isinstance(want, dict):
        assert list(got) == list(want), where
        for k in want:
            _close(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            _close(a, b, f"{where}/{i}")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), where
    else:
        assert got == want, where


@pytest.mark.parametrize("name", OUTPUTS)
def test_text_output_reproduces_byte_for_byte(built, name):
    """Every output byte for byte; a JSON file value for value (its floats to 1e-12)."""
    work, _ = built
    got, want = (work / name).read_bytes(), (GOLDEN / "m2" / "expected" / name).read_bytes()
    if name.endswith(".json"):
        _close(json.loads(got), json.loads(want))
    else:
        assert got == want


@pytest.mark.parametrize("name", FIGURES)
def test_figure_plots_the_same_data(built, name):
    _, figs = built
    expected = json.loads((GOLDEN / "m2" / "expected" / "figures.json").read_text())[name]
    got = json.loads(json.dumps(figs[name]))  # the same JSON round trip as the golden file
    assert got["suptitle"] == expected["suptitle"]
    n = len(expected["axes"])
    assert len(got["axes"]) == n + EXTRA_PANELS.get(name, 0)
    for i, (a, b) in enumerate(zip(got["axes"], expected["axes"])):
        assert a == b, (name, i)
