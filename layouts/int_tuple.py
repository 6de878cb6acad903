"""Hierarchical integer tuples ("IntTuple" in CuTe): an int, or a tuple of IntTuples.

Every function here works on plain Python ints and tuples so that layouts stay
hashable, printable and comparable without any wrapper type.
"""

from __future__ import annotations

from collections.abc import Iterable

IntTuple = int | tuple["IntTuple", ...]


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_tuple(value: object) -> bool:
    return isinstance(value, tuple)


def as_int_tuple(value: object) -> IntTuple:
    """Normalise lists (and nested lists) to tuples; reject anything that is not an IntTuple."""
    if isinstance(value, bool):
        raise TypeError(f"expected an int or a tuple of ints, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(as_int_tuple(element) for element in value)
    raise TypeError(f"expected an int or a tuple of ints, got {value!r}")


def flatten(value: IntTuple) -> tuple[int, ...]:
    """All the leaves, left to right."""
    if is_tuple(value):
        return tuple(leaf for element in value for leaf in flatten(element))
    return (value,)


def product(value: IntTuple) -> int:
    result = 1
    for leaf in flatten(value):
        result *= leaf
    return result


def rank(value: IntTuple) -> int:
    return len(value) if is_tuple(value) else 1


def depth(value: IntTuple) -> int:
    if is_tuple(value):
        return 1 + max((depth(element) for element in value), default=0)
    return 0


def congruent(a: IntTuple, b: IntTuple) -> bool:
    """Same hierarchical profile (same nesting, same ranks)."""
    if is_tuple(a) and is_tuple(b):
        return len(a) == len(b) and all(congruent(x, y) for x, y in zip(a, b))
    return not is_tuple(a) and not is_tuple(b)


def unflatten(leaves: Iterable[int], profile: IntTuple) -> IntTuple:
    """Rebuild the nesting of `profile` from a flat sequence of leaves."""
    iterator = iter(leaves)

    def rebuild(node: IntTuple) -> IntTuple:
        if is_tuple(node):
            return tuple(rebuild(element) for element in node)
        return next(iterator)

    return rebuild(profile)


def inner_product(a: IntTuple, b: IntTuple) -> int:
    if is_tuple(a):
        if not is_tuple(b) or len(a) != len(b):
            raise ValueError(f"inner product of incongruent tuples {a} and {b}")
        return sum(inner_product(x, y) for x, y in zip(a, b))
    if is_tuple(b):
        raise ValueError(f"inner product of incongruent tuples {a} and {b}")
    return a * b


def prefix_product(shape: IntTuple, start: int = 1) -> IntTuple:
    """Exclusive prefix product in colexicographic order: the compact column-major strides."""
    if is_tuple(shape):
        result = []
        running = start
        for element in shape:
            result.append(prefix_product(element, running))
            running *= product(element)
        return tuple(result)
    return start


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def shape_div(a: IntTuple, b: IntTuple) -> IntTuple:
    """CuTe's shape_div: divide a shape by a count, consuming modes left to right.

    For ints it requires that one of the two divides the other (CuTe's divisibility
    condition); the result of a smaller numerator is 1 (ceil of a / b).
    """
    if is_tuple(a):
        if is_tuple(b):
            if len(a) != len(b):
                raise ValueError(f"shape_div of incongruent tuples {a} and {b}")
            return tuple(shape_div(x, y) for x, y in zip(a, b))
        result = []
        remaining = b
        for element in a:
            result.append(shape_div(element, remaining))
            remaining = shape_div(remaining, product(element))
        return tuple(result)
    if is_tuple(b):
        return shape_div(a, product(b))
    if a % b == 0:
        return a // b
    if b % a == 0:
        return 1
    raise ValueError(f"shape divisibility condition failed: neither of {a} and {b} divides the other")


def idx2crd(index: IntTuple, shape: IntTuple, stride: IntTuple | None = None) -> IntTuple:
    """The natural coordinate of a 1-D index in `shape`, colexicographic (first mode fastest)."""
    if stride is None:
        stride = prefix_product(shape)
    if is_tuple(index):
        if not is_tuple(shape) or len(index) != len(shape):
            raise ValueError(f"coordinate {index} is not congruent with shape {shape}")
        return tuple(idx2crd(i, s, d) for i, s, d in zip(index, shape, stride))
    if is_tuple(shape):
        return tuple(idx2crd(index, s, d) for s, d in zip(shape, stride))
    return (index // stride) % shape


def crd2idx(coord: IntTuple, shape: IntTuple, stride: IntTuple | None = None) -> int:
    """Map a coordinate (1-D, partially or fully hierarchical) to an index via the strides.

    With stride omitted this is the colexicographic linearisation. A 1-D coordinate
    given to a multi-mode shape is split colexicographically; the last mode keeps any
    overflow, so indices past the size extend the layout along its last mode, as in CuTe.
    """
    if stride is None:
        stride = prefix_product(shape)
    if is_tuple(coord):
        if not is_tuple(shape) or len(coord) != len(shape):
            raise ValueError(f"coordinate {coord} is not congruent with shape {shape}")
        return sum(crd2idx(c, s, d) for c, s, d in zip(coord, shape, stride))
    if is_tuple(shape):
        if len(shape) == 0:
            return 0
        total = 0
        remaining = coord
        for position, (s, d) in enumerate(zip(shape, stride)):
            if position == len(shape) - 1:
                total += crd2idx(remaining, s, d)
            else:
                size_of_mode = product(s)
                total += crd2idx(remaining % size_of_mode, s, d)
                remaining //= size_of_mode
        return total
    return coord * stride


def format_int_tuple(value: IntTuple) -> str:
    """CuTe notation without spaces: (2,(3,4))."""
    if is_tuple(value):
        return "(" + ",".join(format_int_tuple(element) for element in value) + ")"
    return str(value)


def parse_int_tuple(text: str) -> IntTuple:
    """Parse "(2,(3,4))" or "8" (whitespace allowed; CuTe's "_" prefix on static ints is ignored)."""
    cleaned = text.replace(" ", "").replace("_", "")
    position = 0

    def parse_node() -> IntTuple:
        nonlocal position
        if position >= len(cleaned):
            raise ValueError(f"unexpected end of int tuple in {text!r}")
        if cleaned[position] == "(":
            position += 1
            elements: list[IntTuple] = []
            if position < len(cleaned) and cleaned[position] == ")":
                position += 1
                return ()
            while True:
                elements.append(parse_node())
                if position >= len(cleaned):
                    raise ValueError(f"unbalanced parentheses in {text!r}")
                if cleaned[position] == ",":
                    position += 1
                    continue
                if cleaned[position] == ")":
                    position += 1
                    return tuple(elements)
                raise ValueError(f"unexpected {cleaned[position]!r} at {position} in {text!r}")
        start = position
        if position < len(cleaned) and cleaned[position] in "+-":
            position += 1
        while position < len(cleaned) and cleaned[position].isdigit():
            position += 1
        if start == position or not cleaned[start:position].lstrip("+-"):
            raise ValueError(f"expected an integer at {start} in {text!r}")
        return int(cleaned[start:position])

    result = parse_node()
    if position != len(cleaned):
        raise ValueError(f"trailing text {cleaned[position:]!r} in {text!r}")
    return result
