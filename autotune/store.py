"""The baked store: the autotuner's winners, one plain-JSON file per GPU in the package.

``autotune/baked/<gpu-slug>.json`` (e.g. ``h100-sxm.json``) records the GPU, its compute
capability, driver/CUDA and DSL versions, and entries keyed by op, backend, dtype and shape
bucket. The dispatcher calls :func:`lookup_config` and :func:`best_backend` on every call with
no explicit choice, so after the first call both are a dict lookup and a few float ops.

A file is data, never code: it is parsed with ``json`` only, validated field by field, and an
entry that is malformed, unknown or outside its kernel's config space is dropped with a warning.
Nothing a file holds can make a lookup raise.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import math
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

SCHEMA = "tilearena.autotune.baked/1"
BAKED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "baked")
#: Larger files are refused unread (a hostile file must not exhaust memory).
MAX_FILE_BYTES = 16 << 20
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_TOP_KEYS = {"schema", "gpu", "entries"}
_GPU_KEYS = {"name", "slug", "compute_capability", "driver", "cuda", "torch", "dsl_versions"}
_ENTRY_KEYS = {
    "op",
    "backend",
    "dtype",
    "shape",
    "bucket",
    "config",
    "time_ms",
    "noise",
    "runner_ups",
    "evaluated",
    "failed",
    "tuned_at",
    "source",
    "timing",
    "retimed_at",
    "sm_clock_mhz",
    "timing_method",
    "gpu_uuid",
    "graph_window_ms",
}

#: How a final timed its winner (``bench.timing.TIMING_METHODS`` less "auto"), as an entry's
#: ``timing_method`` records it; the bench times that baked config the same way.
PINNED_TIMING_METHODS = ("cuda-graph", "cuda-events")


class _EveryModeSets(TypedDict):
    steady: bool
    flush: str  # one of bench.timing.FLUSH_MODES
    hot_start: bool


class MeasureKwargs(_EveryModeSets, total=False):
    """``bench.timing.measure``'s keyword arguments that a timing mode sets."""

    span_ms: float  # sample event-timed kernels this long ...
    max_samples: int  # ... in at most this many samples
    graph_span_ms: float  # hot start: a graph-timed kernel's samples span this long together


#: ``bench.timing.measure``'s methods, as the bench's and the tuner's ``--timing`` name them and
#: an entry records how its final was timed (absent means "default"). Defined here, the one
#: place: the store is read without torch. "clean" is "steady" with the L2 emptied by a read,
#: not a write, so the timed kernel finds no dirty lines to write back (measured on the H100 at
#: d526df4: ~9.5 us on event-timed GEMMs near 50 us, reports/h100/NOTES.md, Session 9). "hot"
#: is "clean" with the settling runs queued right before the samples, so the GPU does not idle
#: (and its clocks rise) between settling and sampling (``bench.timing.measure``'s hot_start).
#: "sustained" is "hot" sampled for 1 s (at most 5000 samples: a kernel under 0.2 ms keeps a
#: shorter window): in every 1 s window of Session 18 a compute-bound GEMM ran 9-20 % slower for
#: a tenth of it, 0.7-0.9 s into the load, which 100 ms windows never reach; and 1 s windows spread
#: least from round to round (median 0.4 %, max 1.6 %, against 0.7 % / 3.1 % hot; NOTES.md).
#: Since session 28 its graph-timed kernels are sampled for 1 s too (until then 100 ms, as in
#: "hot"): at e417ff3 five graph-timed GEMMs' medians spread 0.4-3.5 % between 1 s windows and
#: 0.6-16 % between 100 ms ones, the most at the power cap, where 100 ms windows caught the clock
#: anywhere in 1245-1590 MHz (NOTES.md, Session 28).
_MEASURE_KWARGS: dict[str, MeasureKwargs] = {
    "default": {"steady": False, "flush": "write", "hot_start": False},
    "steady": {"steady": True, "flush": "write", "hot_start": False},
    "clean": {"steady": True, "flush": "read", "hot_start": False},
    "hot": {"steady": True, "flush": "read", "hot_start": True, "graph_span_ms": 100.0},
    "sustained": {
        "steady": True, "flush": "read", "hot_start": True, "span_ms": 1000.0, "max_samples": 5000,
        "graph_span_ms": 1000.0,
    },
}
TIMING_MODES = tuple(_MEASURE_KWARGS)

_DTYPE_ALIASES = {
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float": "float32",
}


