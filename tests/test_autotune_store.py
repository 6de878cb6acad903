"""The baked store: round trip, fallbacks, nearest bucket, hostile files, concurrent writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
from tilearena.autotune import store

H100 = store.GpuIdentity("NVIDIA H100 80GB HBM3", "h100-sxm", (9, 0))
H100_PCIE = store.GpuIdentity("NVIDIA H100 PCIe", "h100-pcie", (9, 0))
A100 = store.GpuIdentity("NVIDIA A100-SXM4-80GB", "a100-sxm", (8, 0))


def gpu_block(identity):
    return {
        "name": identity.name,
        "slug": identity.slug,
        "compute_capability": list(identity.compute_capability),
        "driver": "580.0",
        "cuda": "12.8",
        "torch": "2.11",
        "dsl_versions": {"triton": "3.6.0"},
    }


def entry(backend="triton", shape=(4096, 4096), config=None, time_ms=0.1, op="rmsnorm", dtype="bfloat16"):
    return {
        "op": op,
        "backend": backend,
        "dtype": dtype,
        "shape": {"M": shape[0], "N": shape[1]},
        "config": {"num_warps": 8} if config is None else config,
        "time_ms": time_ms,
        "noise": 0.01,
        "runner_ups": [{"config": {"num_warps": 4}, "time_ms": time_ms * 1.1}],
    }


@pytest.fixture
def baked(tmp_path, monkeypatch):
    """An empty baked directory and a fake current GPU (the tests run on a CPU)."""
    monkeypatch.setenv("TILEARENA_BAKED_DIR", str(tmp_path))
    current = {"gpu": H100}
    monkeypatch.setattr(store, "current_gpu", lambda device=None: current["gpu"])
    store.clear_cache()
    yield tmp_path, current
    store.clear_cache()


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA A100-SXM4-80GB", "a100-sxm"),
        ("NVIDIA GH200 480GB", "gh200"),
    ],
)
def test_gpu_slug(name, slug):
    assert store.gpu_slug(name) == slug


def test_cpu_has_no_baked_config(monkeypatch):
    store.clear_cache()
    monkeypatch.setattr(store, "current_gpu", lambda device=None: None)
    assert store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 1, "N": 8}, device="cpu") is None
    assert store.best_backend("rmsnorm", "bfloat16", {"M": 1, "N": 8}, device="cpu") is None


def _load(path):
    with open(path) as handle:
        return json.load(handle)


def test_round_trip_nearest_bucket_and_fallbacks(baked):
    _, current = baked
    path = store.bake(
        [
            entry(shape=(4096, 4096), config={"num_warps": 8}),
            entry(shape=(16, 4096), config={"num_warps": 2}),
            entry(shape=(4096, 65536), config={"num_warps": 16, "chunk": 8192}),
        ],
        gpu_block(H100),
    )
    assert os.path.basename(path) == "h100-sxm.json"
    data = _load(path)
    assert data["schema"] == store.SCHEMA and data["gpu"]["compute_capability"] == [9, 0]
    assert len(data["entries"]) == 3
    # Exact bucket, and nearest by log2 distance over the dims.
    assert store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 4096, "N": 4096}) == {"num_warps": 8}
    assert store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 8, "N": 4000}) == {"num_warps": 2}
    assert store.lookup_config("rmsnorm", "triton", "bf16", {"M": 2048, "N": 50000})["chunk"] == 8192
    import torch

    assert store.lookup_config("rmsnorm", "triton", torch.bfloat16, {"M": 3000, "N": 4096}) == {
        "num_warps": 8
    }
    # Nothing for another dtype, op or backend: the kernel's default applies.
    assert store.lookup_config("rmsnorm", "triton", "float16", {"M": 4096, "N": 4096}) is None
    assert store.lookup_config("softmax", "triton", "bfloat16", {"M": 4096, "N": 4096}) is None
    # Same compute capability: the PCIe card uses the SXM file; an A100 gets nothing.
    store.clear_cache()
    current["gpu"] = H100_PCIE
    assert store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 4096, "N": 4096}) == {"num_warps": 8}
    store.bake([entry(shape=(4096, 4096), config={"num_warps": 4})], gpu_block(H100_PCIE))
    assert store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 4096, "N": 4096}) == {"num_warps": 4}
    store.clear_cache()
    current["gpu"] = A100
    assert store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 4096, "N": 4096}) is None
    # Re-baking the same key replaces the entry rather than adding one.
    current["gpu"] = H100
    store.bake([entry(shape=(4000, 4096), config={"num_warps": 16})], gpu_block(H100))
    assert len(_load(path)["entries"]) == 3
    assert store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 4096, "N": 4096}) == {"num_warps": 16}


def test_best_backend_and_cache(baked):
    store.bake(
        [
            entry("triton", (4096, 4096), time_ms=0.10),
            entry("eager", (4096, 4096), {}, time_ms=0.30),
            entry("triton", (1, 4096), time_ms=0.010),
            entry("eager", (1, 4096), {}, time_ms=0.005),
        ],
        gpu_block(H100),
    )
    assert store.best_backend("rmsnorm", "bfloat16", {"M": 4096, "N": 4096}) == "triton"
    assert store.best_backend("rmsnorm", "bfloat16", {"M": 2, "N": 4096}) == "eager"
    assert store.best_backend("rmsnorm", "bfloat16", {"M": 4096, "N": 4096}, available=["eager"]) == "eager"
    assert store.best_backend("rmsnorm", "float32", {"M": 4096, "N": 4096}) is None
    # After the first call an answer is a dict lookup.
    import time

    start = time.perf_counter()
    for _ in range(10_000):
        store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 4096, "N": 4096})
        store.best_backend("rmsnorm", "bfloat16", {"M": 4096, "N": 4096})
    assert (time.perf_counter() - start) / 20_000 < 50e-6


HOSTILE_FILES = {
    "garbage": b"\x00\xff\x13garbage{{{",
    "not-an-object": b"[1, 2, 3]",
    "wrong-schema": json.dumps({"schema": "something/9", "gpu": {}, "entries": []}).encode(),
    "nan": b'{"schema": "' + store.SCHEMA.encode() + b'", "gpu": {}, "entries": [NaN]}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_FILES))
def test_corrupt_files_are_ignored_with_a_warning(baked, kind):
    directory, _ = baked
    (directory / "h100-sxm.json").write_bytes(HOSTILE_FILES[kind])
    with pytest.warns(store.BakedStoreWarning):
        assert store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 4096, "N": 4096}) is None
    assert store.best_backend("rmsnorm", "bfloat16", {"M": 4096, "N": 4096}) is None


HOSTILE_ENTRIES = {
    "unknown-key": {**entry(), "exec": "print(1)"},
    "huge-time": {**entry(), "time_ms": 1e308},
    "negative-time": {**entry(), "time_ms": -1.0},
    "huge-int-config": entry(config={"num_warps": 10**30}),
    "value-not-in-space": entry(config={"num_warps": 3}),
    "unknown-param": entry(config={"num_wraps": 8}),
    "import-string": entry(config={"num_warps": "__import__('os').system('echo pwned')"}),
    "import-backend": entry(backend="__import__('os')"),
    "nested-config": entry(config={"num_warps": {"__class__": 1}}),
    "deep-list-config": entry(config={"num_warps": [[[8]]]}),
    "bool-for-int": entry(config={"num_warps": True}),
    "bad-shape": {**entry(), "shape": {"M": -1, "N": 4096}},
}


def test_helion_configs_with_lists_round_trip(baked):
    """Helion's configs hold lists (per loop, per memory access; None for "whole row") and
    loop_orders, a list of permutations: the 0d27b72 H100 tune refused to bake them."""
    helion = {
        "block_sizes": [8192],
        "reduction_loops": [None],
        "loop_orders": [[0, 1]],
        "indexing": ["pointer", "block_ptr", "pointer"],
        "load_eviction_policies": ["", "last"],
        "num_warps": 8,
        "pid_type": "flat",
    }
    store.bake([entry(backend="helion", shape=(8192, 65536), config=helion)], gpu_block(H100))
    store.clear_cache()
    assert store.lookup_config("rmsnorm", "helion", "bfloat16", {"M": 8192, "N": 65536}) == helion


def test_hostile_entries_are_dropped_one_by_one(baked):
    directory, _ = baked
    good = {**entry(shape=(4096, 4096), config={"num_warps": 32}), "bucket": "M=4096,N=4096"}
    bad = [
        {**e, "shape": {"M": 4096, "N": 4096}} if name != "bad-shape" else e
        for name, e in HOSTILE_ENTRIES.items()
    ]
    data = {"schema": store.SCHEMA, "gpu": gpu_block(H100), "entries": [*bad, good]}
    (directory / "h100-sxm.json").write_text(json.dumps(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 4096, "N": 4096}) == {
            "num_warps": 32
        }
    messages = [str(w.message) for w in caught if issubclass(w.category, store.BakedStoreWarning)]
    assert len(messages) == len(HOSTILE_ENTRIES), messages
    assert not os.path.exists("pwned")


def test_unknown_top_level_or_gpu_keys_reject_the_file(baked):
    directory, _ = baked
    for data in (
        {"schema": store.SCHEMA, "gpu": gpu_block(H100), "entries": [], "hook": "x"},
        {"schema": store.SCHEMA, "gpu": {**gpu_block(H100), "eval": 1}, "entries": []},
        {"schema": store.SCHEMA, "gpu": {**gpu_block(H100), "compute_capability": [9]}, "entries": []},
    ):
        (directory / "h100-sxm.json").write_text(json.dumps(data))
        store.clear_cache()
        with pytest.warns(store.BakedStoreWarning):
            assert store.read_file(str(directory / "h100-sxm.json")) is None


def test_bake_refuses_malformed_entries(baked):
    with pytest.raises(ValueError):
        store.bake([{**entry(), "time_ms": float("nan")}], gpu_block(H100))


_WRITER = """
import sys
from tilearena.autotune import store
name, count, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
gpu = {"name": "NVIDIA H100 80GB HBM3", "slug": "h100-sxm", "compute_capability": [9, 0]}
for i in range(count):
    store.bake([{"op": "rmsnorm", "backend": name, "dtype": "bfloat16", "shape": {"M": 2 ** i, "N": 4096},
                 "config": {}, "time_ms": 0.1 + i}], gpu, path)
