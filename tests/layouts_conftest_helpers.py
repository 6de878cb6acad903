"""Shared helpers for the layout tests: random-layout strategies and the two oracles.

The CuTe oracle runs many algebra operations inside ONE `@cute.jit` trace (CuTe DSL
evaluates static layouts while tracing, on the CPU), because each trace costs ~0.1 s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import sys
from pathlib import Path

from hypothesis import strategies as st

try:
    import layouts  # noqa: F401
except ImportError:  # plain `pytest` does not put the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layouts import Layout

# --------------------------------------------------------------------------------------
# hypothesis strategies
# --------------------------------------------------------------------------------------
SMALL_EXTENTS = [1, 2, 3, 4, 6, 8]
POW2_EXTENTS = [1, 2, 4, 8]


@st.composite
def int_tuple_shapes(draw, extents: Sequence[int] = SMALL_EXTENTS, max_rank: int = 3, max_size: int = 512):
    """A nested shape of depth <= 2 whose size stays under max_size."""

    def leaf():
        return draw(st.sampled_from(extents))

    rank = draw(st.integers(1, max_rank))
    modes = []
    for _ in range(rank):
        if draw(st.integers(0, 3)) == 0:
            modes.append(tuple(leaf() for _ in range(draw(st.integers(1, 2)))))
        else:
            modes.append(leaf())
    shape = modes[0] if rank == 1 and not isinstance(modes[0], tuple) else tuple(modes)
    from layouts.int_tuple import product

    if product(shape) > max_size:
        return draw(st.sampled_from(extents))
    return shape


@st.composite
def layouts(draw, extents: Sequence[int] = SMALL_EXTENTS, max_rank: int = 3, max_stride: int = 64):
    """Random layouts: either compact (a permuted column-major order, possibly with holes) or arbitrary."""
    from layouts.int_tuple import flatten, unflatten

    shape = draw(int_tuple_shapes(extents, max_rank))
    leaves = flatten(shape)
    style = draw(st.sampled_from(["compact", "compact", "arbitrary"]))
    if style == "arbitrary":
        strides = [draw(st.integers(0, max_stride)) for _ in leaves]
    else:
        # A permutation of a column-major order with optional dilation gaps and stride-0 broadcasts.
        order = draw(st.permutations(range(len(leaves))))
        strides = [0] * len(leaves)
        running = 1
        for position in order:
            running *= draw(st.sampled_from([1, 1, 1, 2]))
            if draw(st.integers(0, 7)) == 0:
                strides[position] = 0
            else:
                strides[position] = running
                running *= leaves[position]
    return Layout(shape, unflatten(strides, shape))


@st.composite
def injective_layouts(draw, extents: Sequence[int] = SMALL_EXTENTS, max_rank: int = 3):
    """Layouts whose strides nest (what complement, left_inverse and products need)."""
    from layouts.int_tuple import flatten, unflatten

    shape = draw(int_tuple_shapes(extents, max_rank))
    leaves = flatten(shape)
    order = draw(st.permutations(range(len(leaves))))
    strides = [0] * len(leaves)
    running = 1
    for position in order:
        running *= draw(st.sampled_from([1, 1, 2, 3]))
        strides[position] = running
        running *= leaves[position]
    return Layout(shape, unflatten(strides, shape))


# --------------------------------------------------------------------------------------
# CuTe DSL oracle
# --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _cute_module():
    import cutlass.cute as cute

    return cute


def _to_cute(cute, value: Any):
    """Our Layout -> cute layout; ints stay ints; tuples become tuples of converted elements."""
    if isinstance(value, Layout):
        return cute.make_layout(value.shape, stride=value.stride)
    if isinstance(value, tuple):
        return tuple(_to_cute(cute, element) for element in value)
    return value


def run_cute_batch(calls: Sequence[tuple[str, tuple]]) -> list[str]:
    """Evaluate `cute.<name>(*args)` for every call inside one jit trace; str(result) or 'ERROR'."""
    cute = _cute_module()
    results: list[str] = []

    def trace_body() -> None:
        for name, args in calls:
            function: Callable = getattr(cute, name)
            try:
                results.append(str(function(*(_to_cute(cute, a) for a in args))))
            except Exception:  # the DSL reports impossible algebra as MLIR errors
                results.append("ERROR")

    @cute.jit
    def traced() -> None:
        trace_body()

    traced()
    return results


def normalise_unit_strides(text: str) -> str:
    """Printed layout with the stride of every extent-1 leaf set to 0.

    The stride of an extent-1 mode never contributes to any index, and CuTe DSL and
    this module pick it differently in a few corner cases, so equality ignores it.
    """
    if text == "ERROR":
        return text
    from layouts.int_tuple import flatten, format_int_tuple, unflatten

    layout = Layout.parse(text)
    strides = [0 if extent == 1 else stride for extent, stride in layout.flat_modes()]
    return f"{format_int_tuple(layout.shape)}:{format_int_tuple(unflatten(strides, layout.stride))}"
