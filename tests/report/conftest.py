"""The ``make_run`` fixture: a synthetic run folder in tmp_path (see report_runfolders)."""

from __future__ import annotations

import pytest
from report_runfolders import ALL_METHODS, write_run


@pytest.fixture
def make_run(tmp_path):
    def _make(methods=ALL_METHODS, seeds=(0, 1), name="run", **kw):
        return write_run(tmp_path / name, list(methods), list(seeds), **kw)

    return _make
