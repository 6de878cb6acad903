"""Read the SASS of a cubin with the cuobjdump Triton ships, so the check needs no CUDA install
and no GPU."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def cuda_tool(name: str) -> str | None:
    """``name`` from Triton's bundled CUDA binaries, else from PATH."""
    try:
        import triton

        bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    return shutil.which(name)


def sass(cubin: Path) -> str:
    cuobjdump = cuda_tool("cuobjdump")
    assert cuobjdump, "no cuobjdump (Triton bundles one)"
    done = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout
