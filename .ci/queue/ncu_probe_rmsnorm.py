"""ncu of the RMSNorm long-row kernels whose timings are not yet explained (reports/h100/NOTES.md,
Sessions 13-14): CuTe with x staged in shared memory against x in registers at 65536 and 262144
columns (staging is 3.9 % faster at 262144 and 3.9 % slower at 65536), Helion's split_narrow
kernel and quack (run in session 16 at dbe9e3b: runs/ncu-rmsnorm-summary-dbe9e3b.csv).
Launches each once between cudaProfilerStart/Stop, for ``ncu --profile-from-start off``; prints
one PROFILE line per launch, in order, to map the report's kernels to the cases."""

import json

import torch
from tilearena.kernels import registry

from tilearena.dispatch import baked_config

R262 = {"M": 4096, "N": 262144}
R65 = {"M": 8192, "N": 65536}
CASES = [
    (R262, "quack", None),
    (R262, "cute", None),  # baked: x staged, quack's tiling
    (R262, "cute", {"x_staging": "registers"}),
    (R262, "helion", None),  # baked: split_narrow, 8192 x 8 warps
    (R65, "quack", None),
    (R65, "cute", None),  # baked: x in registers
    (R65, "cute", {"x_staging": "smem"}),
    (R65, "helion", None),
]
spec = registry.spec("rmsnorm")
for shape, name, override in CASES:
    args = spec.make_inputs(shape, torch.bfloat16, "cuda", 0)
    out = spec.empty_output(*args)
    b = registry.backend("rmsnorm", name)
    baked = baked_config("rmsnorm", b, args, shape)
    config = {**(baked or {}), **(override or {})} if (baked or override) else None
    kwargs = {"out": out} | ({"config": config} if config else {})
    try:
        b.fn(*args, **kwargs)  # compile and warm outside the profiled range
        torch.cuda.synchronize()
    except Exception as exc:  # report and go on: one failing backend must not end the probe
        print("FAILED", "rmsnorm", shape, name, type(exc).__name__, str(exc)[:200], flush=True)
        continue
    print("PROFILE", "rmsnorm", json.dumps(shape), name, json.dumps(config), flush=True)
    torch.cuda.cudart().cudaProfilerStart()
    b.fn(*args, **kwargs)
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    del args, out
