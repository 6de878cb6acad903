"""Test setup: without a GPU, Triton kernels run in its interpreter (chosen before import)."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if HAS_CUDA else "cpu"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (run on the H100: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _return_cached_gpu_memory(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under ``-n 8`` each worker's caching allocator keeps what its tests freed, so a worker that
    builds a float64 reference of a few GiB can run out of memory on a GPU that holds mostly
    other workers' cache (seen at 4634916 and 7a801d0: 7 and 5 such failures, all passing when
    run alone). Hand the cache back after every GPU test."""
    yield
    if HAS_CUDA and "gpu" in request.keywords:
        gc.collect()
        torch.cuda.empty_cache()


@pytest.fixture
def device() -> str:
    return DEVICE


def _triton_language_objects() -> list[object]:
    try:
        import triton.language as tl
    except ImportError:
        return []
    return [tl, tl.core, tl.math, tl.core.tensor, tl.core.tensor_descriptor_base]


# The Triton interpreter patches triton.language with its own builder and, when a kernel calls
# another @triton.jit function, never restores it (triton 3.6, runtime/interpreter.py). A test
# module that later compiles for real (the layout tests compile gluon kernels for sm_90) then
# fails with "InterpreterBuilder has no attribute ...". Restore the pristine attributes after
# every test module.
_PRISTINE = [(obj, dict(vars(obj))) for obj in _triton_language_objects()]


@pytest.fixture(autouse=True, scope="module")
def _restore_triton_language():
    yield
    for obj, attributes in _PRISTINE:
        for name, value in attributes.items():
            if vars(obj).get(name, _MISSING) is not value:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(obj, name, value)
        for name in set(vars(obj)) - set(attributes):
            with contextlib.suppress(AttributeError, TypeError):
                delattr(obj, name)


_MISSING = object()