#: The window a graph-timed entry or bench row of a hot-start mode was sampled over before they
#: recorded it (``graph_window_ms``, from session 28; ``bench.timing.GRAPH_SPAN_MS``).
LEGACY_GRAPH_WINDOW_MS = 100.0


def graph_window_ms(timing: str, record: Mapping[str, Any] | None = None) -> float | None:
    """How long a graph-timed kernel's samples span together under the timing mode ``timing``,
    or None where they have no window (a mode without hot start: bare replays).  With
    ``record`` (a baked entry or a bench row): that record's window, None where it was not timed
    by CUDA graph, and ``LEGACY_GRAPH_WINDOW_MS`` for one timed before records said."""
    kwargs = measure_kwargs(timing if timing in TIMING_MODES else "default")
    if not kwargs["hot_start"]:
        return None
    if record is None:
        return kwargs.get("graph_span_ms")
    if record.get("timing_method") != "cuda-graph":
        return None
    window = record.get("graph_window_ms")
    return float(window) if _finite_number(window, 1e-3, 60_000.0) else LEGACY_GRAPH_WINDOW_MS


def measure_kwargs(timing: str) -> MeasureKwargs:
    """``bench.timing.measure``'s keyword arguments for the timing mode ``timing``; every caller
    maps a mode through here. An unknown mode is a ValueError naming the argument."""
    if timing not in TIMING_MODES:
        raise ValueError(f"timing: expected one of {TIMING_MODES}, got {timing!r}")
    # A copy: a caller that edits its keywords must not change the mode.
    return MeasureKwargs(**_MEASURE_KWARGS[timing])


class BakedStoreWarning(UserWarning):
    """A baked file or entry was ignored."""


# --- GPU identity --------------------------------------------------------------------------


def gpu_slug(name: str) -> str:
    """ "NVIDIA H100 80GB HBM3" -> "h100-sxm", "NVIDIA H100 PCIe" -> "h100-pcie", "NVIDIA H200" -> "h200"."""
    upper = name.upper()
    match = re.search(r"\b(GH|GB|[A-Z])(\d{2,3})\b", upper.replace("-", " "))
    if match:
        model = (match.group(1) + match.group(2)).lower()
        if "PCIE" in upper:
            return f"{model}-pcie"
        if "NVL" in upper:
            return f"{model}-nvl"
        if model in ("h100", "a100") and ("SXM" in upper or "HBM" in upper):
            return f"{model}-sxm"
        if model in ("h100", "a100"):
            return f"{model}-sxm" if "SXM" in upper else model
        return model
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower().replace("nvidia", "")).strip("-")
    return slug[:48] or "unknown"


def normalise_dtype(dtype: Any) -> str:
    text = str(dtype).replace("torch.", "")
    return _DTYPE_ALIASES.get(text, text)


def shape_bucket(shape: Mapping[str, int]) -> str:
    """Each dim rounded to the nearest power of two (a 0 kept as 0): shapes in one bucket share
    a config."""
    parts = []
    for dim in sorted(shape):
        value = int(shape[dim])
        # A 0 is a flag (matmul's BT: B not transposed), its own bucket: rounded up to 1 it
        # would share a config with the other layout, which launches another kernel.
        parts.append(f"{dim}={1 << round(math.log2(value)) if value > 0 else 0}")
    return ",".join(parts)


#: Farthest a baked shape may be from a call's (log2 distance) for its config to be used: a
#: factor 4 in one dimension, or 2.8 in two.  Farther, the kernel's own per-shape default is
#: the better guess: at d2c248c Helion softmax's configs tuned at 32768x4096-8192 ran
#: 262144x256 at 0.57x of its shipped config's speed and 16384x32768 at 0.8x.
MAX_BAKED_DISTANCE = 2.0