"""


def test_two_processes_baking_at_once_keep_every_entry(tmp_path):
    path = str(tmp_path / "h100-sxm.json")
    count = 15
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, name, str(count), path])
        for name in ("eager", "compile")
    ]
    assert all(w.wait(timeout=120) == 0 for w in writers)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = store.read_file(path)
    assert data is not None
    assert sorted((e["backend"], e["shape"]["M"]) for e in data["entries"]) == sorted(
        (name, 2**i) for name in ("eager", "compile") for i in range(count)
    )
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_skip_baked_sees_the_buckets_of_its_op_only(tmp_path):
    """``tilearena tune --skip-baked`` resumes a cut-short run: it skips what the store holds,
    by the store's own key (a bucket), so a shape in a baked bucket is not tuned again."""
    from tilearena.autotune.cli import baked_jobs

    path = str(tmp_path / "h100-sxm.json")
    store.bake(
        [entry(shape=(4096, 4096)), entry(backend="cute", shape=(8, 4096)), entry(op="softmax")],
        gpu_block(H100),
        path,
    )
    done = baked_jobs(path, "rmsnorm")
    assert done == {("triton", "bfloat16", "M=4096,N=4096"), ("cute", "bfloat16", "M=8,N=4096")}
    assert ("triton", "bfloat16", store.shape_bucket({"M": 5000, "N": 4096})) in done
    assert baked_jobs(str(tmp_path / "missing.json"), "rmsnorm") == set()


