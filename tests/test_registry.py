"""The op interface: registry, specs, dispatch, bad input, torch.library."""

from __future__ import annotations

import pytest
import torch
from tilearena.kernels import registry

import tilearena

ROWWISE = ("rmsnorm", "softmax")


def test_ops_and_backends_are_listed() -> None:
    assert {"rmsnorm", "softmax", "matmul"} <= set(tilearena.ops())
    for op in ROWWISE:
        names = tilearena.backends(op)
        for expected in ("eager", "compile", "triton", "helion", "cute", "tilelang", "quack", "liger"):
            assert expected in names


@pytest.mark.parametrize("op", ["rmsnorm", "softmax", "matmul"])
def test_spec_is_complete(op: str) -> None:
    op_spec = registry.spec(op)
    assert set(op_spec.shapes) >= {"quick", "llama", "sweep"}
    for dtype in op_spec.dtypes:
        assert 0 < op_spec.tolerance[dtype] < 0.05
    shape = dict(op_spec.shapes["quick"][0])
    args = op_spec.make_inputs(shape, op_spec.dtypes[0], "cpu", 1)
    # Seeded random inputs: reproducible, and never all zeros.
    again = op_spec.make_inputs(shape, op_spec.dtypes[0], "cpu", 1)
    other = op_spec.make_inputs(shape, op_spec.dtypes[0], "cpu", 2)
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    assert all(bool((t != 0).any()) for t in tensors)
    assert all(torch.equal(a, b) for a, b in zip(tensors, [t for t in again if isinstance(t, torch.Tensor)]))
    assert not torch.equal(tensors[0], next(t for t in other if isinstance(t, torch.Tensor)))
    assert op_spec.validate(*args) == {k: v for k, v in shape.items() if k in op_spec.validate(*args)}
    ref = op_spec.reference(*args)
    assert ref.dtype == torch.float64
    cost = op_spec.cost(shape, op_spec.dtypes[0])
    assert cost.bytes > 0 and cost.flops > 0


def test_rmsnorm_cost_counts_each_tensor_once() -> None:
    cost = registry.spec("rmsnorm").cost({"M": 32768, "N": 4096}, torch.bfloat16)
    assert cost.bytes == 2 * 32768 * 4096 * 2 + 4096 * 2
    assert registry.spec("softmax").cost({"M": 8, "N": 16}, torch.float32).bytes == 2 * 8 * 16 * 4


def test_reference_matches_definition() -> None:
    x = torch.tensor([[3.0, 4.0]])
    w = torch.tensor([1.0, 2.0])
    # mean(x^2) = 12.5 -> y = x / sqrt(12.5) * w
    expected = torch.tensor([[3.0, 8.0]], dtype=torch.float64) / 12.5**0.5
    torch.testing.assert_close(registry.spec("rmsnorm").reference(x, w, 0.0), expected)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tilearena.rmsnorm(torch.randn(4, 8).int(), torch.randn(8)), "x: expected dtype"),
        (lambda: tilearena.rmsnorm(torch.randn(4, 8), torch.randn(7)), "weight: expected shape"),
        (lambda: tilearena.rmsnorm(torch.randn(4, 8), torch.randn(8).half()), "weight: expected dtype"),
        (lambda: tilearena.rmsnorm(torch.randn(8, 4).t(), torch.randn(8)), "x: expected a contiguous"),
        (
            lambda: tilearena.rmsnorm(torch.randn(4, 8), torch.randn(8), float("nan")),
            "eps: expected a finite",
        ),
        (lambda: tilearena.rmsnorm(torch.randn(4, 8), torch.randn(8), backend="nope"), "backend:"),
        (lambda: tilearena.softmax(torch.randn(4, 0)), "x: expected a non-empty"),
        (lambda: tilearena.softmax("not a tensor"), "x"),
    ],
)
def test_bad_input_names_the_argument(call, message: str) -> None:
    with pytest.raises((TypeError, ValueError, RuntimeError)) as info:
        call()
    assert message in str(info.value)


def test_unavailable_backend_says_why() -> None:
    registry.register_backend(
        registry.UnavailableBackend("rmsnorm", "missing-dsl", "missing", "dsl not installed")
    )
    with pytest.raises(ValueError, match=r"backend: 'missing-dsl' cannot run rmsnorm.*dsl not installed"):
        tilearena.rmsnorm(torch.randn(4, 8), torch.randn(8), backend="missing-dsl")


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the peer can run")
def test_gpu_only_backend_refuses_cpu_tensors() -> None:
    with pytest.raises(ValueError, match=r"backend: 'quack' cannot run rmsnorm.*needs a CUDA GPU"):
        tilearena.rmsnorm(torch.randn(4, 8), torch.randn(8), backend="quack")


def test_empty_rows_work() -> None:
    y = tilearena.rmsnorm(torch.randn(0, 8), torch.randn(8), 1e-6, backend="eager")
    assert y.shape == (0, 8)
    assert tilearena.softmax(torch.randn(0, 5), backend="eager").shape == (0, 5)


def test_use_context_manager_selects_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = registry.backend("softmax", "eager")
    fake = registry.Backend(
        "softmax",
        "recording",
        "torch",
        lambda x, out=None: calls.append(1) or real.fn(x),
        devices=("cuda", "cpu"),
        writes_out=False,
    )
    registry.register_backend(fake)
    x = torch.randn(3, 5)
    with tilearena.use({"softmax": "recording"}):
        y = tilearena.softmax(x)
    assert calls == [1]
    torch.testing.assert_close(y, torch.softmax(x, -1))
    tilearena.softmax(x, backend="eager")
    assert calls == [1]  # outside the block the context no longer applies
    with pytest.raises(ValueError, match="has no backend"), tilearena.use("no-such-backend"):
        pass


def test_default_backend_on_cpu_runs_eager_reference() -> None:
    x = torch.randn(6, 10)
    torch.testing.assert_close(tilearena.softmax(x), torch.softmax(x, -1))


@pytest.mark.parametrize("op", ROWWISE)
def test_opcheck(op: str) -> None:
    op_spec = registry.spec(op)
    args = op_spec.make_inputs({"M": 4, "N": 16}, torch.float32, "cpu", 0)
    torch.library.opcheck(getattr(torch.ops.tilearena, op).default, args)


def test_fullgraph_compile_has_no_graph_break() -> None:
    def block(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        h = torch.ops.tilearena.rmsnorm(x, w, 1e-6, "eager")
        return torch.ops.tilearena.softmax(h * 2.0, "eager")

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    x, w = torch.randn(4, 32), torch.randn(32)
    torch.testing.assert_close(compiled(x, w), block(x, w))


def test_fake_tensor_shapes() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(7, 3, 64, dtype=torch.bfloat16)
        w = torch.empty(64, dtype=torch.bfloat16)
        y = torch.ops.tilearena.rmsnorm(x, w, 1e-6)
        assert y.shape == (7, 3, 64) and y.dtype == torch.bfloat16
