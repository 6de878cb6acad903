"""tilearena.layouts: CuTe hierarchical layouts and F2 linear layouts in one module.

Standard library only, relative imports, so `import layouts` works from the repository
root as well as `import tilearena.layouts` once installed.
"""

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

__all__ = [
    "ComposedLayout",
    "Layout",
    "Swizzle",
    "blocked_product",
    "coalesce",
    "complement",
    "composition",
    "cosize",
    "crd2idx",
    "filter",
    "flat_divide",
    "flat_product",
    "idx2crd",
    "left_inverse",
    "logical_divide",
    "logical_product",
    "make_layout",
    "raked_product",
    "right_inverse",
    "size",
    "tiled_divide",
    "tiled_product",
    "zipped_divide",
    "zipped_product",
]
