"""What the isolated worker runs for a candidate: compile, check, time (these import torch).

Every function here is module-level so it pickles by name into a ``spawn`` worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

_INPUTS: dict[tuple, Any] = {}

#: DSLs that keep compiled kernels on disk, so a compile in one process spares the next one
#: (CuTe DSL's cache is the process's own: its kernels compile again in the benchmark worker).
DISK_CACHED_DSLS = ("triton", "helion", "tilelang")


def dtype_from_name(name: str) -> Any:
    import torch

    from .store import normalise_dtype

    dtype = getattr(torch, normalise_dtype(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype: unknown dtype {name!r}")
    return dtype


def default_check(
    op: str,
    backend: str,
    shape: Mapping[str, int],
    dtype: Any,
    device: str,
    seed: int,
    config: Mapping[str, Any] | None = None,
) -> Any:
    """The lead's ``bench.numerics.check_backend`` (fresh inputs, NaN-poisoned output, float64)."""
    from ..bench.numerics import check_backend

    return check_backend(op, backend, shape, dtype, device, seed, config=config)


def check_candidate(
    op: str,
    backend: str,
    shape: Mapping[str, int],
    dtype_name: str,
    device: str,
    config: Mapping[str, Any] | None,
    seed: int = 1234,
    check: Callable[..., Any] = default_check,
) -> dict[str, Any]:
    """Accuracy against float64 before a candidate may be timed (and so before it may win)."""
    # An empty config means "the kernel as it is": backends with nothing to tune take no config.
    config = dict(config) if config else None
    result = check(op, backend, dict(shape), dtype_from_name(dtype_name), device, seed, config=config)
    error = result.error or ""
    # A numerical verdict (wrong values, NaNs, wrong shape) is "wrong"; anything else means the
    # kernel raised, and the worker decides whether that was a fatal CUDA error.
    numeric_verdict = result.rel_err is not None or error.startswith("shape ") or "non-finite" in error
    if not result.ok and not numeric_verdict:
        # The kernel raised: let the worker classify it (fatal CUDA error or plain error).
        raise RuntimeError(result.error)
    return {"ok": bool(result.ok), "rel_err": result.rel_err, "error": result.error}


def _inputs(op: str, shape: Mapping[str, int], dtype_name: str, device: str) -> tuple[Any, list[tuple]]:
    """Inputs for timing, cached across requests, plus rotated copies (together larger than
    the L2) for CUDA-graph timing, so replays do not read cached inputs."""
    import torch

    from ..bench.timing import l2_cache_bytes, rotated_copy_count
    from ..kernels import registry

    key = (op, tuple(sorted(shape.items())), dtype_name, device)
    if key not in _INPUTS:
        _INPUTS.clear()  # one shape at a time: keep device memory for the kernel
        spec = registry.spec(op)
        dtype = dtype_from_name(dtype_name)
        first = spec.make_inputs(dict(shape), dtype, device, 0)
        copies = [first]
        if torch.device(device).type == "cuda":
            size = sum(a.numel() * a.element_size() for a in first if isinstance(a, torch.Tensor))
            count = rotated_copy_count(size, l2_cache_bytes(device))
            copies += [spec.make_inputs(dict(shape), dtype, device, i) for i in range(1, count)]
        outs = [spec.empty_output(*args) for args in copies]
        _INPUTS[key] = (spec, list(zip(copies, outs)))
    return _INPUTS[key]


