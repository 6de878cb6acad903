"""The one op interface: an ``OpSpec`` per op and a ``Backend`` per (op, implementation).

An op package (``kernels/<op>/``) holds ``spec.py`` (what the op computes, its inputs, its
float64 reference and its cost model) and one file per backend.  Backend files are imported
lazily, on first use, so a DSL that is not installed costs nothing and makes only its own
backend unavailable, with the reason recorded.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

Shape = Mapping[str, int]

#: Our own kernel DSLs; every other backend is a baseline or a peer library.
OUR_DSLS = ("triton", "helion", "cute", "tilelang")


@dataclass(frozen=True)
class Cost:
    """The fewest bytes an op must move through device memory, and its floating-point work."""

    bytes: int
    flops: int


@dataclass(frozen=True)
class OpSpec:
    """What an op computes, independent of any implementation."""

    name: str
    #: torch.library schema without the name, e.g. "(Tensor x, float eps, str? backend=None) -> Tensor".
    schema: str
    #: Names of the tensor/scalar arguments, in call order (the ``backend`` argument excluded).
    arg_names: tuple[str, ...]
    #: Named shape sets: "quick" (tiny, CPU), "llama" (real-model shapes), "sweep" (performance).
    shapes: Mapping[str, Sequence[Shape]]
    dtypes: tuple[torch.dtype, ...]
    #: make_inputs(shape, dtype, device, seed) -> tuple of call arguments (seeded random, never zeros).
    make_inputs: Callable[[Shape, torch.dtype, str, int], tuple[Any, ...]]
    #: reference(*args) -> float64 result computed from the same arguments.
    reference: Callable[..., torch.Tensor]
    #: cost(shape, dtype) -> the speed-of-light cost.
    cost: Callable[[Shape, torch.dtype], Cost]
    #: validate(*args) raises TypeError/ValueError naming the bad argument; returns the shape dict.
    validate: Callable[..., dict[str, int]]
    #: empty_output(*args) -> an uninitialised output tensor of the right shape and dtype.
    empty_output: Callable[..., torch.Tensor]
    #: Relative L2 error allowed against the float64 reference, per input dtype.
    tolerance: Mapping[torch.dtype, float]
    #: "memory" or "compute": which ceiling the speed of light is measured against.
    bound: str = "memory"
    #: Backends in the order they are preferred when nothing better is known for this GPU.
    preference: tuple[str, ...] = ()
    #: backend name -> (module inside the op package, DSL).
    backend_modules: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    #: Shape dimensions that are switches, 0 or 1 (matmul's BT: B stored transposed), not sizes.
    flags: tuple[str, ...] = ()

    @property
    def dims(self) -> tuple[str, ...]:
        """The dimensions every shape of this op names, in the order its shape sets give them."""
        return tuple(next(iter(self.shapes.values()))[0])

    def shape_problem(self, shape: Mapping[str, Any]) -> str | None:
        """Why ``shape`` is not a shape of this op (its dimensions, or a value out of range), or
        None: every size a positive int, every flag 0 or 1."""
        if set(shape) != set(self.dims):
            return f"{self.name} takes the dimensions {','.join(self.dims)}, got {','.join(shape) or 'none'}"
        for dim, value in shape.items():
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{dim} must be an int, got {value!r}"
            if dim in self.flags and value not in (0, 1):
                return f"{dim} is a switch, 0 or 1, got {value}"
            if dim not in self.flags and value < 1:
                return f"{dim} is a size, at least 1, got {value}"
        return None


@dataclass
class Backend:
    """One implementation of an op.

    ``fn(*args, out=None)`` computes the op; when ``writes_out`` is true it writes into a
    caller-given ``out`` (so a NaN-poisoned output proves every element was written),
    otherwise the harness copies its result into ``out``.
    """

    op: str
    name: str
    dsl: str
    fn: Callable[..., torch.Tensor]
    #: Python packages that must import for this backend to run.
    requires: tuple[str, ...] = ()
    #: Which devices it runs on: "cuda", and "cpu" where it can run without a GPU.
    devices: tuple[str, ...] = ("cuda",)
    #: Lowest CUDA compute capability, e.g. (9, 0) for Hopper-only kernels.
    min_cc: tuple[int, int] | None = None
    writes_out: bool = True
    #: supports(*args) -> None if this backend handles these arguments, else the reason it does not.
    supports: Callable[..., str | None] | None = None
    #: Declared tunable parameters (used by the autotuner), and the values used by default.
    config_space: Any = None
    default_config: Mapping[str, Any] | None = None
    #: Further configs a search should measure first, besides the default and the nearest baked
    #: one: e.g. each shape class's tiles, so a search far from its default still starts near
    #: every kind of good config the kernel has.
    seed_configs: tuple[Mapping[str, Any], ...] = ()

    @property
    def ours(self) -> bool:
        return self.dsl in OUR_DSLS

    def unavailable_reason(self, device: str = "cuda") -> str | None:
        """Why this backend cannot run on ``device`` now, or None if it can."""
        # The device first: on a CPU, installing a GPU-only package would not help.
        kind = torch.device(device).type
        if kind == "cpu" and "cpu" not in self.devices:
            if self.dsl != "triton":
                return "needs a CUDA GPU"
            if os.environ.get("TRITON_INTERPRET") != "1":
                return "needs a CUDA GPU (or TRITON_INTERPRET=1 for the Triton interpreter)"
        for package in self.requires:
            try:
                importlib.import_module(package)
            except Exception as exc:  # an import can fail with more than ImportError
                return f"{package} is not importable ({type(exc).__name__}: {exc})"
        if kind == "cuda":
            if not torch.cuda.is_available():
                return "no CUDA GPU visible"
            if self.min_cc is not None and torch.cuda.get_device_capability() < self.min_cc:
                cc = torch.cuda.get_device_capability()
                return f"needs compute capability >= {self.min_cc}, this GPU is {cc}"
        return None


class UnavailableBackend(Backend):
    """Placeholder for a backend whose module failed to import; it only carries the reason."""

    def __init__(self, op: str, name: str, dsl: str, reason: str) -> None:
        super().__init__(op=op, name=name, dsl=dsl, fn=self._refuse)
        self.reason = reason

    def _refuse(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError(f"backend {self.name!r} of op {self.op!r} is unavailable: {self.reason}")

    def unavailable_reason(self, device: str = "cuda") -> str | None:
        return self.reason


_INSTALL_HINTS = {
    "helion": "pip install 'tilearena[helion]'",
    "tilelang": "pip install 'tilearena[tilelang]'",
    "cutlass": "pip install 'tilearena[cute]'",
    "quack": "pip install 'tilearena[peers]'",
    "liger_kernel": "pip install 'tilearena[peers]'",
}

_SPECS: dict[str, OpSpec] = {}
_BACKENDS: dict[tuple[str, str], Backend] = {}
_KERNELS_DIR = os.path.dirname(os.path.abspath(__file__))


def _op_packages() -> list[str]:
    """Every folder of kernels/ with a spec.py is an op."""
    return sorted(
        entry
        for entry in os.listdir(_KERNELS_DIR)
        if os.path.isfile(os.path.join(_KERNELS_DIR, entry, "spec.py"))
    )


#: Modules imported once the ops are known, e.g. ``TILEARENA_PLUGINS=mykernels.rmsnorm_cuda``:
#: each may call :func:`register_backend`. Processes started by tilearena (the autotuner's
#: workers) inherit the variable, so a plugin backend can be tuned like a built-in one.
PLUGINS_VARIABLE = "TILEARENA_PLUGINS"


def _load_specs() -> None:
    if _SPECS:
        return
    for package in _op_packages():
        module = importlib.import_module(f"{__package__}.{package}.spec")
        _SPECS[module.SPEC.name] = module.SPEC
    _load_plugins()


def _load_plugins() -> None:
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_VARIABLE, "").split(","))):
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken plugin must not take the built-in backends with it
            message = f"{PLUGINS_VARIABLE}: could not import {name!r}: {type(exc).__name__}: {exc}"
            warnings.warn(message, stacklevel=2)


def ops() -> list[str]:
    """Names of every op tilearena implements."""
    _load_specs()
    return list(_SPECS)


def spec(op: str) -> OpSpec:
    _load_specs()
    if op not in _SPECS:
        raise ValueError(f"op: unknown op {op!r}; expected one of {sorted(_SPECS)}")
    return _SPECS[op]


def backend_names(op: str) -> list[str]:
    """Every backend declared for ``op``, installed or not (and any registered at run time)."""
    declared = list(spec(op).backend_modules)
    return declared + [name for (o, name) in _BACKENDS if o == op and name not in declared]


def backend(op: str, name: str) -> Backend:
    """The backend ``name`` of ``op``; importing its module on first use."""
    op_spec = spec(op)
    if (op, name) in _BACKENDS:
        return _BACKENDS[(op, name)]
    if name not in op_spec.backend_modules:
        raise ValueError(
            f"backend: {op} has no backend {name!r}; expected one of {sorted(op_spec.backend_modules)}"
        )
    key = (op, name)
    if key not in _BACKENDS:
        module_name, dsl = op_spec.backend_modules[name]
        try:
            module = importlib.import_module(f"{__package__}.{op}.{module_name}")
            found = {b.name: b for b in module.BACKENDS}
            for bname, b in found.items():
                _BACKENDS.setdefault((op, bname), b)
            if name not in found:
                raise ImportError(f"module {module_name} defines no backend {name!r}")
        except Exception as exc:
            missing = getattr(exc, "name", None) or ""
            hint = _INSTALL_HINTS.get(missing.split(".")[0], "")
            reason = f"{type(exc).__name__}: {exc}" + (f" ({hint})" if hint else "")
            _BACKENDS[key] = UnavailableBackend(op, name, dsl, reason)
    return _BACKENDS[key]


def backends(op: str) -> list[Backend]:
    return [backend(op, name) for name in backend_names(op)]


def register_backend(b: Backend) -> None:
    """Add or replace a backend (for plugins and tests)."""
    spec(b.op)
    _BACKENDS[(b.op, b.name)] = b
