"""
Shared pytest setup: put src/, tools/ and data/ on sys.path so tests import the flat modules
(e.g. `from attention_math import self_attention`, `from make_synthetic_corpus import make_corpus`),
and the `one_thread` fixture that modules of tiny-tensor tests opt into with
`pytestmark = pytest.mark.usefixtures("one_thread")`.
"""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for folder in ("src", "tools", "data"):
    if os.path.join(ROOT, folder) not in sys.path:
        sys.path.insert(0, os.path.join(ROOT, folder))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is fastest, and immune to other processes on the cores (on a busy
    CPU, intra-op threads waiting for each other make every op take a scheduler slice)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
