"""ganspace.distrib outside torchrun (the two-process runs are in test_pca.py and test_train.py)."""

from __future__ import annotations

import pytest
import torch

from ganspace import distrib
from ganspace.errors import InputError


def test_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distrib.rank_and_size() == (0, 1)
    assert distrib.process_device("cpu") == torch.device("cpu")
    with distrib.process_group(torch.device("cpu")):
        assert distrib.rank_and_size() == (0, 1)
    t = torch.ones(3)
    distrib.all_reduce_mean(t)
    distrib.all_reduce_sum(t)
    assert torch.equal(t, torch.ones(3)) and distrib.any_rank(True, torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the refusal without CUDA")
def test_missing_cuda_is_refused():
    with pytest.raises(InputError, match="--device cuda asked for, but CUDA is not available"):
        distrib.process_device("cuda")
    assert distrib.process_device(None) == torch.device("cpu")
