"""F2 linear layouts with the API of Triton's `triton.tools.LinearLayout` (triton 3.6).

A linear layout maps named input dimensions (register, lane, warp, block; or offset)
to named output dimensions (dim0, dim1, ...). Every size is a power of two and the
map is linear over GF(2): the image of an input is the XOR of the basis vectors of
its set bits. Besides the Python API of triton it has what Triton's C++ has and its
Python lacks: sublayout, reshape/transpose of ins and outs, free-variable masks,
divide_left and concat_ins/outs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["LinearLayout"]

Basis = tuple[int, ...]


def _log2_exact(size: int, what: str) -> int:
    if size < 1 or size & (size - 1):
        raise ValueError(f"{what} must be a power of two, got {size}")
    return size.bit_length() - 1


def _rref(rows: list[int], num_cols: int) -> list[int]:
    """Reduced row echelon form over GF(2); bit c of a row is column c; pivots are lowest set bits.

    Non-zero rows come first, ordered by increasing pivot column; the RREF of a matrix
    is unique, so this agrees with Triton's f2reduce on every input.
    """
    rows = list(rows)
    pivot_row = 0
    for column in range(num_cols):
        bit = 1 << column
        found = next((r for r in range(pivot_row, len(rows)) if rows[r] & bit), None)
        if found is None:
            continue
        rows[pivot_row], rows[found] = rows[found], rows[pivot_row]
        for r in range(len(rows)):
            if r != pivot_row and rows[r] & bit:
                rows[r] ^= rows[pivot_row]
        pivot_row += 1
        if pivot_row == len(rows):
            break
    return rows


class LinearLayout:
    """A linear map from named power-of-two input dims to named power-of-two output dims over GF(2)."""

    __slots__ = ("_bases", "_out_dims")

    def __init__(
        self,
        bases: Mapping[str, Sequence[Sequence[int]]] | Sequence[tuple[str, Sequence[Sequence[int]]]] = (),
        out_dims: Sequence[tuple[str, int]] = (),
        require_surjective: bool = False,
    ) -> None:
        items = list(bases.items()) if isinstance(bases, Mapping) else list(bases)
        self._out_dims: dict[str, int] = {}
        for name, out_size in out_dims:
            if name in self._out_dims:
                raise ValueError(f"out dim {name!r} given twice")
            _log2_exact(out_size, f"size of out dim {name!r}")
            self._out_dims[name] = out_size
        self._bases: dict[str, list[Basis]] = {}
        for in_dim, vectors in items:
            if in_dim in self._bases:
                raise ValueError(f"in dim {in_dim!r} given twice")
            checked = []
            for vector in vectors:
                vector = tuple(int(v) for v in vector)
                if len(vector) != len(self._out_dims):
                    raise ValueError(
                        f"basis {list(vector)} of in dim {in_dim!r} has {len(vector)} entries, "
                        f"expected one per out dim ({len(self._out_dims)})"
                    )
                for value, (out_name, out_size) in zip(vector, self._out_dims.items()):
                    if not 0 <= value < out_size:
                        raise ValueError(
                            f"basis value {value} of in dim {in_dim!r} is outside out dim {out_name!r} "
                            f"of size {out_size}"
                        )
                checked.append(vector)
            self._bases[in_dim] = checked
        if require_surjective and not self.is_surjective():
            raise ValueError(f"layout is expected to be surjective, but it is not:{self}")

    # --- constructors ---------------------------------------------------------------------
    @staticmethod
    def from_bases(
        bases: Sequence[tuple[str, Sequence[Sequence[int]]]],
        out_dim_names: Sequence[str],
        out_dim_sizes: Sequence[int] | None = None,
        require_surjective: bool = True,
    ) -> LinearLayout:
        """As triton: out-dim sizes default to the smallest power of two above every basis value."""
        if out_dim_sizes is None:
            if not require_surjective:
                raise ValueError("out_dim_sizes must be provided when require_surjective is false")
            largest = [0] * len(out_dim_names)
            for _, vectors in bases:
                for vector in vectors:
                    for i, value in enumerate(vector):
                        largest[i] = max(largest[i], value)
            out_dim_sizes = [1 << value.bit_length() for value in largest]
        if len(out_dim_sizes) != len(out_dim_names):
            raise ValueError("out_dim_sizes and out_dim_names differ in length")
        return LinearLayout(list(bases), list(zip(out_dim_names, out_dim_sizes)), require_surjective)

    @staticmethod
    def empty() -> LinearLayout:
        return LinearLayout()

    @staticmethod
    def identity_1d(size: int, in_dim: str, out_dim: str) -> LinearLayout:
        bits = _log2_exact(size, "size")
        return LinearLayout({in_dim: [[1 << i] for i in range(bits)]}, [(out_dim, size)])

    @staticmethod
    def strided_1d(size: int, stride: int, in_dim: str, out_dim: str) -> LinearLayout:
        bits = _log2_exact(size, "size")
        _log2_exact(stride, "stride")
        return LinearLayout({in_dim: [[stride << i] for i in range(bits)]}, [(out_dim, stride * size)])

    @staticmethod
    def zeros_1d(size: int, in_dim: str, out_dim: str, out_dim_size: int = 1) -> LinearLayout:
        bits = _log2_exact(size, "size")
        return LinearLayout({in_dim: [[0] for _ in range(bits)]}, [(out_dim, out_dim_size)])

    # --- queries --------------------------------------------------------------------------
    @property
    def bases(self) -> list[tuple[str, list[list[int]]]]:
        return [(name, [list(v) for v in vectors]) for name, vectors in self._bases.items()]

    @property
    def out_dims(self) -> list[tuple[str, int]]:
        return list(self._out_dims.items())

    @property
    def in_dims(self) -> list[tuple[str, int]]:
        return [(name, 1 << len(vectors)) for name, vectors in self._bases.items()]

    @property
    def num_in_dims(self) -> int:
        return len(self._bases)

    @property
    def num_out_dims(self) -> int:
        return len(self._out_dims)

    def get_in_dim_names(self) -> list[str]:
        return list(self._bases)

    def get_out_dim_names(self) -> list[str]:
        return list(self._out_dims)

    def has_in_dim(self, name: str) -> bool:
        return name in self._bases

    def get_in_dim_size(self, name: str) -> int:
        return 1 << self.get_in_dim_size_log2(name)

    def get_in_dim_size_log2(self, name: str) -> int:
        if name not in self._bases:
            raise ValueError(f"in dim {name!r} not in layout (has {self.get_in_dim_names()})")
        return len(self._bases[name])

    def get_out_dim_size(self, name: str) -> int:
        if name not in self._out_dims:
            raise ValueError(f"out dim {name!r} not in layout (has {self.get_out_dim_names()})")
        return self._out_dims[name]

    def get_out_dim_size_log2(self, name: str) -> int:
        return self.get_out_dim_size(name).bit_length() - 1

    def get_total_in_dim_size_log2(self) -> int:
        return sum(len(v) for v in self._bases.values())

    def get_total_out_dim_size_log2(self) -> int:
        return sum(size.bit_length() - 1 for size in self._out_dims.values())

    def get_total_in_dim_size(self) -> int:
        return 1 << self.get_total_in_dim_size_log2()

    def get_total_out_dim_size(self) -> int:
        return 1 << self.get_total_out_dim_size_log2()

    def get_basis(self, in_dim: str, index: int, out_dim: str) -> int:
        return self._bases[in_dim][index][self.get_out_dim_names().index(out_dim)]

    # --- the matrix view -------------------------------------------------------------------
    def _column_vectors(self) -> list[int]:
        """Each in-bit as one int: its out value flattened (first out dim in the low bits)."""
        shifts = []
        running = 0
        for size in self._out_dims.values():
            shifts.append(running)
            running += size.bit_length() - 1
        columns = []
        for vectors in self._bases.values():
            for vector in vectors:
                columns.append(sum(value << shift for value, shift in zip(vector, shifts)))
        return columns

    def _matrix_rows(self) -> list[int]:
        """Rows = out bits, each an int whose bit c is column (in bit) c; as Triton's getMatrix."""
        columns = self._column_vectors()
        return [
            sum(((column >> row) & 1) << c for c, column in enumerate(columns))
            for row in range(self.get_total_out_dim_size_log2())
        ]

    def get_matrix_view(self) -> list[list[int]]:
        num_cols = self.get_total_in_dim_size_log2()
        return [[(row >> c) & 1 for c in range(num_cols)] for row in self._matrix_rows()]

    def rank(self) -> int:
        """Rank of the matrix over GF(2)."""
        return sum(1 for row in _rref(self._matrix_rows(), self.get_total_in_dim_size_log2()) if row)

    def is_surjective(self) -> bool:
        return self.rank() == self.get_total_out_dim_size_log2()

    def is_injective(self) -> bool:
        return self.rank() == self.get_total_in_dim_size_log2()

    def is_invertible(self) -> bool:
        return (
            self.is_surjective() and self.get_total_in_dim_size_log2() == self.get_total_out_dim_size_log2()
        )

    # --- evaluation ----------------------------------------------------------------------
    def apply(self, inputs: Mapping[str, int]) -> dict[str, int]:
        if set(inputs) != set(self._bases):
            raise ValueError(
                f"apply needs exactly the in dims {self.get_in_dim_names()}, got {sorted(inputs)}"
            )
        result = [0] * len(self._out_dims)
        for in_dim, value in inputs.items():
            vectors = self._bases[in_dim]
            if not 0 <= value < (1 << len(vectors)):
                raise ValueError(f"value {value} is outside in dim {in_dim!r} of size {1 << len(vectors)}")
            for bit, vector in enumerate(vectors):
                if value >> bit & 1:
                    result = [r ^ v for r, v in zip(result, vector)]
        return dict(zip(self._out_dims, result))

    def apply_flat(self, index: int) -> int:
        """Flattened form: input bits concatenated (first in dim lowest), output likewise."""
        value = 0
        for bit, column in enumerate(self._column_vectors()):
            if index >> bit & 1:
                value ^= column
        return value

    # --- algebra --------------------------------------------------------------------------
    def compose(self, outer: LinearLayout) -> LinearLayout:
        """outer(self(x)): self's out dims feed outer's in dims (by name)."""
        if set(self._out_dims) != set(outer._bases):
            raise ValueError(
                f"compose: out dims {self.get_out_dim_names()} must equal outer's in dims "
                f"{outer.get_in_dim_names()} (ignoring order)"
            )
        for name, out_size in self._out_dims.items():
            if out_size > outer.get_in_dim_size(name):
                raise ValueError(
                    f"compose: out dim {name!r} has size {out_size}, larger than outer's in dim "
                    f"({outer.get_in_dim_size(name)})"
                )
        new_bases = {
            in_dim: [list(outer.apply(dict(zip(self._out_dims, vector))).values()) for vector in vectors]
            for in_dim, vectors in self._bases.items()
        }
        return LinearLayout(new_bases, outer.out_dims)

    def __mul__(self, other: LinearLayout) -> LinearLayout:
        """Direct product: shared in dims stack other's bits above self's; shared out dims likewise."""
        out_dims: dict[str, int] = dict(self._out_dims)
        for name, out_size in other._out_dims.items():
            out_dims[name] = out_dims.get(name, 1) * out_size
        out_names = list(out_dims)

        def widen(layout: LinearLayout, shift_by_self: bool) -> dict[str, list[list[int]]]:
            result = {}
            for in_dim, vectors in layout._bases.items():
                widened = []
                for vector in vectors:
                    by_name = dict(zip(layout._out_dims, vector))
                    row = []
                    for name in out_names:
                        value = by_name.get(name, 0)
                        if shift_by_self and name in self._out_dims:
                            value *= self._out_dims[name]
                        row.append(value)
                    widened.append(row)
                result[in_dim] = widened
            return result

        mine, theirs = widen(self, False), widen(other, True)
        merged: dict[str, list[list[int]]] = {}
        for in_dim in list(mine) + [d for d in theirs if d not in mine]:
            merged[in_dim] = mine.get(in_dim, []) + theirs.get(in_dim, [])
        return LinearLayout(merged, list(out_dims.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LinearLayout):
            return NotImplemented
        return list(self._out_dims.items()) == list(other._out_dims.items()) and list(
            self._bases.items()
        ) == list(other._bases.items())

    __hash__ = None  # type: ignore[assignment]

    def sublayout(self, in_dims: Iterable[str], out_dims: Iterable[str]) -> LinearLayout:
        """Restrict to some in dims and project onto some out dims (kept in this layout's order)."""
        in_set, out_set = set(in_dims), set(out_dims)
        for name in in_set - set(self._bases):
            raise ValueError(f"sublayout: {name!r} is not an in dim")
        for name in out_set - set(self._out_dims):
            raise ValueError(f"sublayout: {name!r} is not an out dim")
        out_positions = [i for i, name in enumerate(self._out_dims) if name in out_set]
        return LinearLayout(
            {
                name: [[vector[i] for i in out_positions] for vector in vectors]
                for name, vectors in self._bases.items()
                if name in in_set
            },
            [(name, size) for name, size in self._out_dims.items() if name in out_set],
        )

    def sublayout_is_zero(self, in_dims: Iterable[str], out_dims: Iterable[str]) -> bool:
        return all(not any(v) for _, vectors in self.sublayout(in_dims, out_dims).bases for v in vectors)

    def transpose_ins(self, order: Sequence[str]) -> LinearLayout:
        if sorted(order) != sorted(self._bases):
            raise ValueError(
                f"transpose_ins: {list(order)} is not a permutation of {self.get_in_dim_names()}"
            )
        return LinearLayout([(name, self._bases[name]) for name in order], self.out_dims)

    def transpose_outs(self, order: Sequence[str]) -> LinearLayout:
        if sorted(order) != sorted(self._out_dims):
            raise ValueError(
                f"transpose_outs: {list(order)} is not a permutation of {self.get_out_dim_names()}"
            )
        positions = [self.get_out_dim_names().index(name) for name in order]
        return LinearLayout(
            {name: [[v[p] for p in positions] for v in vectors] for name, vectors in self._bases.items()},
            [(name, self._out_dims[name]) for name in order],
        )

    def reshape_ins(self, new_in_dims: Sequence[tuple[str, int]]) -> LinearLayout:
        """Flatten the in dims (first lowest) and split the bits again into new_in_dims."""
        total_bits = sum(_log2_exact(size, f"size of in dim {name!r}") for name, size in new_in_dims)
        if total_bits != self.get_total_in_dim_size_log2():
            raise ValueError("reshape_ins must keep the total in size")
        flat = [v for vectors in self._bases.values() for v in vectors]
        result, start = [], 0
        for name, size in new_in_dims:
            bits = size.bit_length() - 1
            result.append((name, flat[start : start + bits]))
            start += bits
        return LinearLayout(result, self.out_dims)

    def reshape_outs(self, new_out_dims: Sequence[tuple[str, int]]) -> LinearLayout:
        """Flatten the out dims (first lowest) and split the bits again into new_out_dims."""
        total_bits = sum(_log2_exact(size, f"size of out dim {name!r}") for name, size in new_out_dims)
        if total_bits != self.get_total_out_dim_size_log2():
            raise ValueError("reshape_outs must keep the total out size")
        shifts, running = [], 0
        for _, size in new_out_dims:
            shifts.append(running)
            running += size.bit_length() - 1
        columns = iter(self._column_vectors())
        result = {}
        for name, vectors in self._bases.items():
            result[name] = [
                [(column >> shift) & (size - 1) for shift, (_, size) in zip(shifts, new_out_dims)]
                for column in (next(columns) for _ in vectors)
            ]
        return LinearLayout(result, list(new_out_dims))

    def flatten_ins(self) -> LinearLayout:
        if not self._bases:
            return self
        return self.reshape_ins([(self.get_in_dim_names()[0], self.get_total_in_dim_size())])

    def flatten_outs(self) -> LinearLayout:
        if not self._out_dims:
            return self
        return self.reshape_outs([(self.get_out_dim_names()[0], self.get_total_out_dim_size())])

    def concat_ins(self, other: LinearLayout) -> LinearLayout:
        """Side by side in dims (disjoint names) over the same out dims."""
        if self.out_dims != other.out_dims:
            raise ValueError("concat_ins needs identical out dims")
        if set(self._bases) & set(other._bases):
            raise ValueError("concat_ins needs disjoint in dims")
        return LinearLayout(list(self._bases.items()) + list(other._bases.items()), self.out_dims)

    def concat_outs(self, other: LinearLayout) -> LinearLayout:
        """Same in dims (same sizes), disjoint out dims stacked: each basis gets other's entries appended."""
        if self.in_dims != other.in_dims:
            raise ValueError("concat_outs needs identical in dims")
        if set(self._out_dims) & set(other._out_dims):
            raise ValueError("concat_outs needs disjoint out dims")
        return LinearLayout(
            {
                name: [list(a) + list(b) for a, b in zip(vectors, other._bases[name])]
                for name, vectors in self._bases.items()
            },
            self.out_dims + other.out_dims,
        )

    def free_variable_masks(self) -> dict[str, int]:
        """Per in dim, a bit mask of the in bits that are free (do not change the output's pivots)."""
        num_cols = self.get_total_in_dim_size_log2()
        pivots = {(row & -row).bit_length() - 1 for row in _rref(self._matrix_rows(), num_cols) if row}
        masks, column = {}, 0
        for name, vectors in self._bases.items():
            mask = 0
            for bit in range(len(vectors)):
                if column not in pivots:
                    mask |= 1 << bit
                column += 1
            masks[name] = mask
        return masks

    def divide_left(self, divisor: LinearLayout) -> LinearLayout | None:
        """C with self == divisor * C, or None when divisor is not a left factor of self."""
        for name in divisor._bases:
            if name not in self._bases or len(divisor._bases[name]) > len(self._bases[name]):
                return None
        for name, size in divisor._out_dims.items():
            if name not in self._out_dims or self._out_dims[name] % size:
                return None
        out_names = self.get_out_dim_names()
        quotient_out = [
            (name, size // divisor._out_dims.get(name, 1)) for name, size in self._out_dims.items()
        ]
        quotient: dict[str, list[list[int]]] = {}
        for name, vectors in self._bases.items():
            low_count = len(divisor._bases.get(name, []))
            for i in range(low_count):
                expected = dict(zip(divisor._out_dims, divisor._bases[name][i]))
                if any(vectors[i][k] != expected.get(out, 0) for k, out in enumerate(out_names)):
                    return None
            rest = []
            for vector in vectors[low_count:]:
                row = []
                for value, out in zip(vector, out_names):
                    low_size = divisor._out_dims.get(out, 1)
                    if value % low_size:
                        return None
                    row.append(value // low_size)
                rest.append(row)
            quotient[name] = rest
        return LinearLayout(quotient, quotient_out)

    # --- inverses -------------------------------------------------------------------------
    def invert_and_compose(self, outer: LinearLayout, check_surjective: bool = True) -> LinearLayout:
        """X with outer(X(x)) == self(x): how to reach self's elements through outer's inputs.

        As Triton: in dims on which both layouts agree map to themselves (nothing to
        move); the rest is the minimum-norm least-squares solution over GF(2).
        check_surjective=False accepts an outer that is not surjective provided the image
        of self lies inside the image of outer (Triton asserts this only in debug builds).
        """
        out_names = self.get_out_dim_names()
        if set(out_names) != set(outer._out_dims):
            raise ValueError(
                f"invert_and_compose: out dims differ ({out_names} vs {outer.get_out_dim_names()})"
            )
        target = self
        source = outer.transpose_outs(out_names)
        for name in out_names:
            if source._out_dims[name] != target._out_dims[name]:
                raise ValueError(
                    f"invert_and_compose: out dim {name!r} has different sizes (conversion keeps shape)"
                )
        if check_surjective and not source.is_surjective():
            raise ValueError("invert_and_compose: outer must be surjective")
        identity_dims = [
            name
            for name in source._bases
            if name in target._bases
            and source.sublayout([name], out_names) == target.sublayout([name], out_names)
        ]
        source_reduced = source.sublayout([d for d in source._bases if d not in identity_dims], out_names)
        target_reduced = target.sublayout([d for d in target._bases if d not in identity_dims], out_names)
        solution = (
            LinearLayout.empty()
            if not source_reduced._bases
            else _least_squares(source_reduced, target_reduced)
        )
        for name in identity_dims:
            solution = solution * LinearLayout.identity_1d(source.get_in_dim_size(name), name, name)
        return solution.transpose_ins(target.get_in_dim_names()).transpose_outs(source.get_in_dim_names())

    def pseudoinvert(self) -> LinearLayout:
        if not self.is_surjective():
            raise ValueError("pseudoinvert needs a surjective layout")
        identity = LinearLayout.empty()
        for name, size in self._out_dims.items():
            identity = identity * LinearLayout.identity_1d(size, name, name)
        return identity.invert_and_compose(self)

    def invert(self) -> LinearLayout:
        if not self.is_invertible():
            raise ValueError("invert needs a surjective and square (bijective) layout")
        return self.pseudoinvert()

    # --- printing -------------------------------------------------------------------------
    def __str__(self) -> str:
        out_text = "[" + ", ".join(f"{name} (size {size})" for name, size in self._out_dims.items()) + "]"
        if not self._bases:
            return "\n(empty layout)" if not self._out_dims else f"\n(empty layout with out-dims {out_text})"
        text = "\n"
        for name, vectors in self._bases.items():
            if not vectors:
                text += f" - {name} is a size 1 dimension\n"
                continue
            text += (
                " - "
                + "\n   ".join(
                    f"{name}={1 << i} -> (" + ", ".join(str(v) for v in vector) + ")"
                    for i, vector in enumerate(vectors)
                )
                + "\n"
            )
        return text + "where out dims are: " + out_text

    __repr__ = __str__


def _least_squares(source: LinearLayout, target: LinearLayout) -> LinearLayout:
    """Minimum-norm X with source(X) == target over GF(2) (Triton's lstsq), via the RREF of [A | B]."""
    source.get_total_out_dim_size_log2()
    columns_a = source.get_total_in_dim_size_log2()
    columns_b = target.get_total_in_dim_size_log2()
    rows_a, rows_b = source._matrix_rows(), target._matrix_rows()
    combined = _rref([a | (b << columns_a) for a, b in zip(rows_a, rows_b)], columns_a + columns_b)
    pivot_rows: dict[int, int] = {}
    for row in combined:
        if not row:
            continue
        pivot = (row & -row).bit_length() - 1
        if pivot >= columns_a:
            raise ValueError("invert_and_compose: the image of self is not inside the image of outer")
        pivot_rows[pivot] = row >> columns_a
    # Free columns of A get 0 (the minimum-norm choice); pivot column r reads the B part.
    flat_bases = []
    for column in range(columns_b):
        flat_bases.append([sum(((pivot_rows.get(r, 0) >> column) & 1) << r for r in range(columns_a))])
    in_name = source.get_in_dim_names()[0]
    out_name = source.get_out_dim_names()[0]
    flattened = LinearLayout({in_name: flat_bases}, [(out_name, 1 << columns_a)])
    return flattened.reshape_ins(target.in_dims).reshape_outs(source.in_dims)
