"""What the graph-timing probes of ``.ci/queue`` share: a matmul case's baked config and inputs,
its calls for graph replay, and a loop over cases that writes its JSON as it goes.  The probes
import it by name (``python3 .ci/queue/probe_X.py`` puts this folder first on the path)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tilearena.kernels import registry

from tilearena import dispatch


@dataclass
class BakedCase:
    """One (backend, shape) of matmul in bf16, with the config the baked store gives it."""

    spec: registry.OpSpec
    backend: registry.Backend
    shape: dict[str, int]
    first: tuple
    config: Any

    @property
    def input_bytes(self) -> int:
        return sum(a.numel() * a.element_size() for a in self.first if isinstance(a, torch.Tensor))

    def calls(self, copies: Sequence[tuple]) -> list[Callable[[], Any]]:
        """One call a copy, each writing its own output, as the bench and the tuner time them."""
        kwargs = {"config": self.config} if self.config else {}
        calls = []
        for args in copies:
            out = self.spec.empty_output(*args)
            calls.append(lambda args=args, out=out: self.backend.fn(*args, out=out, **kwargs))
        return calls

    def fresh_copies(self, count: int, seed: int, device: str) -> list[tuple]:
        return [self.spec.make_inputs(self.shape, torch.bfloat16, device, seed + i) for i in range(count)]


def baked_case(backend: str, shape: dict[str, int], device: str) -> BakedCase | str:
    """The case, or why the backend cannot run it here."""
    spec = registry.spec("matmul")
    b = registry.backend("matmul", backend)
    first = spec.make_inputs(shape, torch.bfloat16, device, 0)
    reason = dispatch.why_not(b, first)
    if reason:
        return f"unavailable: {reason}"
    return BakedCase(spec, b, dict(shape), first, dispatch.baked_config("matmul", b, first, shape))


def tuner_request(case: BakedCase, device: str, timing: str) -> tuple[str | None, tuple, dict[str, Any]]:
    """How the tuner's ``tasks.time_candidates`` times ``case``'s baked config for one round:
    (the baked timing method, the positional arguments, the keyword arguments).  The case's own
    inputs are dropped: the tuner's and the bench's paths make their own."""
    method = dispatch.baked_timing_method("matmul", case.backend.name, case.first, case.shape, case.config)
    case.first = ()
    request = ("matmul", case.backend.name, case.shape, "bfloat16", device, [case.config or None])
    return method, request, {"rounds": 1, "timing": timing, "with_state": True, "methods": [method]}


def run_cases(
    cases: Sequence[tuple[str, dict[str, int]]],
    probe: Callable[[str, dict[str, int]], dict[str, Any]],
    out_path: str,
    header: dict[str, Any],
) -> None:
    """``probe`` each case; ``out_path`` (``header`` plus the cases so far) is rewritten after
    each, so a run cut short keeps what it measured, and one case's failure is recorded, not
    fatal."""
    results: list[dict[str, Any]] = []
    for backend, shape in cases:
        try:
            results.append(probe(backend, dict(shape)))
        except Exception as exc:
            results.append({"backend": backend, "shape": shape, "error": f"{type(exc).__name__}: {exc}"})
        with open(out_path, "w") as f:
            json.dump({**header, "cases": results}, f, indent=1)
