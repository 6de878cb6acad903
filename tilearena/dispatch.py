"""Which backend runs a call: an explicit argument, then ``use(...)``, then the best known.

"Best known" is the fastest backend the autotuner baked for this GPU and the nearest shape;
without a baked entry it is the op's fixed preference order, skipping backends that cannot run
here (package missing, wrong GPU, unsupported arguments).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from .kernels import registry

_state = threading.local()


def _overrides() -> list[Mapping[str, str] | str]:
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


@contextlib.contextmanager
def use(backend: str | Mapping[str, str]) -> Iterator[None]:
    """Run ops with ``backend`` inside the block: a name for every op, or {op: name}.

    >>> with tilearena.use("triton"):
    ...     y = tilearena.rmsnorm(x, w, 1e-6)
    """
    if isinstance(backend, str):
        for op in registry.ops():
            if backend not in registry.backend_names(op):
                raise ValueError(f"backend: {op} has no backend {backend!r}")
    elif isinstance(backend, Mapping):
        for op, name in backend.items():
            if name not in registry.backend_names(op):
                raise ValueError(f"backend: {op} has no backend {name!r}")
    else:
        raise TypeError(f"backend: expected a name or a mapping of op to name, got {type(backend).__name__}")
    _overrides().append(backend)
    try:
        yield
    finally:
        _overrides().pop()


def _context_choice(op: str) -> str | None:
    for entry in reversed(_overrides()):
        if isinstance(entry, str):
            return entry
        if op in entry:
            return entry[op]
    return None


def _device_of(args: Sequence[Any]) -> torch.device:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cpu")


def why_not(b: registry.Backend, args: Sequence[Any]) -> str | None:
    """Why ``b`` cannot run these arguments here, or None."""
    reason = b.unavailable_reason(str(_device_of(args)))
    if reason is None and b.supports is not None:
        reason = b.supports(*args)
    return reason


def _ask_store(
    args: Sequence[Any], question: Callable[[Any, torch.device, torch.dtype | None], Any]
) -> Any:
    """``question(store module, device, dtype)`` for these arguments, or None: not on a GPU, no
    store, or the lookup failed (a lookup is never fatal)."""
    try:
        from .autotune import store
    except Exception:
        return None
    device = _device_of(args)
    if device.type != "cuda":
        return None
    dtype = next((a.dtype for a in args if isinstance(a, torch.Tensor)), None)
    try:
        return question(store, device, dtype)
    except Exception:
        return None


def _baked(op: str, args: Sequence[Any], shape: Mapping[str, int], kind: str) -> Any:
    """The autotuner's baked choice for these arguments, if any (never fatal)."""
    if kind == "backend":
        return _ask_store(
            args, lambda store, device, dtype: store.best_backend(op, dtype, dict(shape), device=device)
        )
    return _ask_store(
        args, lambda store, device, dtype: store.lookup_config(op, kind, dtype, dict(shape), device=device)
    )


#: (op, backend, dtype, shape, config) -> whether a baked config is valid at that shape.
_BAKED_VALID: dict[tuple, bool] = {}


def config_problem_here(
    b: registry.Backend, dtype: torch.dtype | None, shape: Mapping[str, int], config: Mapping[str, Any]
) -> str | None:
    """Why ``config`` is outside ``b``'s declared space at this shape and dtype, or None: what a
    baked config (tuned at the nearest baked shape, maybe not this one) must pass before the
    dispatcher uses it, e.g. a CuTe cluster of 16 CTAs tuned on 4096 columns leaves too few
    threads per row at 1024.  A space that cannot judge is a problem too."""
    try:
        from .autotune.space import TuneContext, space_for

        space = space_for(b)
        if space is None:
            return None
        itemsize = torch.empty((), dtype=dtype).element_size() if dtype is not None else 2
        return space.invalid_reason(config, TuneContext(shape=dict(shape), dtype_bytes=itemsize))
    except Exception as exc:
        return f"config space unreadable ({type(exc).__name__}: {exc})"


