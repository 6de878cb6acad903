"""Shape sets shared by the row-wise ops (RMSNorm, softmax): x[M, N] reduced over N; and the
parser of explicit shapes that the bench and tune commands share."""

from __future__ import annotations

# Tiny shapes the Triton interpreter runs in seconds on a CPU; ragged N on purpose.
ROWWISE_QUICK = (
    {"M": 1, "N": 8},
    {"M": 5, "N": 33},
    {"M": 16, "N": 128},
    {"M": 7, "N": 1000},
    {"M": 3, "N": 4100},
)

# Llama-3 hidden sizes (8B: 4096, 70B: 8192) at token counts from decode (1) to prefill (16384).
ROWWISE_LLAMA = tuple({"M": m, "N": n} for n in (4096, 8192) for m in (1, 16, 128, 1024, 4096, 16384))

# The performance sweep: each large shape moves 256 MiB to 2 GiB per bf16 tensor, so the L2
# cache (50 MB on the H100) holds none of it; then short rows, where launch and reduction
# overheads dominate.
ROWWISE_SWEEP = (
    {"M": 32768, "N": 4096},
    {"M": 32768, "N": 8192},
    {"M": 16384, "N": 32768},
    {"M": 8192, "N": 65536},
    {"M": 4096, "N": 262144},
    {"M": 262144, "N": 256},
    {"M": 262144, "N": 512},
    {"M": 262144, "N": 1024},
)

ROWWISE_SHAPES = {"quick": ROWWISE_QUICK, "llama": ROWWISE_LLAMA, "sweep": ROWWISE_SWEEP}


def parse_explicit_shapes(text: str) -> list[dict[str, int]]:
    """``"M=4096,N=8192;M=1,N=4096"`` -> ``[{"M": 4096, "N": 8192}, {"M": 1, "N": 4096}]``."""
    shapes = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        shape = {}
        for item in part.split(","):
            name, _, value = item.partition("=")
            if not name.strip() or not value.strip().isdigit():
                raise ValueError(f"--shapes: expected DIM=INT pairs like 'M=4096,N=8192', got {item!r}")
            shape[name.strip()] = int(value)
        shapes.append(shape)
    return shapes