def test_a_nearest_baked_config_invalid_at_this_shape_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config baked at the nearest shape bucket may not fit this shape (the H100 GPU tests at
    0d27b72: a CuTe cluster of 16 CTAs, tuned on long rows, leaves a 4096-column row fewer than
    32 threads per CTA, which the kernel refuses): the dispatcher runs the kernel's default."""
    pytest.importorskip("cutlass")
    import torch
    from tilearena.kernels import registry

    from tilearena import dispatch

    b = registry.backend("rmsnorm", "cute")
    too_thin = {"threads_per_cta": 128, "cluster_size": 16, "vecs_per_thread": 8, "vector_bits": 64}
    fits = {"threads_per_cta": 256, "cluster_size": 16, "vecs_per_thread": 16, "vector_bits": 64}
    monkeypatch.setattr(dispatch, "_baked", lambda op, args, shape, kind: dict(too_thin))
    x, w = torch.empty(1, 4096, dtype=torch.bfloat16), torch.empty(4096, dtype=torch.bfloat16)
    assert dispatch.baked_config("rmsnorm", b, (x, w, 1e-6), {"M": 1, "N": 4096}) is None
    monkeypatch.setattr(dispatch, "_baked", lambda op, args, shape, kind: dict(fits))
    x, w = torch.empty(2, 262144, dtype=torch.bfloat16), torch.empty(262144, dtype=torch.bfloat16)
    assert dispatch.baked_config("rmsnorm", b, (x, w, 1e-6), {"M": 2, "N": 262144}) == fits


