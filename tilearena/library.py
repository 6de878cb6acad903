"""Every op as ``torch.ops.tilearena.<op>``: usable in models, torch.compile and CUDA graphs.

The op is opaque to torch.compile (a custom op with a fake implementation for shape
propagation), so a compiled model calls our kernel instead of tracing into a DSL.
"""

from __future__ import annotations

import torch

from . import dispatch
from .kernels import registry

_LIBRARY = torch.library.Library("tilearena", "DEF")
_REGISTERED: set[str] = set()


def _split(op_spec: registry.OpSpec, args: tuple, kwargs: dict) -> tuple[list, str | None]:
    """Separate the op's own arguments from ``backend`` (the dispatcher drops trailing defaults)."""
    n = len(op_spec.arg_names)
    values = list(args[:n])
    for name in op_spec.arg_names[len(values) :]:
        if name in kwargs:
            values.append(kwargs[name])
    backend = args[n] if len(args) > n else kwargs.get("backend")
    return values, backend


def _make_impl(op: str):
    op_spec = registry.spec(op)

    def impl(*args, **kwargs):
        op_args, backend = _split(op_spec, args, kwargs)
        return dispatch.call(op, op_args, backend)

    return impl


def _make_fake(op: str):
    op_spec = registry.spec(op)

    def fake(*args, **kwargs):
        op_args, _backend = _split(op_spec, args, kwargs)
        op_spec.validate(*op_args)
        return op_spec.empty_output(*op_args)

    return fake


def register_all() -> None:
    """Define ``tilearena::<op>`` for every op (idempotent)."""
    for op in registry.ops():
        if op in _REGISTERED:
            continue
        op_spec = registry.spec(op)
        _LIBRARY.define(op + op_spec.schema)
        _LIBRARY.impl(op, _make_impl(op), "CompositeExplicitAutograd")
        torch.library.register_fake(f"tilearena::{op}", lib=_LIBRARY)(_make_fake(op))
        _REGISTERED.add(op)