def shape_distance(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Euclidean distance of log2 dims; shapes with different dims are infinitely far."""
    if set(a) != set(b):
        return math.inf
    return math.sqrt(sum((_log_dim(a[d]) - _log_dim(b[d])) ** 2 for d in a))


def _log_dim(value: int) -> float:
    # A 0 is a flag (matmul's BT), one step below 1, so layouts 0 and 1 are not the same bucket.
    return math.log2(value) if value > 0 else -1.0


@dataclass(frozen=True)
class JobId:
    """What a tuning job, a baked entry and a bench row are about."""

    op: str
    backend: str
    dtype: str
    shape: dict[str, int]


@dataclass(frozen=True)
class GpuIdentity:
    name: str
    slug: str
    compute_capability: tuple[int, int]


_GPU_CACHE: dict[Any, GpuIdentity | None] = {}


def current_gpu(device: Any = None) -> GpuIdentity | None:
    """The GPU behind ``device`` (None: the current CUDA device); None on a CPU."""
    key = str(device)
    if key in _GPU_CACHE:
        return _GPU_CACHE[key]
    identity = None
    try:
        import torch

        dev = torch.device(device) if device is not None else None
        if (dev is None or dev.type == "cuda") and torch.cuda.is_available():
            index = dev.index if dev is not None and dev.index is not None else torch.cuda.current_device()
            props = torch.cuda.get_device_properties(index)
            identity = GpuIdentity(props.name, gpu_slug(props.name), (props.major, props.minor))
    except Exception:
        identity = None
    _GPU_CACHE[key] = identity
    return identity


# --- validation ----------------------------------------------------------------------------


def _warn(path: str, message: str) -> None:
    warnings.warn(
        f"baked store {os.path.basename(path)}: {message}; ignored", BakedStoreWarning, stacklevel=3
    )


def _finite_number(value: Any, low: float, high: float) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def _valid_shape(shape: Any) -> bool:
    return (
        isinstance(shape, dict)
        and 0 < len(shape) <= 8
        and all(
            isinstance(k, str)
            and _NAME.match(k)
            and isinstance(v, int)
            and not isinstance(v, bool)
            # 0 is a real value: matmul's BT flag (B stored [K, N]) is 0 or 1.
            and 0 <= v < 1 << 40
            for k, v in shape.items()
        )
    )


def _small_scalar(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return abs(value) < 1 << 40
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= 64


def _valid_config_json(config: Any) -> bool:
    """A config is a dict of names to small scalars, or to short lists of them, or to short
    lists of such lists: what every kernel's space holds.  Helion's keys are lists (one block
    size, reduction loop, indexing mode or eviction policy per loop or memory access; None for
    "whole row") and ``loop_orders`` is a list of permutations."""
    if not isinstance(config, dict) or len(config) > 64:
        return False

    def allowed(value: Any, depth: int) -> bool:
        if _small_scalar(value):
            return True
        return (
            isinstance(value, list)
            and depth < 2
            and len(value) <= 64
            and all(allowed(v, depth + 1) for v in value)
        )

    return all(
        isinstance(key, str) and _NAME.match(key) and allowed(value, 0) for key, value in config.items()
    )


def validate_entry(entry: Any) -> str | None:
    """Why ``entry`` is not a well-formed baked entry, or None."""
    if not isinstance(entry, dict):
        return "an entry is not an object"
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        return f"unknown keys {sorted(unknown)[:5]}"
    for key in ("op", "backend", "dtype"):
        if not isinstance(entry.get(key), str) or not _NAME.match(entry[key]):
            return f"{key} is not a plain name"
    if not _valid_shape(entry.get("shape")):
        return "shape is not a mapping of dims to non-negative ints"
    if not _valid_config_json(entry.get("config")):
        return "config is not a mapping of names to small scalars or short lists of them"
    if not _finite_number(entry.get("time_ms"), 0.0, 1e7) or entry["time_ms"] <= 0:
        return "time_ms is not a positive finite number"
    if "noise" in entry and not _finite_number(entry["noise"], 0.0, 100.0):
        return "noise is not a finite fraction"
    if "sm_clock_mhz" in entry and not _finite_number(entry["sm_clock_mhz"], 1.0, 10000.0):
        return "sm_clock_mhz is not a clock in MHz"
    if "gpu_uuid" in entry:
        card = entry["gpu_uuid"]
        if not (isinstance(card, str) and 0 < len(card) <= 64 and card.isprintable()):
            return "gpu_uuid is not a short printable id"
    if "graph_window_ms" in entry and not (
        _finite_number(entry["graph_window_ms"], 0.0, 60_000.0) and entry["graph_window_ms"] > 0
    ):
        return "graph_window_ms is not a window in milliseconds"
    if entry.get("timing_method", "cuda-events") not in PINNED_TIMING_METHODS:
        return f"timing_method is not one of {PINNED_TIMING_METHODS}"
    if entry.get("timing", "default") not in TIMING_MODES:
        return f"timing is not one of {TIMING_MODES}"
    for key in ("tuned_at", "retimed_at"):
        if key in entry and not (isinstance(entry[key], str) and len(entry[key]) <= 40):
            return f"{key} is not a short timestamp"
    runner_ups = entry.get("runner_ups", [])
    if not isinstance(runner_ups, list) or len(runner_ups) > 32:
        return "runner_ups is not a short list"
    for runner in runner_ups:
        if (
            not isinstance(runner, dict)
            or set(runner) - {"config", "time_ms"}
            or not _valid_config_json(runner.get("config"))
            or not _finite_number(runner.get("time_ms"), 0.0, 1e7)
        ):
            return "a runner-up is malformed"
    return None


def _validate_gpu(gpu: Any) -> str | None:
    if not isinstance(gpu, dict):
        return "gpu is not an object"
    if set(gpu) - _GPU_KEYS:
        return f"gpu has unknown keys {sorted(set(gpu) - _GPU_KEYS)[:5]}"
    if not isinstance(gpu.get("name"), str) or len(gpu["name"]) > 128:
        return "gpu.name is not a string"
    if not isinstance(gpu.get("slug"), str) or not _NAME.match(gpu["slug"]):
        return "gpu.slug is not a plain name"
    cc = gpu.get("compute_capability")
    if not (isinstance(cc, list) and len(cc) == 2 and all(isinstance(v, int) and 0 <= v < 100 for v in cc)):
        return "gpu.compute_capability is not [major, minor]"
    return None


def read_file(path: str) -> dict[str, Any] | None:
    """Parse and validate one baked file; None (with a warning) when it is unusable. Entries
    that fail validation are dropped one by one, so one bad entry does not lose the file."""
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            _warn(path, f"larger than {MAX_FILE_BYTES} bytes")
            return None
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        _warn(path, f"not valid JSON ({type(exc).__name__})")
        return None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        _warn(path, f"not schema {SCHEMA}")
        return None
    if set(data) - _TOP_KEYS:
        _warn(path, f"unknown top-level keys {sorted(set(data) - _TOP_KEYS)[:5]}")
        return None
    reason = _validate_gpu(data.get("gpu"))
    if reason:
        _warn(path, reason)
        return None
    entries = data.get("entries")
    if not isinstance(entries, list):
        _warn(path, "entries is not a list")
        return None
    kept = []
    for entry in entries:
        reason = validate_entry(entry)
        if reason:
            _warn(path, f"entry {_describe(entry)}: {reason}")
            continue
        kept.append(entry)
    data["entries"] = kept
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _describe(entry: Any) -> str:
    if isinstance(entry, dict):
        return "/".join(str(entry.get(k))[:32] for k in ("op", "backend", "dtype"))
    return type(entry).__name__


#: Reason given for entries of a backend that cannot import here; dropped without a warning.
_UNAVAILABLE = "the backend is unavailable here"


def config_fits_kernel(op: str, backend: str, config: Mapping[str, Any]) -> str | None:
    """Why ``config`` is outside the kernel's declared space, or None (unknown kernels: None
    only for an empty config, which means "the kernel's default")."""
    try:
        from ..kernels import registry
        from .space import space_for

        b = registry.backend(op, backend)
    except Exception as exc:
        return f"unknown kernel ({type(exc).__name__})"
    if getattr(b, "reason", None) is not None and b.config_space is None:
        # The backend did not import here (its DSL is not installed): no call can use the entry.
        return _UNAVAILABLE
    try:
        space = space_for(b)
    except Exception as exc:
        return f"config space unreadable ({type(exc).__name__})"
    if space is None:
        return None if not config else "the kernel declares no config space"
    return space.invalid_reason(config, None)


# --- the in-memory index -------------------------------------------------------------------


class _Index:
    """Entries of one baked file grouped by (op, backend, dtype), validated against the
    kernels' spaces on first use of each group."""

    def __init__(self, data: dict[str, Any], path: str) -> None:
        self.path = path
        self.gpu = data["gpu"]
        self.groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for entry in data["entries"]:
            self.groups.setdefault((entry["op"], entry["backend"], entry["dtype"]), []).append(entry)
        self.checked: set[tuple[str, str, str]] = set()

    def group(self, op: str, backend: str, dtype: str) -> list[dict[str, Any]]:
        key = (op, backend, dtype)
        entries = self.groups.get(key, [])
        if key not in self.checked:
            self.checked.add(key)
            kept = []
            for entry in entries:
                reason = config_fits_kernel(op, backend, entry["config"])
                if reason == _UNAVAILABLE:
                    continue
                if reason:
                    _warn(self.path, f"entry {_describe(entry)}: {reason}")
                else:
                    kept.append(entry)
            self.groups[key] = entries = kept
        return entries

    def nearest(
        self, op: str, backend: str, dtype: str, shape: Mapping[str, int]
    ) -> tuple[float, dict] | None:
        best: tuple[float, str, dict] | None = None
        for entry in self.group(op, backend, dtype):
            distance = shape_distance(shape, entry["shape"])
            if not distance <= MAX_BAKED_DISTANCE:
                continue
            candidate = (distance, shape_bucket(entry["shape"]), entry)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        return (best[0], best[2]) if best else None

    def backends_for(self, op: str, dtype: str) -> list[str]:
        return sorted({b for (o, b, d) in self.groups if o == op and d == dtype})