def test_a_far_baked_shape_is_not_used(baked):
    """Past MAX_BAKED_DISTANCE the kernel's own default is used: a config tuned at 32768x4096 is
    not applied at 262144x256 (log2 distance 5), but is at 16384x4096 (distance 1)."""
    store.bake([entry(shape=(32768, 4096), config={"num_warps": 16})], gpu_block(H100))
    assert store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 16384, "N": 4096}) == {"num_warps": 16}
    assert store.lookup_config("rmsnorm", "triton", "bfloat16", {"M": 262144, "N": 256}) is None
    assert store.best_backend("rmsnorm", "bfloat16", {"M": 262144, "N": 256}) is None
    assert store.shape_distance({"M": 32768, "N": 4096}, {"M": 262144, "N": 256}) > store.MAX_BAKED_DISTANCE


def test_a_zero_flag_is_its_own_bucket(baked):
    """matmul's BT=0 (B as K x N) and BT=1 (B as nn.Linear stores it) launch different kernels:
    before the fix both rounded to BT=1, and baking 4096^3 in one layout replaced the other's."""
    assert store.shape_bucket({"M": 4096, "N": 4096, "K": 4096, "BT": 0}) == "BT=0,K=4096,M=4096,N=4096"
    assert store.shape_bucket({"M": 4096, "N": 4096, "K": 4096, "BT": 1}) == "BT=1,K=4096,M=4096,N=4096"
    assert store.shape_bucket({"M": 10240, "N": 8192}) == store.shape_bucket({"M": 8192, "N": 8192})

    def matmul_entry(bt, warps):
        return {
            **entry(op="matmul", config={"num_warps": warps}),
            "shape": {"M": 4096, "N": 4096, "K": 4096, "BT": bt},
        }

    path = store.bake([matmul_entry(0, 4), matmul_entry(1, 8)], gpu_block(H100))
    assert sorted(e["config"]["num_warps"] for e in _load(path)["entries"]) == [4, 8]


