"""At M = 2 (image, text) the report is the one the two-modality code wrote: every text
output of tests/report/golden/m2/ byte for byte, and the data each figure plots."""

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


@pytest.mark.parametrize("name", OUTPUTS)
def test_text_output_reproduces_byte_for_byte(built, name):
    work, _ = built
    assert (work / name).read_bytes() == (GOLDEN / "m2" / "expected" / name).read_bytes()


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