class _Stores:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.directory: str | None = None
        self.files: dict[str, _Index | None] = {}  # path -> index
        self.chains: dict[tuple[str, str], list[_Index]] = {}  # (slug, cc) -> indexes to consult
        self.answers: dict[tuple, Any] = {}


_STATE = _Stores()
_MAX_ANSWERS = 4096


def baked_dir() -> str:
    return os.environ.get("TILEARENA_BAKED_DIR") or BAKED_DIR


def clear_cache() -> None:
    """Forget every loaded file (after baking, or when a test swaps the directory)."""
    with _STATE.lock:
        _STATE.files.clear()
        _STATE.chains.clear()
        _STATE.answers.clear()
        _GPU_CACHE.clear()


def _load(path: str) -> _Index | None:
    if path not in _STATE.files:
        data = read_file(path)
        _STATE.files[path] = _Index(data, path) if data else None
    return _STATE.files[path]


def _chain(gpu: GpuIdentity) -> list[_Index]:
    """Files to consult for ``gpu``: its own, then others of the same compute capability."""
    directory = baked_dir()
    key = (directory, gpu.slug, gpu.compute_capability)
    if key in _STATE.chains:
        return _STATE.chains[key]
    chain: list[_Index] = []
    own = _load(os.path.join(directory, f"{gpu.slug}.json"))
    if own is not None:
        chain.append(own)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json") and n != f"{gpu.slug}.json")
    except OSError:
        names = []
    for name in names:
        index = _load(os.path.join(directory, name))
        if index is not None and tuple(index.gpu["compute_capability"]) == gpu.compute_capability:
            chain.append(index)
    _STATE.chains[key] = chain
    return chain


