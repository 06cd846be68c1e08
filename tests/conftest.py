"""Shared pytest wiring: markers that skip when their hardware or package is absent."""

import importlib.util

import pytest


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        has_cuda = False
    has_habitat = importlib.util.find_spec("habitat_sim") is not None
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    skip_habitat = pytest.mark.skip(reason="needs habitat_sim (conda install habitat-sim)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "habitat" in item.keywords and not has_habitat:
            item.add_marker(skip_habitat)