def test_a_baking_run_tunes_one_shape_per_bucket():
    from tilearena.autotune.cli import first_per_bucket

    jobs = [
        ("triton", {"M": 1, "N": 8192, "K": 8192, "BT": 1}, "bf16"),
        ("triton", {"M": 1, "N": 10240, "K": 8192, "BT": 1}, "bf16"),  # same bucket as the first
        ("triton", {"M": 1, "N": 8192, "K": 8192, "BT": 1}, "fp16"),
        ("cute", {"M": 1, "N": 10240, "K": 8192, "BT": 1}, "bf16"),
        ("triton", {"M": 1, "N": 8192, "K": 8192, "BT": 0}, "bf16"),
    ]
    kept, dropped = first_per_bucket(jobs)
    assert dropped == 1 and kept == [jobs[0], *jobs[2:]]


def test_an_entry_names_how_it_was_timed():
    entry = {"op": "rmsnorm", "backend": "triton", "dtype": "bfloat16", "shape": {"M": 8, "N": 64},
             "config": {"BLOCK": 64}, "time_ms": 1.0}
    assert store.validate_entry(entry) is None  # no "timing": the default method
    retimed = {**entry, "timing": "steady", "retimed_at": "2026-12-06T12:00:00+00:00"}
    assert store.validate_entry(retimed) is None
    assert store.validate_entry({**retimed, "timing": "clean"}) is None
    assert "timing" in store.validate_entry({**entry, "timing": "fast"})
    assert "retimed_at" in store.validate_entry({**entry, "retimed_at": 5})


def test_an_entry_may_record_the_sm_clock_of_its_final():
    entry = {"op": "rmsnorm", "backend": "triton", "dtype": "bfloat16", "shape": {"M": 8, "N": 64},
             "config": {"BLOCK": 64}, "time_ms": 1.0}
    assert store.validate_entry({**entry, "sm_clock_mhz": 1755.0}) is None
    assert store.validate_entry({**entry, "sm_clock_mhz": 1980}) is None
    for bad in (0.0, -5.0, float("nan"), float("inf"), 1e6, "1755", True, None):
        assert "sm_clock_mhz" in store.validate_entry({**entry, "sm_clock_mhz": bad}), bad


def test_graph_windows_of_modes_and_of_records():
    """The window a graph-timed kernel's samples span: the mode's (None without hot start), and a
    record's own, or 100 ms for a graph-timed one from before records kept it."""
    assert [store.graph_window_ms(mode) for mode in store.TIMING_MODES] == [None, None, None, 100.0, 1000.0]
    graph = {"timing_method": "cuda-graph"}
    assert store.graph_window_ms("sustained", {**graph, "graph_window_ms": 1000.0}) == 1000.0
    assert store.graph_window_ms("sustained", graph) == store.LEGACY_GRAPH_WINDOW_MS == 100.0
    assert store.graph_window_ms("sustained", {"timing_method": "cuda-events"}) is None
    assert store.graph_window_ms("sustained", {}) is None  # no method on record: events
    assert store.graph_window_ms("clean", {**graph, "graph_window_ms": 1000.0}) is None
    entry = {
        "op": "rmsnorm", "backend": "triton", "dtype": "bfloat16", "shape": {"M": 1, "N": 8},
        "config": {}, "time_ms": 0.01, "timing_method": "cuda-graph", "timing": "sustained",
    }
    assert store.validate_entry({**entry, "graph_window_ms": 1000.0}) is None
    for bad in (0.0, -1.0, float("nan"), 1e9, "1000", True, None):
        assert "graph_window_ms" in store.validate_entry({**entry, "graph_window_ms": bad}), bad


