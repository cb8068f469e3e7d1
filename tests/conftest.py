"""Fixtures shared by the test files: generated data sets made once per session (read only: a test that changes
one copies it first)."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py
# two threads at most; under pytest-xdist the cores divided among the workers
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 1)))))

from helpers import TINY_IMAGENET  # noqa: E402


@pytest.fixture(scope='session')
def tiny_imagenet(tmp_path_factory):
    """``make_tiny_imagenet``'s summary (``root``, ...) of :data:`TINY_IMAGENET`."""
    from mmfastvit.datasets import make_tiny_imagenet
    return make_tiny_imagenet(str(tmp_path_factory.mktemp('tiny_imagenet') / 'data'), **TINY_IMAGENET)