def time_candidates(
    op: str,
    backend: str,
    shape: Mapping[str, int],
    dtype_name: str,
    device: str,
    configs: Sequence[Mapping[str, Any] | None],
    rounds: int = 2,
    repeats: int = 20,
    timing: str = "default",
    with_state: bool = False,
    methods: Sequence[str | None] | None = None,
) -> list[list[float]] | dict[str, Any]:
    """Interleaved timing: each round times every config once (rotated start), so drift in
    clocks or temperature spreads over all of them. Returns each config's per-round medians.
    ``timing`` is one of ``store.TIMING_MODES`` (the bench's ``--timing``).  ``with_state``:
    ``{"ms": those medians, "gpu_state": [each config's SM clock, power ... over its rounds
    (bench.gpu_state.combine), or None], "methods": [each config's timing method per round]}``.
    The method, CUDA-graph replay or event-timed, is each config's entry of ``methods`` where
    that names one; otherwise the call's first measurement picks it from an estimate of the
    kernel's time and every later one keeps it, so configs are compared by one method and a
    kernel near ``bench.timing.GRAPH_BELOW_US`` is not timed both ways (one final at 6b081a4
    was: graph replay and events read 1024x4096x4096 GEMMs up to 6 % apart)."""
    from ..bench.gpu_state import combine
    from ..bench.timing import measure
    from ..kernels import registry
    from .store import PINNED_TIMING_METHODS, measure_kwargs

    timing_kwargs = measure_kwargs(timing)

    b = registry.backend(op, backend)
    _, pairs = _inputs(op, shape, dtype_name, device)
    args, out = pairs[0]

    def runner(config: Mapping[str, Any] | None, call_args: tuple, call_out: Any) -> Callable[[], Any]:
        if config:
            return lambda: b.fn(*call_args, out=call_out, config=config)
        return lambda: b.fn(*call_args, out=call_out)

    if methods is not None and len(methods) != len(configs):
        raise ValueError(f"methods: expected one per config ({len(configs)}), got {len(methods)}")
    pinned: list[str | None] = list(methods) if methods is not None else [None] * len(configs)
    results: list[list[float]] = [[] for _ in configs]
    states: list[list[dict[str, Any] | None]] = [[] for _ in configs]
    used_methods: list[list[str]] = [[] for _ in configs]
    for round_index in range(rounds):
        for offset in range(len(configs)):
            i = (offset + round_index) % len(configs)
            config = configs[i]
            graph_fns = [runner(config, a, o) for a, o in pairs] if len(pairs) > 1 else None
            method = pinned[i] or "auto"
            if method == "cuda-graph" and not graph_fns:
                method = "auto"  # nothing to replay (one input set, the CPU): the timer picks
            measured = measure(
                runner(config, args, out),
                device,
                graph_fns=graph_fns,
                repeats=repeats,
                method=method,
                **timing_kwargs,
            )
            if measured.method in PINNED_TIMING_METHODS:
                pinned = [m or measured.method for m in pinned]
            results[i].append(measured.median_ms)
            states[i].append(measured.gpu_state)
            used_methods[i].append(measured.method)
    if with_state:
        return {"ms": results, "gpu_state": [combine(s) for s in states], "methods": used_methods}
    return results


def compile_candidate(
    op: str,
    backend: str,
    shape: Mapping[str, int],
    dtype_name: str,
    device: str,
    config: Mapping[str, Any] | None,
) -> bool:
    """Run the kernel once so its compiled form lands in the DSL's on-disk cache (Triton,
    Helion, TileLang all keep one): the benchmark worker then loads instead of compiling."""
    import torch

    from ..kernels import registry

    spec = registry.spec(op)
    b = registry.backend(op, backend)
    args = spec.make_inputs(dict(shape), dtype_from_name(dtype_name), device, 0)
    if config:
        b.fn(*args, out=spec.empty_output(*args), config=config)
    else:
        b.fn(*args, out=spec.empty_output(*args))
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        # Hand the inputs' memory back to the device: a compile worker idles between batches, and
        # several of them each caching GiB-sized inputs ran the H100 out of memory (4096x262144).
        del args
        torch.cuda.empty_cache()
    return True


def argument_bytes(op: str, shape: Mapping[str, int], dtype_name: str) -> int:
    """Bytes of one call's inputs and output at this shape: the op's speed-of-light traffic,
    which reads every input and writes the output once (no allocation: the parent may ask)."""
    from ..kernels import registry

    return int(registry.spec(op).cost(dict(shape), dtype_from_name(dtype_name)).bytes)


def device_context(device: str, shape: Mapping[str, int], dtype_name: str) -> dict[str, Any]:
    """Facts the config-space constraints need (queried in the worker: the parent stays CUDA-free)."""
    import torch

    context: dict[str, Any] = {"shape": dict(shape), "dtype_bytes": dtype_from_name(dtype_name).itemsize}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        context.update(
            shared_memory_bytes=getattr(props, "shared_memory_per_block_optin", None),
            sm_count=props.multi_processor_count,
            compute_capability=(props.major, props.minor),
            gpu_name=props.name,
            device_memory_bytes=props.total_memory,
            # Which card: lent machines differ from run to run, and so do their kernels' times.
            gpu_uuid=str(getattr(props, "uuid", "") or "") or None,
        )
    return context


def helion_autotune_task(
    op: str, backend: str, shape: Mapping[str, int], dtype_name: str, device: str, effort: str
) -> dict[str, Any]:
    """Helion's own autotuner on this shape (run in the worker: it compiles and times on the GPU)."""
    from ..kernels import registry
    from ..kernels.helion_configs import helion_autotune

    args = registry.spec(op).make_inputs(dict(shape), dtype_from_name(dtype_name), device, 0)
    return dict(helion_autotune(op, *args, effort=effort))