def test_each_timing_mode_names_its_measure_keywords():
    assert store.TIMING_MODES == ("default", "steady", "clean", "hot", "sustained")
    assert store.measure_kwargs("default") == {"steady": False, "flush": "write", "hot_start": False}
    assert store.measure_kwargs("steady") == {"steady": True, "flush": "write", "hot_start": False}
    assert store.measure_kwargs("clean") == {"steady": True, "flush": "read", "hot_start": False}
    assert store.measure_kwargs("hot") == {
        "steady": True, "flush": "read", "hot_start": True, "graph_span_ms": 100.0,
    }
    assert store.measure_kwargs("sustained") == {
        "steady": True, "flush": "read", "hot_start": True, "span_ms": 1000.0, "max_samples": 5000,
        "graph_span_ms": 1000.0,
    }
    store.measure_kwargs("clean")["flush"] = "write"  # a copy: the mode is unchanged
    assert store.measure_kwargs("clean")["flush"] == "read"
    with pytest.raises(ValueError, match=r"timing: expected one of .* got 'fast'"):
        store.measure_kwargs("fast")


def test_every_shipped_baked_config_is_valid_at_its_own_shape():
    """The dispatcher applies a baked config only if its space accepts it at the call's shape;
    a winner refused at the very shape it was tuned on would never run (at 64c3713 the Triton
    matmul's 1024x6144x4096 winner, which leaves the tiles to the kernel, was refused: the space
    completed it first, so the planner took every parameter as chosen and would not shrink)."""
    from tilearena.autotune.space import TuneContext, space_for
    from tilearena.kernels import registry

    data = store.read_file(os.path.join(store.BAKED_DIR, "h100-sxm.json"))
    assert data is not None and len(data["entries"]) > 200
    refused = []
    for entry in data["entries"]:
        space = space_for(registry.backend(entry["op"], entry["backend"]))
        context = TuneContext(shape=dict(entry["shape"]), dtype_bytes=2)
        if space is not None and entry["config"]:
            reason = space.invalid_reason(entry["config"], context)
            if reason:
                refused.append((entry["op"], entry["backend"], entry["shape"], reason))
    assert refused == []


def test_a_partial_triton_matmul_config_is_judged_as_the_kernel_runs_it():
    """Stages 4 with the tiles left to the kernel: the planner narrows the 128x256 default to fit
    the shared memory; the same stages with the tiles chosen are refused."""
    from tilearena.autotune.space import TuneContext, space_for
    from tilearena.kernels import registry
    from tilearena.kernels.matmul.triton import plan_for_dims

    space = space_for(registry.backend("matmul", "triton"))
    context = TuneContext(shape={"M": 1024, "N": 6144, "K": 4096, "BT": 1}, dtype_bytes=2)
    partial = {"GROUP_M": 16, "num_stages": 4, "num_warps": 4, "path": "auto", "warp_specialize": False}
    assert space.invalid_reason(partial, context) is None
    plan = plan_for_dims(1024, 6144, 4096, 2, 132, True, partial)
    assert plan.block_n < 256
    chosen = {**partial, "BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64}
    assert "shared memory" in space.invalid_reason(chosen, context)


def test_an_entry_may_record_how_its_final_was_timed():
    """``timing_method``: the method the bench then times that baked config by."""
    entry = {"op": "rmsnorm", "backend": "triton", "dtype": "bfloat16", "shape": {"M": 8, "N": 64},
             "config": {"BLOCK": 64}, "time_ms": 1.0}
    for method in store.PINNED_TIMING_METHODS:
        assert store.validate_entry({**entry, "timing_method": method}) is None
    for bad in ("auto", "cpu-timer", "graph", None, 1, ["cuda-graph"]):
        assert "timing_method" in store.validate_entry({**entry, "timing_method": bad}), bad


def test_an_entry_may_record_the_card_it_was_tuned_on():
    entry = {"op": "rmsnorm", "backend": "triton", "dtype": "bfloat16", "shape": {"M": 8, "N": 64},
             "config": {"BLOCK": 64}, "time_ms": 1.0}
    assert store.validate_entry({**entry, "gpu_uuid": "GPU-6f1c2a4e-0000-1111-2222-333344445555"}) is None
    for bad in ("", "x" * 65, "GPU-\n", 5, None, ["GPU-1"]):
        assert "gpu_uuid" in store.validate_entry({**entry, "gpu_uuid": bad}), bad
