"""The matmul spec: argument checks, cost model, reference, shape sets and the torch baselines."""

from __future__ import annotations

import math

import pytest
import torch
from tilearena.kernels import registry
from tilearena.kernels.matmul import spec as matmul_spec

SPEC = matmul_spec.SPEC


def _tensor(*shape: int, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    return torch.randn(*shape).to(dtype)


def test_registered() -> None:
    assert "matmul" in registry.ops()
    assert registry.spec("matmul") is SPEC
    assert SPEC.arg_names == ("a", "b", "transpose_b")
    assert SPEC.bound == "compute"
    assert set(SPEC.dtypes) == {torch.bfloat16, torch.float16}
    assert set(SPEC.tolerance) >= set(SPEC.dtypes)
    for name in ("eager", "cublas", "compile", "triton", "helion", "cute", "tilelang"):
        assert name in SPEC.backend_modules
    assert set(SPEC.preference) <= set(SPEC.backend_modules)


@pytest.mark.parametrize(
    ("args", "error", "named"),
    [
        (("x", _tensor(4, 4), False), TypeError, "a:"),
        ((_tensor(4, 4), [1.0], False), TypeError, "b:"),
        ((_tensor(2, 4, 4), _tensor(4, 4), False), ValueError, "a:"),
        ((_tensor(4, 4), _tensor(4), False), ValueError, "b:"),
        ((_tensor(4, 4, dtype=torch.int32), _tensor(4, 4), False), TypeError, "a:"),
        ((_tensor(4, 4), _tensor(4, 4, dtype=torch.bfloat16), False), TypeError, "b:"),
        ((_tensor(4, 4), _tensor(4, 4), 1), TypeError, "transpose_b:"),
        ((_tensor(4, 8), _tensor(4, 8), False), ValueError, "b:"),  # K=8 vs [K=4, N=8]
        ((_tensor(4, 8), _tensor(8, 4), True), ValueError, "b:"),  # K=8 vs [N=8, K=4]
        ((_tensor(4, 0), _tensor(0, 4), False), ValueError, "a:"),
        ((_tensor(8, 4).t(), _tensor(8, 4), False), ValueError, "a:"),
        ((_tensor(4, 8), _tensor(4, 8).t(), False), ValueError, "b:"),
        ((_tensor(4, 4), _tensor(4, 4).to("meta"), False), ValueError, "b on meta"),
    ],
)
def test_validate_names_the_bad_argument(args: tuple, error: type[Exception], named: str) -> None:
    with pytest.raises(error, match=named):
        SPEC.validate(*args)


def test_validate_shapes_and_empty_sides() -> None:
    assert SPEC.validate(_tensor(3, 5), _tensor(5, 7), False) == {"M": 3, "N": 7, "K": 5, "BT": 0}
    assert SPEC.validate(_tensor(3, 5), _tensor(7, 5), True) == {"M": 3, "N": 7, "K": 5, "BT": 1}
    # M = 0 or N = 0 is an empty result, not an error; K = 0 is refused (tested above).
    assert SPEC.validate(_tensor(0, 5), _tensor(5, 7), False)["M"] == 0
    assert SPEC.validate(_tensor(3, 5), _tensor(0, 5), True)["N"] == 0
    assert SPEC.validate(_tensor(3, 5, dtype=torch.float32), _tensor(5, 2, dtype=torch.float32))["K"] == 5


def test_cost() -> None:
    shape = {"M": 128, "N": 4096, "K": 14336, "BT": 1}
    cost = SPEC.cost(shape, torch.bfloat16)
    assert cost.flops == 2 * 128 * 4096 * 14336
    assert cost.bytes == (128 * 14336 + 14336 * 4096 + 128 * 4096) * 2


@pytest.mark.parametrize("transpose_b", [False, True])
def test_reference_matches_torch(transpose_b: bool) -> None:
    a, b, bt = SPEC.make_inputs({"M": 9, "N": 11, "K": 13, "BT": int(transpose_b)}, torch.float16, "cpu", 3)
    assert bt is transpose_b
    expected = a.double() @ (b.double().t() if transpose_b else b.double())
    result = SPEC.reference(a, b, bt)
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, expected, rtol=0, atol=0)
    out = SPEC.empty_output(a, b, bt)
    assert out.shape == (9, 11) and out.dtype == torch.float16


def test_shape_sets_well_formed() -> None:
    assert {"quick", "sweep", "llama", "llama_small"} <= set(SPEC.shapes)
    for name, shapes in SPEC.shapes.items():
        assert shapes, name
        for shape in shapes:
            assert set(shape) == {"M", "N", "K", "BT"}, (name, shape)
            assert all(isinstance(v, int) and not isinstance(v, bool) for v in shape.values())
            assert shape["K"] >= 1 and shape["BT"] in (0, 1)
    assert len(SPEC.shapes["llama"]) == 48
    assert all(s["BT"] == 1 for s in SPEC.shapes["llama"])
    llama = [tuple(s.items()) for s in SPEC.shapes["llama"]]
    assert all(tuple(s.items()) in llama for s in SPEC.shapes["llama_small"])
    # The quick set covers both layouts and stays tiny enough for the Triton interpreter.
    assert {s["BT"] for s in SPEC.shapes["quick"]} == {0, 1}
    assert all(s["M"] * s["N"] * s["K"] <= 1 << 18 for s in SPEC.shapes["quick"])


@pytest.mark.parametrize("shape", [*SPEC.shapes["quick"], {"M": 3, "N": 5, "K": 4096, "BT": 1}])
def test_make_inputs_sizes_outputs_near_one(shape: dict[str, int]) -> None:
    a, b, bt = SPEC.make_inputs(shape, torch.bfloat16, "cpu", 0)
    assert SPEC.validate(a, b, bt) == shape
    assert a.abs().sum() > 0 and b.abs().sum() > 0
    ref = SPEC.reference(a, b, bt)
    # B scaled by 1/sqrt(K): outputs have unit variance whatever K is.
    rms = ref.square().mean().sqrt().item()
    assert 0.2 < rms < 5, rms
    again = SPEC.make_inputs(shape, torch.bfloat16, "cpu", 0)
    assert torch.equal(a, again[0]) and torch.equal(b, again[1])


@pytest.mark.parametrize("backend", ["cublas", "eager"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_torch_baselines_on_cpu(backend: str, dtype: torch.dtype) -> None:
    b = registry.backend("matmul", backend)
    assert b.unavailable_reason("cpu") is None
    for shape in SPEC.shapes["quick"]:
        args = SPEC.make_inputs(shape, dtype, "cpu", 1)
        out = SPEC.empty_output(*args).fill_(math.nan)
        result = b.fn(*args, out=out)
        ref = SPEC.reference(*args)
        error = ((result.double() - ref).norm() / ref.norm()).item()
        assert error <= SPEC.tolerance[dtype], (shape, error)
