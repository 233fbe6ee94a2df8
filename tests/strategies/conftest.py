"""One intra-op thread for these tiny float64 models: much faster than several
threads contending for a small, busy machine."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
