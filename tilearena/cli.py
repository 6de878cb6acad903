"""The ``tilearena`` command: doctor, bench, tune, report, layout."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# Subcommands contributed by other parts of the package: (module, what it adds).
_PLUGGED = (
    "tilearena.autotune.cli",
    "tilearena.autotune.check",
    "tilearena.autotune.efficiency",
    "tilearena.bench.report",
    "tilearena.bench.timing_check",
    "tilearena.layouts.cli",
)


def _prepare_cpu_only() -> None:
    """Without a GPU, Triton kernels run in its interpreter; it must be chosen before import."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


def _doctor(args: argparse.Namespace) -> int:
    _prepare_cpu_only()
    import torch
    from rich.console import Console
    from rich.table import Table

    from .bench.environment import environment, measure_ceilings
    from .kernels import registry

    console = Console()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = environment(device)
    console.print(
        f"GPU: {env['gpu']}  SMs: {env['sm_count']}  cc: {env['cc']}  driver: {env['driver']}  "
        f"CUDA: {env['cuda']}  torch: {env['torch']}"
    )
    if device == "cuda" and not args.no_ceilings:
        ceilings = measure_ceilings(device)
        sheet = ceilings.get("datasheet") or {}
        console.print(
            f"measured: copy {ceilings['copy_gbps']} GB/s (datasheet {sheet.get('copy_gbps')}), "
            f"bf16 GEMM {ceilings['matmul_bf16_tflops']} TFLOP/s "
            f"(datasheet {sheet.get('matmul_bf16_tflops')})"
        )
    table = Table(title="DSLs and peers")
    table.add_column("package")
    table.add_column("version")
    table.add_column("install")
    hints = {
        "helion": "pip install 'tilearena[helion]'",
        "tilelang": "pip install 'tilearena[tilelang]'",
        "cutlass_dsl": "pip install 'tilearena[cute]'",
        "quack": "pip install 'tilearena[peers]'",
        "liger": "pip install 'tilearena[peers]'",
        "triton": "pip install triton",
    }
    for key in ("triton", "helion", "tilelang", "cutlass_dsl", "quack", "liger"):
        version = env.get(key)
        table.add_row(key, version or "[red]missing[/]", "" if version else hints[key])
    console.print(table)
    for op in registry.ops():
        status = Table(title=f"{op} backends on {device}")
        status.add_column("backend")
        status.add_column("dsl")
        status.add_column("status")
        for b in registry.backends(op):
            reason = b.unavailable_reason(device)
            status.add_row(
                b.name, b.dsl, "[green]ready[/]" if reason is None else f"[yellow]{reason[:100]}[/]"
            )
        console.print(status)
    return 0


def _bench(args: argparse.Namespace) -> int:
    _prepare_cpu_only()
    from rich.console import Console

    from .bench.runner import parse_dtype, run_bench
    from .kernels import registry

    ops = [o for o in args.op.split(",") if o] if args.op else registry.ops()
    if not ops:
        raise ValueError(f"--op: expected comma-separated op names, got {args.op!r}")
    for op in ops:
        registry.spec(op)  # unknown op: a clear ValueError before any work
    backends = [b for b in args.backend.split(",") if b] if args.backend else None
    dtypes = [parse_dtype(d) for d in args.dtype.split(",")]
    console = Console(width=None if sys.stdout.isatty() else 140)
    run_bench(
        ops,
        backends,
        _shape_sets(args.shapes),
        dtypes,
        Path(args.out),
        console,
        write_report=args.report,
        warm_workers=args.warm_workers,
        timing=args.timing,
        budget_s=args.budget,
        isolate=args.isolate,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .autotune.store import TIMING_MODES

    parser = argparse.ArgumentParser(prog="tilearena", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser(
        "doctor", help="GPU, measured ceilings, which DSLs import and how to install the rest"
    )
    doctor.add_argument("--no-ceilings", action="store_true", help="skip the copy/GEMM measurements")
    doctor.set_defaults(run=_doctor)
    bench = sub.add_parser("bench", help="check every backend against float64 and time it")
    bench.add_argument("--op", default="", help="comma-separated ops (default: all)")
    bench.add_argument("--backend", default="", help="comma-separated backends (default: all)")
    bench.add_argument(
        "--shapes",
        default="quick",
        help="shape sets: quick, llama, sweep (comma-separated), or explicit shapes "
        "'M=16,N=4096,K=4096,BT=1;M=1,N=4096,K=4096,BT=1'",
    )
    bench.add_argument("--dtype", default="bf16", help="comma-separated: bf16, fp16, fp32")
    bench.add_argument("--out", default="reports/latest", help="directory for results.json")
    bench.add_argument("--report", action="store_true", help="also write index.html next to results.json")
    bench.add_argument(
        "--warm-workers",
        type=int,
        default=0,
        help="compile every kernel first in this many processes (fills the DSLs' disk caches)",
    )
    bench.add_argument(
        "--timing",
        default="default",
        choices=TIMING_MODES,
        help="steady: long (event-timed) kernels run 200 ms before sampling and are sampled for "
        ">= 100 ms, so compute-bound GEMMs are timed at settled clocks; clean: steady, with the L2 "
        "emptied by reading a buffer, not writing one, so no dirty lines are left for the timed "
        "kernel to write back; hot: clean, with the settling runs queued right before the samples "
        "(the GPU never idles between them); sustained: hot, sampled for 1 s in at most 5000 "
        "samples (graph-timed kernels as replays spanning 1 s); use the tuner's --timing",
    )
    bench.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wall-clock limit: start no shape that the slowest so far would carry past it; the "
        "rows measured are kept and the shapes left are listed in results.json's not_measured",
    )
    bench.add_argument(
        "--isolate",
        action="store_true",
        help="time each backend in a worker process of its own, holding only its inputs (as the "
        "tuner's worker does), rounds still interleaved across backends; a timed kernel that "
        "faults or hangs costs only its row",
    )
    bench.set_defaults(run=_bench)
    for module_name in _PLUGGED:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, "add_parser"):
            before = set(sub.choices)
            module.add_parser(sub)
            # Each subcommand the module adds runs through the module's own run().
            for name in set(sub.choices) - before:
                sub.choices[name].set_defaults(run=module.run)
    return parser


def _shape_sets(text: str) -> list[str | dict[str, int]]:
    """Named sets ("quick,sweep") or explicit shapes ("M=4096,N=8192;M=1,N=4096")."""
    if "=" not in text:
        return [name for name in text.split(",") if name]
    from .kernels.shapes import parse_explicit_shapes

    return list(parse_explicit_shapes(text))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        print(f"tilearena {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path given on the command line that cannot be read or written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"tilearena {args.command}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