def _valid_here(
    op: str, b: registry.Backend, args: Sequence[Any], shape: Mapping[str, int], config: Any
) -> bool:
    """``config_problem_here`` is None for these arguments.  Cached: the dispatcher runs it per call."""
    dtype = next((a.dtype for a in args if isinstance(a, torch.Tensor)), None)
    key = (op, b.name, str(dtype), tuple(sorted(shape.items())), repr(sorted(config.items())))
    if key not in _BAKED_VALID:
        _BAKED_VALID[key] = config_problem_here(b, dtype, shape, config) is None
    return _BAKED_VALID[key]


def baked_config(op: str, b: registry.Backend, args: Sequence[Any], shape: Mapping[str, int]) -> Any:
    """The config the autotuner baked for ``b`` on these arguments, or None (use the default):
    None too when the nearest baked config is not valid at this shape."""
    if b.config_space is None:
        return None
    config = _baked(op, args, shape, b.name) or None
    if config and not _valid_here(op, b, args, shape, config):
        return None
    return config


def baked_timing_method(
    op: str, backend: str, args: Sequence[Any], shape: Mapping[str, int], config: Mapping[str, Any] | None
) -> str | None:
    """How the autotuner timed the config it baked for exactly this shape's bucket
    ("cuda-graph" or "cuda-events"), or None: no entry for this bucket, one that does not say,
    or one whose config is not ``config``, the one the call runs (``baked_config``'s answer).
    The bench times a baked config the same way (a config borrowed from a neighbouring bucket
    was timed at another shape, so its method says nothing here).  An entry whose config is
    empty baked the kernel's default, which runs as ``config=None``: its method counts too
    (until this was said, TileLang's default-config entries were benched by the timer's pick;
    one at 1024x4096x4096, tuned by graph replay, was benched with events).  Never fatal."""

    def method(store: Any, device: torch.device, dtype: torch.dtype | None) -> str | None:
        entry = store.lookup_entry(op, backend, dtype, dict(shape), device=device)
        if entry is None:
            return None
        if entry.get("bucket", store.shape_bucket(entry["shape"])) != store.shape_bucket(shape):
            return None
        if dict(entry.get("config") or {}) != dict(config or {}):
            return None
        recorded = entry.get("timing_method")
        return recorded if recorded in store.PINNED_TIMING_METHODS else None

    return _ask_store(args, method)


def resolve(op: str, backend: str | None, args: Sequence[Any], shape: Mapping[str, int]) -> registry.Backend:
    name = backend or _context_choice(op)
    if name is not None:
        b = registry.backend(op, name)
        reason = why_not(b, args)
        if reason:
            raise ValueError(f"backend: {name!r} cannot run {op} on these inputs: {reason}")
        return b
    candidates: list[str] = []
    baked = _baked(op, args, shape, "backend")
    if baked:
        candidates.append(baked)
    candidates += [n for n in registry.spec(op).preference if n not in candidates]
    reasons = []
    for candidate in candidates:
        b = registry.backend(op, candidate)
        reason = why_not(b, args)
        if reason is None:
            return b
        reasons.append(f"{candidate}: {reason}")
    raise ValueError(f"backend: no backend of {op} can run these inputs ({'; '.join(reasons)})")


def call(op: str, args: Sequence[Any], backend: str | None = None) -> torch.Tensor:
    """Validate, choose a backend and its baked config, and run."""
    op_spec = registry.spec(op)
    shape = op_spec.validate(*args)
    b = resolve(op, backend, args, shape)
    if any(isinstance(a, torch.Tensor) and a.numel() == 0 for a in args[:1]):
        return op_spec.empty_output(*args)
    config = baked_config(op, b, args, shape)
    if config:
        try:
            return b.fn(*args, config=config)
        except ValueError:
            # A baked config the space could not judge (a kernel's own planning refused it at
            # this shape): the user asked for no config, so the kernel's default runs instead.
            dtype = next((a.dtype for a in args if isinstance(a, torch.Tensor)), None)
            _BAKED_VALID[
                (op, b.name, str(dtype), tuple(sorted(shape.items())), repr(sorted(config.items())))
            ] = False
    return b.fn(*args)
