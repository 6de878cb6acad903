"""tilearena.layouts: CuTe hierarchical layouts and F2 linear layouts in one module.

- cute: Layout, Swizzle, ComposedLayout and CuTe's algebra (composition, complement,
  inverses, divides, products), checked against CuTe DSL.
- linear: LinearLayout with the API of triton.tools.LinearLayout plus the C++-only parts.
- hardware: Triton's GPU layouts (blocked, mma_v2/v3, dot_operand, slice,
  swizzled_shared, nvmma_shared) as linear layouts, checked against Triton.
- convert: CuTe <-> linear layouts, Triton swizzled shared <-> CuTe Swizzle.
- planner / swizzling: how Triton moves data in convert_layout (registers, warp
  shuffles or shared memory, with its swizzle and bank conflicts).
- draw / cli: terminal grids and SVG drawings; `tilearena layout show`.

Standard library only, relative imports, so `import layouts` works from the repository
root as well as `import tilearena.layouts` once installed.
"""

from .convert import cute_to_linear, linear_to_cute, swizzled_shared_to_cute
from .cute import (
    ComposedLayout,
    Layout,
    Swizzle,
    blocked_product,
    coalesce,
    complement,
    composition,
    cosize,
    crd2idx,
    filter,
    flat_divide,
    flat_product,
    idx2crd,
    left_inverse,
    logical_divide,
    logical_product,
    make_layout,
    raked_product,
    right_inverse,
    size,
    tiled_divide,
    tiled_product,
    zipped_divide,
    zipped_product,
)
from .draw import to_svg
from .linear import LinearLayout
from .planner import ConversionPlan, plan_conversion

__all__ = [
    "ComposedLayout",
    "ConversionPlan",
    "Layout",
    "LinearLayout",
    "Swizzle",
    "blocked_product",
    "coalesce",
    "complement",
    "composition",
    "cosize",
    "crd2idx",
    "cute_to_linear",
    "filter",
    "flat_divide",
    "flat_product",
    "idx2crd",
    "left_inverse",
    "linear_to_cute",
    "logical_divide",
    "logical_product",
    "make_layout",
    "plan_conversion",
    "raked_product",
    "right_inverse",
    "size",
    "swizzled_shared_to_cute",
    "tiled_divide",
    "tiled_product",
    "to_svg",
    "zipped_divide",
    "zipped_product",
]
