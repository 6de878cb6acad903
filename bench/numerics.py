"""Numerical agreement: against the float64 reference, and between backends on the same inputs.

Every check draws fresh random inputs (a new seed each time: the kernel must compute the same
function on any valid input) and fills the output with NaN before the run, so an element the
kernel never wrote fails the check instead of passing on stale memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..kernels import registry


@dataclass(frozen=True)
class Numerics:
    rel_err: float | None
    max_abs_err: float | None
    tol: float | None
    ok: bool
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(out: torch.Tensor, ref: torch.Tensor, tol: float) -> Numerics:
    """Relative L2 error and max abs error of ``out`` against the float64 ``ref``."""
    if out.shape != ref.shape:
        return Numerics(None, None, tol, False, f"shape {tuple(out.shape)} != expected {tuple(ref.shape)}")
    if out.numel() == 0:
        return Numerics(0.0, 0.0, tol, True)
    out_flat, ref_flat = out.detach().reshape(-1), ref.reshape(-1)
    bad = 0
    diff_sq = ref_sq = max_abs = 0.0
    # Chunks keep the float64 temporaries small: a 2 GiB bf16 output would need 8 GiB at once.
    for start in range(0, out_flat.numel(), _CHUNK):
        o = out_flat[start : start + _CHUNK].to(device=ref.device, dtype=torch.float64)
        r = ref_flat[start : start + _CHUNK]
        finite = torch.isfinite(o)
        if not bool(finite.all()):
            if not bad:
                first = start + int((~finite).nonzero()[0, 0])
            bad += int((~finite).sum())
            continue
        d = o - r
        diff_sq += float(d.square().sum())
        ref_sq += float(r.square().sum())
        max_abs = max(max_abs, float(d.abs().max()))
    if bad:
        return Numerics(
            None, None, tol, False, f"{bad} non-finite (NaN/Inf) elements, first at flat index {first}"
        )
    rel = math.sqrt(diff_sq) / max(math.sqrt(ref_sq), 1e-300)
    ok = rel <= tol
    return Numerics(
        rel, max_abs, tol, ok, None if ok else f"relative L2 error {rel:.3g} > tolerance {tol:.3g}"
    )


_CHUNK = 1 << 25


def poisoned_output(op_spec: registry.OpSpec, args: Sequence[Any]) -> torch.Tensor:
    out = op_spec.empty_output(*args)
    if out.is_floating_point():
        out.fill_(float("nan"))
    return out


def run_into(
    b: registry.Backend, args: Sequence[Any], out: torch.Tensor, config: Mapping | None
) -> torch.Tensor:
    """Run ``b`` into ``out``; a backend that allocates its own result is copied in (never timed)."""
    kwargs: dict[str, Any] = {"out": out}
    if config is not None:
        kwargs["config"] = config
    result = b.fn(*args, **kwargs)
    if result is not out and result is not None:
        out.copy_(result)
    return out


def reference_on(op_spec: registry.OpSpec, args: Sequence[Any]) -> torch.Tensor:
    """The float64 reference, computed on the inputs' device (the H100 has float64 units)."""
    return op_spec.reference(*args)


def check_backend(
    op: str,
    backend: str,
    shape: Mapping[str, int],
    dtype: torch.dtype,
    device: str,
    seed: int,
    config: Mapping[str, Any] | None = None,
) -> Numerics:
    """Fresh inputs from ``seed``, a NaN-poisoned output, one run, compared with float64."""
    op_spec = registry.spec(op)
    b = registry.backend(op, backend)
    args = op_spec.make_inputs(shape, dtype, device, seed)
    try:
        out = run_into(b, args, poisoned_output(op_spec, args), config)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
    except Exception as exc:
        return Numerics(None, None, op_spec.tolerance.get(dtype), False, f"{type(exc).__name__}: {exc}")
    return compare(out, reference_on(op_spec, args), op_spec.tolerance[dtype])


def agreement_matrix(outputs: Mapping[str, torch.Tensor | str]) -> tuple[list[str], list[list[float | None]]]:
    """Pairwise relative L2 difference ||a - b|| / ||b|| between backends' outputs."""
    names = list(outputs)
    matrix: list[list[float | None]] = []
    for a in names:
        row: list[float | None] = []
        for b in names:
            oa, ob = outputs[a], outputs[b]
            if isinstance(oa, str) or isinstance(ob, str):
                row.append(None)
                continue
            value = _relative_difference(oa, ob)
            row.append(value if math.isfinite(value) else None)
        matrix.append(row)
    return names, matrix


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    a_flat, b_flat = a.reshape(-1), b.reshape(-1)
    diff_sq = ref_sq = 0.0
    for start in range(0, a_flat.numel(), _CHUNK):
        da = a_flat[start : start + _CHUNK].double()
        db = b_flat[start : start + _CHUNK].double()
        diff_sq += float((da - db).square().sum())
        ref_sq += float(db.square().sum())
    return math.sqrt(diff_sq) / max(math.sqrt(ref_sq), 1e-300)
