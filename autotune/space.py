"""Config spaces: the named parameters of one (op, DSL) implementation, their allowed values and
the constraints that make a combination valid for a given shape, dtype and GPU.

The search strategies only talk to :class:`ConfigSpace` (size, enumerate, sample, neighbours,
validity, features for the surrogate), so a plain ``{name: (values...)}`` dict declared by a
kernel (:class:`DictConfigSpace`) and a space owned by another tool (Helion's config spec,
wrapped by :class:`CallbackConfigSpace`) are searched the same way.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Config = dict[str, Any]


def canonical_json(config: Mapping[str, Any]) -> str:
    """One spelling per config (sorted keys, no spaces): the cache key and the tie-breaker."""
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class TuneContext:
    """What a validity constraint may depend on besides the config itself."""

    shape: Mapping[str, int] = field(default_factory=dict)
    dtype_bytes: int = 2
    #: Shared memory one block may use on this GPU (227 KiB on the H100), None when unknown (CPU).
    shared_memory_bytes: int | None = None
    sm_count: int | None = None
    compute_capability: tuple[int, int] | None = None
    #: The device's memory (what caps how many compile workers may hold inputs at once).
    device_memory_bytes: int | None = None


#: A constraint returns None if ``config`` is valid in ``context``, else the reason it is not.
Constraint = Callable[[Mapping[str, Any], TuneContext], "str | None"]


def divides(param: str, dim: str) -> Constraint:
    """``param`` must divide the shape dimension ``dim`` (e.g. BLOCK_K divides K, no tail)."""

    def check(config: Mapping[str, Any], context: TuneContext) -> str | None:
        size = context.shape.get(dim)
        if size is None or param not in config:
            return None
        return (
            None
            if size % int(config[param]) == 0
            else f"{param}={config[param]} does not divide {dim}={size}"
        )

    return check


def at_most_dim(param: str, dim: str, slack: int = 1) -> Constraint:
    """A tile no larger than ``slack`` times the padded dimension (larger only wastes work)."""

    def check(config: Mapping[str, Any], context: TuneContext) -> str | None:
        size = context.shape.get(dim)
        if size is None or param not in config:
            return None
        padded = 1 << max(0, (size - 1).bit_length())
        value = int(config[param])
        return None if value <= slack * padded else f"{param}={value} exceeds {dim}={size} (padded {padded})"

    return check


def shared_memory_fits(bytes_needed: Callable[[Mapping[str, Any], TuneContext], int]) -> Constraint:
    """The config's shared-memory footprint must fit one block's limit on this GPU."""

    def check(config: Mapping[str, Any], context: TuneContext) -> str | None:
        if context.shared_memory_bytes is None:
            return None
        need = bytes_needed(config, context)
        limit = context.shared_memory_bytes
        return None if need <= limit else f"needs {need} B of shared memory, the GPU allows {limit} B"

    return check


class ConfigSpace(Protocol):
    """What the search needs from a space. ``size`` is None when it cannot be enumerated."""

    def size(self) -> int | None: ...

    def enumerate(self, context: TuneContext) -> Iterator[Config]: ...

    def sample(self, rng: random.Random, context: TuneContext) -> Config | None: ...

    def neighbours(self, config: Mapping[str, Any], context: TuneContext) -> list[Config]: ...

    def invalid_reason(self, config: Mapping[str, Any], context: TuneContext | None = None) -> str | None: ...

    def features(self, config: Mapping[str, Any]) -> list[float]: ...

    def effective_key(self, config: Mapping[str, Any], context: TuneContext) -> str: ...


class DictConfigSpace:
    """A product of named discrete parameters, filtered by constraints.

    ``effective``, when given, maps a config to what the kernel actually launches (e.g. the
    row-wise Triton plan): configs with the same effective key are measured once, since a
    parameter that does not apply to this shape cannot change the time.

    ``completion``, when given, fills what a partial config leaves out the way the kernel does
    for this shape (e.g. from the shape class's config), for the constraints to judge; without
    it the space's default, then each parameter's middle value, fill the gaps.
    """

    def __init__(
        self,
        params: Mapping[str, Sequence[Any]],
        constraints: Sequence[Constraint] = (),
        default: Mapping[str, Any] | None = None,
        effective: Callable[[Mapping[str, Any], TuneContext], Any] | None = None,
        completion: Callable[[Mapping[str, Any], TuneContext], Config] | None = None,
    ) -> None:
        if not params:
            params = {}
        self.params: dict[str, tuple[Any, ...]] = {}
        for name, values in params.items():
            values = tuple(values)
            if not values:
                raise ValueError(f"config space: parameter {name!r} has no allowed values")
            self.params[name] = values
        self.constraints = tuple(constraints)
        # A kernel's default may leave parameters out, or set them to None (it computes them);
        # the search fills them in.
        self.default = {name: value for name, value in (default or {}).items() if value is not None}
        self.effective = effective
        self.completion = completion

    # --- enumeration -------------------------------------------------------------------------
    def size(self) -> int | None:
        return math.prod(len(v) for v in self.params.values())

    def _product(self) -> Iterator[Config]:
        names = list(self.params)
        for values in itertools.product(*(self.params[n] for n in names)):
            yield dict(zip(names, values))

    def enumerate(self, context: TuneContext) -> Iterator[Config]:
        for config in self._product():
            if self.invalid_reason(config, context) is None:
                yield config

    def sample(self, rng: random.Random, context: TuneContext, attempts: int = 64) -> Config | None:
        for _ in range(attempts):
            config = {name: rng.choice(values) for name, values in self.params.items()}
            if self.invalid_reason(config, context) is None:
                return config
        return None

    def neighbours(self, config: Mapping[str, Any], context: TuneContext) -> list[Config]:
        """Configs one step away in one parameter (the adjacent allowed value, either side)."""
        result = []
        for name, values in self.params.items():
            current = config.get(name)
            if name not in config or current not in values:
                # A missing parameter: every value is one step away.
                steps = list(values)
            elif current is None:
                # None means "the kernel chooses" (e.g. SPLIT_K): every explicit value is one
                # step away; stepping to its list neighbour would only ever try the first one.
                steps = [v for v in values if v is not None]
            else:
                index = values.index(current)
                steps = [values[i] for i in (index - 1, index + 1) if 0 <= i < len(values)]
            for value in steps:
                candidate = {**config, name: value}
                if self.invalid_reason(candidate, context) is None:
                    result.append(candidate)
        return result

    def complete(self, config: Mapping[str, Any]) -> Config:
        """Fill parameters a partial config leaves out with the default, or the middle value."""
        full = {}
        for name, values in self.params.items():
            if name in config:
                full[name] = config[name]
            elif name in self.default:
                full[name] = self.default[name]
            else:
                full[name] = values[len(values) // 2]
        return full

    # --- validity ----------------------------------------------------------------------------
    def invalid_reason(self, config: Mapping[str, Any], context: TuneContext | None = None) -> str | None:
        """None if ``config`` names only known parameters with allowed values and meets every
        constraint; the reason otherwise. A partial config is allowed (the kernel's default
        fills the rest), an unknown key never is."""
        if not isinstance(config, Mapping):
            return f"a config is a mapping, got {type(config).__name__}"
        for name, value in config.items():
            if name not in self.params:
                return f"unknown parameter {name!r} (known: {sorted(self.params)})"
            # bool is an int in Python: True must not pass for 1.
            allowed = self.params[name]
            if not any(type(value) is type(a) and value == a for a in allowed):
                return f"{name}={value!r} is not one of {list(allowed)}"
        if context is not None and self.constraints:
            # Constraints see the config as the kernel will run it: gaps filled by the default.
            full = self.completion(config, context) if self.completion else self.complete(config)
            for constraint in self.constraints:
                reason = constraint(full, context)
                if reason is not None:
                    return reason
        return None

    # --- surrogate features ------------------------------------------------------------------
    def features(self, config: Mapping[str, Any]) -> list[float]:
        """One-hot per parameter value, plus log2 of numeric values (smooth trends)."""
        row: list[float] = []
        for name, values in self.params.items():
            value = config.get(name)
            row.extend(1.0 if value == v else 0.0 for v in values)
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
                row.append(math.log2(value) if isinstance(value, (int, float)) and value > 0 else 0.0)
        return row

    def effective_key(self, config: Mapping[str, Any], context: TuneContext) -> str:
        if self.effective is None:
            return canonical_json(config)
        try:
            return repr(self.effective(config, context))
        except Exception:
            return canonical_json(config)


class CallbackConfigSpace:
    """An adapter for a space owned by another tool (e.g. Helion's ``ConfigSpec``).

    The tool supplies sampling, neighbours and validation; enumeration is optional (Helion's
    spaces are too large to list). Configs must still be plain JSON-able dicts, which is what
    the baked store keeps.
    """

    def __init__(
        self,
        sample: Callable[[random.Random], Config],
        neighbours: Callable[[Mapping[str, Any]], list[Config]],
        invalid_reason: Callable[[Mapping[str, Any]], str | None],
        features: Callable[[Mapping[str, Any]], list[float]],
        default: Mapping[str, Any] | None = None,
        enumerate_all: Callable[[], Iterator[Config]] | None = None,
        size: int | None = None,
    ) -> None:
        self._sample = sample
        self._neighbours = neighbours
        self._invalid_reason = invalid_reason
        self._features = features
        self._enumerate_all = enumerate_all
        self._size = size
        self.default = dict(default or {})

    def size(self) -> int | None:
        return self._size if self._enumerate_all is not None else None

    def enumerate(self, context: TuneContext) -> Iterator[Config]:
        if self._enumerate_all is None:
            raise TypeError("this config space cannot be enumerated; use a sampling search")
        yield from self._enumerate_all()

    def sample(self, rng: random.Random, context: TuneContext) -> Config | None:
        return self._sample(rng)

    def neighbours(self, config: Mapping[str, Any], context: TuneContext) -> list[Config]:
        return self._neighbours(config)

    def invalid_reason(self, config: Mapping[str, Any], context: TuneContext | None = None) -> str | None:
        if not isinstance(config, Mapping):
            return f"a config is a mapping, got {type(config).__name__}"
        return self._invalid_reason(config)

    def features(self, config: Mapping[str, Any]) -> list[float]:
        return list(self._features(config))

    def effective_key(self, config: Mapping[str, Any], context: TuneContext) -> str:
        return canonical_json(config)

    def complete(self, config: Mapping[str, Any]) -> Config:
        return {**self.default, **config}


#: Extra knowledge about a declared space, keyed by (op, backend): constraints and effective
#: keys that the kernel file does not declare itself. Kernel authors may instead expose a
#: ``ConfigSpace`` directly as ``Backend.config_space``.
_EXTRAS: dict[tuple[str, str], dict[str, Any]] = {}


def register_space_extras(
    op: str,
    backend: str,
    *,
    constraints: Sequence[Constraint] = (),
    effective: Callable[[Mapping[str, Any], TuneContext], Any] | None = None,
    completion: Callable[[Mapping[str, Any], TuneContext], Config] | None = None,
) -> None:
    _EXTRAS[(op, backend)] = {
        "constraints": tuple(constraints),
        "effective": effective,
        "completion": completion,
    }


def _rowwise_plan(config: Mapping[str, Any], context: TuneContext) -> Any:
    """The launch the row-wise Triton kernels make for this config: equal plans, equal times."""
    from ..kernels.triton_rows import DEFAULT_CONFIG, RowPlan, next_power_of_2

    # Mirrors plan_rows without touching CUDA (the tuner's parent process stays CUDA-free).
    m, n = int(context.shape.get("M", 1)), int(context.shape.get("N", 1))
    cfg = {**DEFAULT_CONFIG, **config}
    block_n = next_power_of_2(n)
    warps = cfg.get("num_warps")
    if block_n <= 1024:
        rows = max(1, min(cfg["elements_per_program"] // block_n, next_power_of_2(max(m, 1))))
        return RowPlan("rows", block_n, rows, warps or 0)
    if block_n <= cfg["max_row_in_registers"]:
        return RowPlan("row", block_n, 1, warps or 0)
    return (
        RowPlan(
            "split-or-loop",
            min(cfg["chunk"], block_n),
            1,
            warps or 0,
            prefetch=int(cfg["prefetch"]),
            # Softmax finishing from held exponentials never rereads x.
            reread=bool(cfg["reread"]) and not cfg.get("keep_exp", False),
        ),
        int(cfg["programs_per_sm"]),
        bool(cfg.get("keep_exp", False)),
    )


def _split_warps(config: Mapping[str, Any], context: TuneContext) -> str | None:
    """A shared row's chunk needs 4-16 warps: fewer spill its registers, 32 leave one program per SM."""
    from ..kernels.triton_rows import DEFAULT_CONFIG, next_power_of_2

    cfg = {**DEFAULT_CONFIG, **config}
    block_n = next_power_of_2(int(context.shape.get("N", 1)))
    warps = cfg.get("num_warps")
    if block_n > cfg["max_row_in_registers"] and warps is not None and warps not in (4, 8, 16):
        return f"num_warps={warps}: a split row's chunk takes 4, 8 or 16 warps"
    return None


for _op in ("rmsnorm", "softmax"):
    register_space_extras(_op, "triton", constraints=(_split_warps,), effective=_rowwise_plan)


def _tilelang_row_plan(config: Mapping[str, Any], context: TuneContext) -> Any:
    """The row-wise TileLang kernel this config compiles (kind, tiles, threads): parameters of
    the other kinds (e.g. ``chunk`` for a row held in registers) cannot change the time."""
    from ..kernels.tilelang_common import row_kernel_key

    return row_kernel_key(int(context.shape.get("N", 1)), context.dtype_bytes, config)


def _tilelang_row_buildable(config: Mapping[str, Any], context: TuneContext) -> str | None:
    if "N" not in context.shape:
        return None
    try:
        _tilelang_row_plan(config, context)
    except ValueError as exc:
        return str(exc)
    return None


for _op in ("rmsnorm", "softmax"):
    register_space_extras(
        _op, "tilelang", constraints=(_tilelang_row_buildable,), effective=_tilelang_row_plan
    )


def _cute_row_plannable(config: Mapping[str, Any], context: TuneContext) -> str | None:
    """Whether the CuTe row kernel can tile rows of this N with ``config`` (the plan's own check,
    e.g. a cluster that leaves a row fewer than 32 threads per CTA), for 16-byte aligned rows."""
    if "N" not in context.shape:
        return None
    from ..kernels.cute_rows import CONFIG_SPACE, DEFAULT_CONFIG, plan_rows, vector_elements

    n, bits = int(context.shape["N"]), 8 * context.dtype_bytes
    # Op-specific keys (RMSNorm's weight_load and x_staging) do not change the tiling.
    plan_config = {key: value for key, value in config.items() if key in CONFIG_SPACE}
    try:
        vec = vector_elements(n, {**DEFAULT_CONFIG, **plan_config}["vector_bits"], ((bits, 0),))
        plan_rows(n, vec, bits, plan_config)
    except ValueError as exc:
        return str(exc)
    return None


for _op in ("rmsnorm", "softmax"):
    register_space_extras(_op, "cute", constraints=(_cute_row_plannable,))


def _matmul_triton_plan(config: Mapping[str, Any], context: TuneContext) -> Any:
    """The Triton matmul's launch for this config (e.g. swap_ab ignores the split-K knobs)."""
    from ..kernels.matmul.triton import plan_for_dims

    shape = context.shape
    m, n, k = int(shape.get("M", 1)), int(shape.get("N", 1)), int(shape.get("K", 1))
    item = context.dtype_bytes
    # TMA needs 16-byte row strides: A's and B's rows are K or N elements long, C's N.
    b_row = k if shape.get("BT", 0) else n
    aligned = all(length * item % 16 == 0 for length in (k, b_row, n))
    cc = context.compute_capability
    tma_possible = cc is None or tuple(cc) >= (9, 0)
    return plan_for_dims(m, n, k, item, context.sm_count or 132, tma_possible and aligned, config)


def _matmul_triton_as_given(config: Mapping[str, Any], context: TuneContext) -> Config:
    """A partial config as it is: the planner completes it from the shape class's config and
    shrinks only what it leaves out to fit the shared memory (fewer stages, narrower tiles).
    Completed here first, every parameter would look chosen, and the planner would refuse what
    the kernel runs: a baked winner without tiles (stages 4) was refused by the dispatcher at
    its own shape, 1024x6144x4096, and the bench ran the default 13 % slower (64c3713)."""
    return dict(config)


def _matmul_triton_launchable(config: Mapping[str, Any], context: TuneContext) -> str | None:
    """Configs the planner refuses (stages over the shared memory, TMA on unaligned rows)."""
    if not {"M", "N", "K"} <= set(context.shape):
        return None
    try:
        _matmul_triton_plan(config, context)
    except ValueError as exc:
        return str(exc)
    return None


register_space_extras(
    "matmul",
    "triton",
    constraints=(_matmul_triton_launchable,),
    effective=_matmul_triton_plan,
    completion=_matmul_triton_as_given,
)


def space_for(backend: Any) -> ConfigSpace | None:
    """The search space of a registry ``Backend``; None when it declares nothing to tune."""
    declared = getattr(backend, "config_space", None)
    if declared is None:
        return None
    if hasattr(declared, "neighbours") and hasattr(declared, "invalid_reason"):
        return declared
    adapter = getattr(declared, "to_tilearena_space", None)
    if callable(adapter):
        return adapter()
    if isinstance(declared, Mapping):
        extras = _EXTRAS.get((backend.op, backend.name), {})
        return DictConfigSpace(
            declared,
            constraints=extras.get("constraints", ()),
            default=getattr(backend, "default_config", None),
            effective=extras.get("effective"),
            completion=extras.get("completion"),
        )
    raise TypeError(
        f"{backend.op}/{backend.name}: config_space of type {type(declared).__name__} is not supported"
    )