def _remember(key: tuple, value: Any) -> Any:
    if len(_STATE.answers) >= _MAX_ANSWERS:
        _STATE.answers.clear()
    _STATE.answers[key] = value
    return value


def lookup_entry(
    op: str,
    backend: str,
    dtype: Any,
    shape: Mapping[str, int],
    device: Any = None,
    gpu: GpuIdentity | None = None,
) -> dict[str, Any] | None:
    """The baked entry nearest to ``shape``: exact GPU first, then same compute capability."""
    gpu = gpu or current_gpu(device)
    if gpu is None:
        return None
    dtype_name = normalise_dtype(dtype)
    for index in _chain(gpu):
        found = index.nearest(op, backend, dtype_name, shape)
        if found is not None:
            return found[1]
    return None


def lookup_config(
    op: str, backend: str, dtype: Any, shape: Mapping[str, int], device: Any = None
) -> dict | None:
    """The baked config for this call, or None (then the kernel's default applies): exact GPU,
    then a GPU of the same compute capability, nearest shape bucket. Cached per GPU and shape."""
    key = ("config", op, backend, str(dtype), tuple(sorted(shape.items())), str(device))
    answers = _STATE.answers
    if key in answers:
        config = answers[key]
        return dict(config) if config is not None else None
    try:
        with _STATE.lock:
            entry = lookup_entry(op, backend, dtype, shape, device)
            config = dict(entry["config"]) if entry is not None and entry["config"] else None
            _remember(key, config)
    except Exception as exc:  # a lookup must never break a call
        warnings.warn(
            f"baked store lookup failed: {type(exc).__name__}: {exc}", BakedStoreWarning, stacklevel=2
        )
        return None
    return dict(config) if config is not None else None


def best_backend(
    op: str, dtype: Any, shape: Mapping[str, int], device: Any = None, available: Iterable[str] | None = None
) -> str | None:
    """The backend with the fastest baked time for the nearest shape on this GPU (or one of the
    same compute capability), among ``available`` when given; None when nothing is baked."""
    allowed = tuple(sorted(available)) if available is not None else None
    key = ("backend", op, str(dtype), tuple(sorted(shape.items())), str(device), allowed)
    if key in _STATE.answers:
        return _STATE.answers[key]
    try:
        with _STATE.lock:
            return _remember(key, _best_backend(op, dtype, shape, device, allowed))
    except Exception as exc:
        warnings.warn(
            f"baked store lookup failed: {type(exc).__name__}: {exc}", BakedStoreWarning, stacklevel=2
        )
        return None


def _best_backend(
    op: str, dtype: Any, shape: Mapping[str, int], device: Any, allowed: Sequence[str] | None
) -> str | None:
    gpu = current_gpu(device)
    if gpu is None:
        return None
    dtype_name = normalise_dtype(dtype)
    for index in _chain(gpu):
        # Compare backends at the same baked shape: the nearest bucket any of them has, so a
        # backend is not preferred only because it was tuned on a shape closer to this one.
        found: dict[str, tuple[float, dict]] = {}
        for name in index.backends_for(op, dtype_name):
            if allowed is not None and name not in allowed:
                continue
            hit = index.nearest(op, name, dtype_name, shape)
            if hit is not None:
                found[name] = hit
        if not found:
            continue
        nearest = min(d for d, _ in found.values())
        bucket_shapes = {shape_bucket(e["shape"]) for d, e in found.values() if d == nearest}
        bucket = min(bucket_shapes)
        contenders = [
            (e["time_ms"], name)
            for name, (d, e) in found.items()
            if d == nearest and shape_bucket(e["shape"]) == bucket
        ]
        return min(contenders)[1]
    return None


# --- writing -------------------------------------------------------------------------------


def gpu_record(device: Any = None) -> dict[str, Any]:
    """The ``gpu`` block of a baked file for the current GPU (versions of every DSL)."""
    import importlib.metadata

    import torch

    identity = current_gpu(device)
    if identity is None:
        raise RuntimeError("baking needs a CUDA GPU")
    versions = {}
    for dist in ("torch", "triton", "helion", "tilelang", "nvidia-cutlass-dsl"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    driver = None
    try:
        import subprocess

        driver = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            .stdout.strip()
            .splitlines()[0]
        )
    except Exception:
        driver = None
    return {
        "name": identity.name,
        "slug": identity.slug,
        "compute_capability": list(identity.compute_capability),
        "driver": driver,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "dsl_versions": versions,
    }


def entry_key(entry: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (entry["op"], entry["backend"], entry["dtype"], shape_bucket(entry["shape"]))


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """An exclusive advisory lock beside ``path`` for a read-modify-write."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def write_atomic(path: str, data: Mapping[str, Any]) -> None:
    directory = os.path.dirname(path) or "."
    handle, temp = tempfile.mkstemp(prefix=".baked-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True, allow_nan=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def bake(entries: Sequence[Mapping[str, Any]], gpu: Mapping[str, Any], path: str | None = None) -> str:
    """Merge ``entries`` into the GPU's baked file (same key: the new entry replaces the old),
    under a file lock, written atomically. Returns the file's path."""
    path = path or os.path.join(baked_dir(), f"{gpu['slug']}.json")
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    fresh = []
    for entry in entries:
        entry = {**entry, "bucket": shape_bucket(entry["shape"]), "dtype": normalise_dtype(entry["dtype"])}
        entry.setdefault("tuned_at", now)
        reason = validate_entry(entry)
        if reason:
            raise ValueError(f"refusing to bake a malformed entry {_describe(entry)}: {reason}")
        fresh.append(entry)
    reason = _validate_gpu(dict(gpu))
    if reason:
        raise ValueError(f"refusing to bake: {reason}")
    with _locked(path):
        existing = read_file(path) if os.path.exists(path) else None
        merged: dict[tuple, dict] = {}
        if existing is not None:
            for entry in existing["entries"]:
                merged[entry_key(entry)] = entry
        for entry in fresh:
            merged[entry_key(entry)] = entry
        data = {"schema": SCHEMA, "gpu": dict(gpu), "entries": [merged[k] for k in sorted(merged)]}
        write_atomic(path, data)
    clear_cache()
    return path
