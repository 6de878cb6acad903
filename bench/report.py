"""Self-contained HTML report of ``tilearena bench`` results.

``tilearena report RESULTS.json [MORE.json ...] -o DIR`` writes ``DIR/index.html``: one file with inline
CSS and inline SVG plots that reads correctly from disk with no network and no JavaScript (a few lines
of vanilla JS only add sorting and filtering of tables).

Everything read from a results file is data, never markup: the page is rendered by jinja2 with
autoescaping, matplotlib escapes the text it writes into SVG (and math parsing is switched off so a
``$`` in a backend name is just a dollar sign), the raw results are embedded with ``|tojson``, and a
Content-Security-Policy allows only the page's own script (by hash) and no network at all.

This module must not import torch: reports are built on machines without a GPU.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import math
import re
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import matplotlib as mpl
import numpy
from markupsafe import Markup
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .results import read_json

SCHEMA_VERSION = 1
TEMPLATES_DIR = Path(__file__).with_name("templates")

# Backends written in this project's DSLs; every other backend is a peer or a baseline.
OUR_BACKENDS = ("triton", "helion", "cute", "tilelang")
# The order backends are listed in (and coloured by) when present; unknown names follow, sorted.
KNOWN_BACKENDS = (
    *OUR_BACKENDS,
    "eager",
    "compile",
    "quack",
    "liger",
    "cublas",
    "sdpa_flash",
    "sdpa_cudnn",
    "flex",
    "grouped_mm",
)
EAGER_BACKEND = "eager"

# Used to tell memory-bound from compute-bound ops when the results carry no ceilings at all. LLM
# matmuls sit far above it and norms/softmax/elementwise ops far below, so the exact value hardly matters.
FALLBACK_RIDGE_FLOPS_PER_BYTE = 50.0

# Longest backend or shape text written into a plot; longer text is cut with an ellipsis so that one
# absurd name cannot squash a figure. Tables always show the full text.
PLOT_LABEL_MAX_CHARS = 48

_PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#7f7f7f",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
)


# --------------------------------------------------------------------------------------------------
# The results, normalised: every optional key is resolved here so templates and plots never guess.
# --------------------------------------------------------------------------------------------------


@dataclass
class Row:
    op: str
    backend: str
    dsl: str
    shape: dict[str, Any]
    shape_key: str  # canonical JSON of the shape: how rows of different backends/runs are matched
    shape_label: str
    dtype: str
    ms: float | None
    ms_iqr: float | None
    gbps: float | None
    tflops: float | None
    sol_pct: float | None
    bytes: int | None
    flops: int | None
    rel_err: float | None
    max_abs_err: float | None
    tol: float | None
    ok: bool
    error: str | None
    ours: bool
    timing_method: str | None  # how this row was timed, when the bench recorded it per row
    #: What NVML read while the row was timed ("SM 1425 MHz (1410-1440), 446 W, 65 C,
    #: sw_power_cap"), when the bench recorded it.
    gpu_note: str | None = None
    # Filled in once all rows of the op are known.
    speedup_vs_eager: float | None = None
    speedup_vs_best_peer: float | None = None
    is_best: bool = False
    #: Other rows of this shape were timed by another method (graph replays against events after
    #: an L2 flush): near the 50 us switch the two differed by ~10 us at 64c3713 (NOTES.md).
    mixed_timing: bool = False

    @property
    def ran(self) -> bool:
        return self.ms is not None

    @property
    def status(self) -> str:
        if self.ok:
            return "ok" if self.ran else "not timed"
        return "wrong result" if self.ran else "did not run"

    @property
    def status_class(self) -> str:
        return {"ok": "ok", "not timed": "not-run", "wrong result": "failed", "did not run": "not-run"}[
            self.status
        ]

    @property
    def intensity(self) -> float | None:
        """Arithmetic intensity in flop/byte."""
        if self.flops is None or not self.bytes:
            return None
        return self.flops / self.bytes

    @property
    def match_key(self) -> tuple[str, str, str, str]:
        return (self.op, self.backend, self.shape_key, self.dtype)


@dataclass
class Ceilings:
    copy_gbps: float | None
    matmul_tflops: float | None
    datasheet_copy_gbps: float | None
    datasheet_matmul_tflops: float | None
    datasheet_name: str | None

    def bandwidth_gbps(self) -> float | None:
        return self.copy_gbps if self.copy_gbps is not None else self.datasheet_copy_gbps

    def compute_tflops(self) -> float | None:
        return self.matmul_tflops if self.matmul_tflops is not None else self.datasheet_matmul_tflops

    def ridge(self) -> float:
        """Arithmetic intensity (flop/byte) where the bandwidth roof meets the compute roof."""
        bandwidth, compute = self.bandwidth_gbps(), self.compute_tflops()
        if not bandwidth or not compute:
            return FALLBACK_RIDGE_FLOPS_PER_BYTE
        return compute * 1e12 / (bandwidth * 1e9)


@dataclass
class Plot:
    """One plot on the page: trusted SVG markup made by matplotlib from escaped text, and its caption."""

    svg: Markup
    caption: str


@dataclass
class OpSection:
    name: str
    anchor: str
    bound: str  # "memory" or "compute"
    bound_note: str
    rows: list[Row]
    plots: list[Plot]
    error_heatmap: Plot | None


@dataclass
class TimingCheckJob:
    """One job of a ``tilearena timing-check`` run: per method, its median, the spread between
    rounds, the median within-window spread (IQR over median) and the rounds it had."""

    backend: str
    shape: str
    methods: list[tuple[str, float | None, float | None, float | None, int]]


@dataclass
class TimingCheck:
    """A ``tilearena timing-check`` JSON file on the page: its jobs and the drift plot."""

    anchor: str
    source: str
    op: str
    timing: str
    method_names: list[str]
    jobs: list[TimingCheckJob]
    plot: Plot | None


@dataclass
class Run:
    index: int
    label: str
    anchor: str
    env: dict[str, Any]
    ceilings: Ceilings
    rows: list[Row]
    ops: list[OpSection] = field(default_factory=list)
    agreement: list[Plot] = field(default_factory=list)
    tuning: list[Plot] = field(default_factory=list)
    #: Why the run stopped early (``tilearena bench --budget``), and the shapes it left, as text.
    stopped: str = ""
    not_measured: list[str] = field(default_factory=list)


def _as_float(value: Any) -> float | None:
    """A finite float, or None for anything else (null, NaN, strings, booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _as_int(value: Any) -> int | None:
    number = _as_float(value)
    return None if number is None else int(number)


def _as_text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def _as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def shape_label(shape: Any) -> str:
    if isinstance(shape, Mapping):
        return " ".join(f"{key}={value}" for key, value in shape.items()) or "scalar"
    return _as_text(shape, "?")


def shape_key(shape: Any) -> str:
    try:
        return json.dumps(shape, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(shape)


def _normalize_row(raw: Mapping[str, Any]) -> Row:
    shape = raw.get("shape")
    ms = _as_float(raw.get("ms"))
    nbytes = _as_int(raw.get("bytes"))
    flops = _as_int(raw.get("flops"))
    gbps = _as_float(raw.get("gbps"))
    tflops = _as_float(raw.get("tflops"))
    # Partial results may leave out either the problem's size or the throughputs; each follows from
    # the other and the time.
    if nbytes is None and ms and gbps is not None:
        nbytes = round(gbps * ms * 1e6)
    if flops is None and ms and tflops is not None:
        flops = round(tflops * ms * 1e9)
    if gbps is None and ms and nbytes:
        gbps = nbytes / ms / 1e6
    if tflops is None and ms and flops:
        tflops = flops / ms / 1e9
    backend = _as_text(raw.get("backend"), "?")
    ours = raw.get("ours")
    timing_method = raw.get("timing_method")
    return Row(
        op=_as_text(raw.get("op"), "?"),
        backend=backend,
        dsl=_as_text(raw.get("dsl"), ""),
        shape=_as_dict(shape),
        shape_key=shape_key(shape),
        shape_label=shape_label(shape),
        dtype=_as_text(raw.get("dtype"), "?"),
        ms=ms,
        ms_iqr=_as_float(raw.get("ms_iqr")),
        gbps=gbps,
        tflops=tflops,
        sol_pct=_as_float(raw.get("sol_pct")),
        bytes=nbytes,
        flops=flops,
        rel_err=_as_float(raw.get("rel_err")),
        max_abs_err=_as_float(raw.get("max_abs_err")),
        tol=_as_float(raw.get("tol")),
        ok=raw.get("ok") is True,
        error=None if raw.get("error") is None else _as_text(raw.get("error")),
        # The bench says which backends are ours; older files do not, and the name decides.
        ours=ours if isinstance(ours, bool) else backend in OUR_BACKENDS,
        timing_method=None if timing_method is None else _as_text(timing_method),
        gpu_note=_gpu_note(raw.get("gpu_state")),
    )


def _gpu_note(raw: Any) -> str | None:
    """One line on the GPU's state while a row was timed (``bench.gpu_state``), or None."""
    state = _as_dict(raw)
    clock = _as_float(state.get("sm_clock_mhz"))
    if clock is None:
        return None
    parts = [f"SM {clock:.0f} MHz"]
    span = [_as_float(v) for v in _as_list(state.get("sm_clock_range_mhz"))]
    if len(span) == 2 and None not in span:
        parts[0] += f" ({span[0]:.0f}-{span[1]:.0f})"
    power, celsius = _as_float(state.get("power_w")), _as_float(state.get("temperature_c"))
    if power is not None:
        parts.append(f"{power:.0f} W")
    if celsius is not None:
        parts.append(f"{celsius:.0f} C")
    reasons = [_as_text(r)[:40] for r in _as_list(state.get("clock_reasons"))[:8]]
    if reasons:
        parts.append("clock held by " + " + ".join(reasons))
    return ", ".join(parts)


def _normalize_ceilings(raw: Mapping[str, Any]) -> Ceilings:
    datasheet = _as_dict(raw.get("datasheet"))
    name = datasheet.get("name")
    return Ceilings(
        copy_gbps=_as_float(raw.get("copy_gbps")),
        matmul_tflops=_as_float(raw.get("matmul_bf16_tflops")),
        datasheet_copy_gbps=_as_float(datasheet.get("copy_gbps")),
        datasheet_matmul_tflops=_as_float(datasheet.get("matmul_bf16_tflops")),
        datasheet_name=None if name is None else _as_text(name),
    )


def check_schema(results: Any, source: str = "results") -> None:
    """Raise ValueError when ``results`` is not something this report can read."""
    if not isinstance(results, Mapping):
        raise ValueError(f"{source}: expected a JSON object, got {type(results).__name__}")
    schema = results.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise ValueError(f"{source}: results schema {schema!r} is not supported (expected {SCHEMA_VERSION})")
    if not isinstance(results.get("rows", []), list):
        raise ValueError(f"{source}: 'rows' must be a list")


def _run_label(env: Mapping[str, Any], index: int) -> str:
    parts = [f"run {index + 1}"]
    for key in ("gpu", "commit", "date"):
        value = env.get(key)
        if value is None or value == "":
            continue
        text = _as_text(value)
        parts.append(text[:10] if key == "commit" else text)
    return " · ".join(parts)


# --------------------------------------------------------------------------------------------------
# Derived numbers: speedups, the best backend per shape, memory- or compute-bound.
# --------------------------------------------------------------------------------------------------


def _mark_speedups_and_best(rows: Sequence[Row]) -> None:
    """Fill each row's speedups over eager and over the best peer, and mark the fastest correct row.

    Only correct, timed rows are compared: a fast wrong answer is not a win.
    """
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.op, row.shape_key, row.dtype), []).append(row)
    for group in groups.values():
        timed = [row for row in group if row.ok and row.ms]
        if not timed:
            continue
        eager = [row.ms for row in timed if row.backend == EAGER_BACKEND]
        peers = [row.ms for row in timed if not row.ours]
        eager_ms = min(eager) if eager else None
        best_peer_ms = min(peers) if peers else None
        best_ms = min(row.ms for row in timed if row.ms)
        methods = {row.timing_method for row in timed if row.timing_method}
        for row in timed:
            assert row.ms
            row.speedup_vs_eager = eager_ms / row.ms if eager_ms else None
            row.speedup_vs_best_peer = best_peer_ms / row.ms if best_peer_ms else None
            row.is_best = row.ms == best_ms
            row.mixed_timing = len(methods) > 1


def _classify_bound(rows: Sequence[Row], ceilings: Ceilings) -> tuple[str, str]:
    """("memory" | "compute", a sentence saying why) for one op."""
    intensities = [row.intensity for row in rows if row.intensity is not None]
    ridge = ceilings.ridge()
    if not intensities:
        return "memory", "no flop counts: shown as memory-bound (GB/s)"
    median = statistics.median(intensities)
    bound = "compute" if median > ridge else "memory"
    relation = ">" if bound == "compute" else "≤"
    return bound, (
        f"{bound}-bound: median arithmetic intensity {fmt_num(median)} flop/B {relation} "
        f"ridge point {fmt_num(ridge)} flop/B"
    )


def _backend_order(backends: Iterable[str]) -> list[str]:
    present = set(backends)
    known = [name for name in KNOWN_BACKENDS if name in present]
    return known + sorted(present - set(known))


def _shape_order(rows: Sequence[Row]) -> list[tuple[str, str, str]]:
    """(shape_key, dtype, label) of an op's shapes, smallest problem first."""
    size: dict[tuple[str, str], int] = {}
    labels: dict[tuple[str, str], str] = {}
    for row in rows:
        key = (row.shape_key, row.dtype)
        size[key] = max(size.get(key, 0), row.bytes or 0)
        labels[key] = row.shape_label
    multiple_dtypes = len({dtype for _, dtype in size}) > 1
    ordered = sorted(size, key=lambda key: (size[key], labels[key], key[1]))
    return [
        (key, dtype, f"{labels[(key, dtype)]} {dtype}" if multiple_dtypes else labels[(key, dtype)])
        for key, dtype in ordered
    ]


# --------------------------------------------------------------------------------------------------
# Plots: matplotlib's object API (no pyplot, so no global backend is switched and nothing is cached
# between reports) rendered straight to SVG text.
# --------------------------------------------------------------------------------------------------

_PLOT_RC = {
    "svg.fonttype": "none",  # text stays text: small, selectable, and escaped by matplotlib
    "font.family": "sans-serif",
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8.0,
}

# Matplotlib writes no script, event handler or external reference (only "#id" links, and PNG data for
# a colour bar's gradient); if one ever showed up, refuse to embed it.
_UNSAFE_SVG = re.compile(
    r"<\s*script|<\s*foreignObject|\son\w+\s*=|(?:href|src)\s*=\s*[\"'](?!#|data:image/png;base64,)", re.I
)


def _plot_text(text: str) -> str:
    """Text from a results file made safe for a matplotlib label: cut to length, "$" escaped.

    Matplotlib reads text between two "$" as mathtext (which can fail to parse, or typeset a name as a
    formula); an escaped "\\$" is drawn as a plain dollar sign. Math parsing itself stays on, because the
    tick labels of log axes are mathtext.
    """
    if len(text) > PLOT_LABEL_MAX_CHARS:
        text = text[: PLOT_LABEL_MAX_CHARS - 1] + "…"
    return text.replace("$", r"\$")


def strip_svg_prolog(svg: str) -> str:
    """The bare <svg> element: no XML declaration, DOCTYPE (it names an external DTD), metadata, comments."""
    start = svg.find("<svg")
    if start < 0:
        raise ValueError("not an SVG document")
    svg = svg[start:]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.S)
    return svg.strip()


_SVG_ID = re.compile(r'(?<=\s)id="([^"]+)"')


def scope_svg_ids(svg: str, prefix: str) -> str:
    """Prefix every id of an SVG (and the references to them) so many SVGs can share one HTML page.

    Matplotlib numbers its groups ("axes_1", "line2d_3") afresh in every figure; inline, those would
    collide, and a clip path or marker could resolve to another figure's.
    """
    mapping = {name: f"{prefix}-{name}" for name in _SVG_ID.findall(svg)}
    if not mapping:
        return svg
    svg = _SVG_ID.sub(lambda match: f'id="{mapping[match.group(1)]}"', svg)
    svg = re.sub(r"url\(#([^)\s]+)\)", lambda m: f"url(#{mapping.get(m.group(1), m.group(1))})", svg)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{mapping.get(m.group(1), m.group(1))}"', svg)


def _render_svg(figure: Figure, salt: str) -> Markup:
    buffer = io.StringIO()
    # Matplotlib names clip paths and markers by a salted hash; a salt per figure keeps the ids of
    # several inline SVGs on one page distinct and the output reproducible (no random salt, no date).
    with mpl.rc_context({**_PLOT_RC, "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = scope_svg_ids(strip_svg_prolog(buffer.getvalue()), salt)
    if _UNSAFE_SVG.search(svg):
        raise RuntimeError("matplotlib produced SVG with active content; refusing to embed it")
    return Markup(svg)


def _new_figure(width: float = 6.4, height: float = 3.6) -> Figure:
    with mpl.rc_context(_PLOT_RC):
        # No layout engine: savefig's tight bounding box already makes room for outside legends, and
        # constrained layout would double the drawing time of every plot.
        return Figure(figsize=(width, height))


def _backend_style(backend: str, colors: Mapping[str, str], ours: bool) -> dict[str, Any]:
    return {
        "color": colors.get(backend, "#444444"),
        "marker": "o" if ours else "s",
        "linestyle": "-" if ours else "--",
        "markersize": 4.5,
        "linewidth": 1.4,
    }


def _is_ours(backend: str, rows: Sequence[Row]) -> bool:
    return any(row.ours for row in rows if row.backend == backend)


def _legend_outside(axes: Any, handles: list[Any], labels: list[str]) -> None:
    # Handles and labels are passed explicitly: matplotlib drops automatic labels that start with "_",
    # and a backend name may.
    if handles:
        axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def plot_sol_vs_size(op: str, rows: Sequence[Row], colors: Mapping[str, str], salt: str) -> Markup | None:
    """% of speed of light against problem size (bytes moved), one line per backend."""
    with mpl.rc_context(_PLOT_RC):
        figure = _new_figure()
        axes = figure.add_subplot()
        handles, labels = [], []
        highest = 100.0
        for backend in _backend_order(row.backend for row in rows):
            points = sorted(
                (row.bytes, row.sol_pct)
                for row in rows
                if row.backend == backend and row.ok and row.bytes and row.sol_pct is not None
            )
            if not points:
                continue
            sizes, percents = zip(*points)
            (line,) = axes.plot(sizes, percents, **_backend_style(backend, colors, _is_ours(backend, rows)))
            handles.append(line)
            labels.append(_plot_text(backend))
            highest = max(highest, *percents)
        if not handles:
            return None
        axes.axhline(100.0, color="black", linewidth=0.8, linestyle=":")
        axes.set_xscale("log")
        # Ticks at 1, 2 and 5 of each decade, labelled in bytes: one or two decades of sizes would
        # otherwise get one label, or overlapping minor ones.
        axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: fmt_bytes(value)))
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_ylim(0, highest * 1.08)
        axes.set_xlabel("problem size (bytes moved)")
        axes.set_ylabel("% of speed of light")
        axes.set_title(_plot_text(op) + ": % of speed of light by size")
        _legend_outside(axes, handles, labels)
        return _render_svg(figure, salt)


def plot_roofline(
    op: str, rows: Sequence[Row], ceilings: Ceilings, colors: Mapping[str, str], salt: str
) -> Markup | None:
    """Attained TFLOP/s against arithmetic intensity, every timed row a point, under the roofs."""
    points = [
        (row, row.intensity, row.tflops)
        for row in rows
        if row.ran and row.intensity and row.tflops and row.tflops > 0
    ]
    if not points:
        return None
    with mpl.rc_context(_PLOT_RC):
        figure = _new_figure()
        axes = figure.add_subplot()
        handles, labels = [], []
        for backend in _backend_order(row.backend for row, _, _ in points):
            style = _backend_style(backend, colors, _is_ours(backend, rows))
            mine = [(x, y, row.ok) for row, x, y in points if row.backend == backend]
            correct = [(x, y) for x, y, ok in mine if ok]
            wrong = [(x, y) for x, y, ok in mine if not ok]
            if correct:
                xs, ys = zip(*correct)
                axes.scatter(xs, ys, color=style["color"], marker=style["marker"], s=22, zorder=3)
            if wrong:
                xs, ys = zip(*wrong)
                axes.scatter(xs, ys, color=style["color"], marker="x", s=40, zorder=3)
            handles.append(Line2D([], [], color=style["color"], marker=style["marker"], linestyle=""))
            labels.append(_plot_text(backend))
        if any(not row.ok for row, _, _ in points):
            handles.append(Line2D([], [], color="black", marker="x", linestyle=""))
            labels.append("wrong result")

        intensities = [x for _, x, _ in points]
        ridges = [ceilings.ridge()]
        low, high = min(intensities) / 4, max(*intensities, *ridges) * 4
        grid = [low * (high / low) ** (i / 200) for i in range(201)]
        roofs = [
            ("measured", ceilings.copy_gbps, ceilings.matmul_tflops, "-", "black"),
            ("datasheet", ceilings.datasheet_copy_gbps, ceilings.datasheet_matmul_tflops, "--", "#888888"),
        ]
        for name, bandwidth, compute, linestyle, color in roofs:
            if bandwidth is None and compute is None:
                continue
            roof = [
                min(
                    bandwidth * x / 1e3 if bandwidth is not None else math.inf,
                    compute if compute is not None else math.inf,
                )
                for x in grid
            ]
            (line,) = axes.plot(grid, roof, linestyle=linestyle, color=color, linewidth=1.2, zorder=2)
            handles.append(line)
            parts = [
                f"{bandwidth:.0f} GB/s" if bandwidth is not None else "",
                f"{compute:.0f} TFLOP/s" if compute is not None else "",
            ]
            labels.append(f"{name}: " + ", ".join(part for part in parts if part))
        if not any(bandwidth is not None or compute is not None for _, bandwidth, compute, _, _ in roofs):
            axes.text(
                0.02,
                0.97,
                "no ceilings in the results: no roofs",
                transform=axes.transAxes,
                va="top",
                fontsize=8,
                color="#666666",
            )
        axes.set_xscale("log")
        axes.set_yscale("log")
        # The x range always reaches the ridge point: intensities of one op often share a decade,
        # which alone would leave the axis without a labelled tick.
        axes.set_xlim(low, high)
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.yaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("arithmetic intensity (flop/byte)")
        axes.set_ylabel("attained TFLOP/s")
        axes.set_title(_plot_text(op) + ": roofline")
        _legend_outside(axes, handles, labels)
        return _render_svg(figure, salt)


def _heatmap(axes: Any, matrix: list[list[float]], colormap: Any, norm: Any) -> Any:
    """Cells centred on integer positions, first row on top, NaN cells in the colormap's "bad" colour.

    pcolormesh rather than imshow: the cells stay vector shapes instead of an embedded PNG.
    """
    rows, columns = len(matrix), len(matrix[0])
    image = axes.pcolormesh(
        [x - 0.5 for x in range(columns + 1)],
        [y - 0.5 for y in range(rows + 1)],
        numpy.ma.masked_invalid(numpy.array(matrix, dtype=float)),
        cmap=colormap,
        norm=norm,
        edgecolors="white",
        linewidth=0.5,
    )
    axes.set_xlim(-0.5, columns - 0.5)
    axes.set_ylim(rows - 0.5, -0.5)
    return image


def _log_range(values: Sequence[float]) -> tuple[float, float]:
    """Limits of a logarithmic colour scale that spans at least a decade.

    Without the minimum span, values that differ by a fraction of a percent would be drawn as the two
    ends of the scale, and look as different as 1e-6 and 1e-2.
    """
    if not values:
        return 1e-6, 1e-2
    low, high = min(values), max(values)
    if high < low * 10:
        middle = math.sqrt(low * high)
        low, high = middle / math.sqrt(10), middle * math.sqrt(10)
    return low, high


def _error_cell_text(row: Row | None) -> tuple[str, str]:
    """(text, kind) of one heat-map cell; kind is "ok", "failed", "missing" or "unchecked"."""
    if row is None:
        return "", "missing"
    if not row.ok and not row.ran and row.rel_err is None:
        return "n/a", "missing"
    if not row.ok:
        return ("✗ " + (f"{row.rel_err:.1e}" if row.rel_err is not None else "fail")), "failed"
    if row.rel_err is None:
        return "—", "unchecked"
    return f"{row.rel_err:.1e}", "ok"


def plot_error_heatmap(op: str, rows: Sequence[Row], salt: str) -> Markup | None:
    """Relative error, backend x shape; failures crossed and outlined in red, tolerance in the title."""
    backends = _backend_order(row.backend for row in rows)
    shapes = _shape_order(rows)
    if not backends or not shapes:
        return None
    cells = {(row.backend, row.shape_key, row.dtype): row for row in rows}
    floor = 1e-12  # an exact match (0 error) still needs a colour on a log scale
    values = [max(row.rel_err, floor) for row in rows if row.rel_err is not None]
    tolerances = sorted({row.tol for row in rows if row.tol is not None})
    with mpl.rc_context(_PLOT_RC):
        width = min(12.0, 2.6 + 1.25 * len(shapes))
        figure = _new_figure(width, 1.3 + 0.36 * len(backends))
        axes = figure.add_subplot()
        axes.grid(False)
        # The colour scale reaches past the tolerance so that its line on the colour bar is visible.
        low, high = _log_range([*values, *tolerances, *(tol * 3 for tol in tolerances)])
        norm = LogNorm(vmin=low, vmax=high)
        colormap = mpl.colormaps["viridis"]
        matrix = [[math.nan] * len(shapes) for _ in backends]
        for i, backend in enumerate(backends):
            for j, (key, dtype, _) in enumerate(shapes):
                row = cells.get((backend, key, dtype))
                if row is not None and row.rel_err is not None:
                    matrix[i][j] = max(row.rel_err, floor)
        colormap = colormap.with_extremes(bad="#e6e6e6")
        image = _heatmap(axes, matrix, colormap, norm)
        for i, backend in enumerate(backends):
            for j, (key, dtype, _) in enumerate(shapes):
                row = cells.get((backend, key, dtype))
                text, kind = _error_cell_text(row)
                value = matrix[i][j]
                dark = not math.isnan(value) and norm(value) < 0.55
                color = {"failed": "#b00020", "missing": "#555555"}.get(kind, "white" if dark else "black")
                if kind == "failed":
                    axes.add_patch(
                        Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#d00000", linewidth=2.2)
                    )
                    color = "white" if dark else "#b00020"
                axes.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color=color,
                    fontweight="bold" if kind == "failed" else "normal",
                )
        axes.set_xticks(
            range(len(shapes)), [_plot_text(label) for _, _, label in shapes], rotation=20, ha="right"
        )
        axes.set_yticks(range(len(backends)), [_plot_text(backend) for backend in backends])
        colorbar = figure.colorbar(image, ax=axes, label="relative error (red line: tolerance)")
        for tol in tolerances:
            colorbar.ax.axhline(tol, color="#d00000", linewidth=1.5)
        tol_text = ", ".join(f"{tol:.0e}" for tol in tolerances) if tolerances else "not recorded"
        axes.set_title(f"{_plot_text(op)}: relative error (tolerance {tol_text}; ✗ = failed)")
        return _render_svg(figure, salt)


def _agreement_title(entry: Mapping[str, Any]) -> str:
    op, dtype = _as_text(entry.get("op"), "?"), _as_text(entry.get("dtype"))
    return f"{op} {shape_label(entry.get('shape'))} {dtype}".strip()


def plot_agreement(entry: Mapping[str, Any], salt: str) -> Markup | None:
    """Pairwise relative difference of the outputs of backends run on the same inputs."""
    backends = [_as_text(name, "?") for name in _as_list(entry.get("backends"))]
    matrix_raw = _as_list(entry.get("matrix"))
    if not backends or len(matrix_raw) != len(backends):
        return None
    matrix: list[list[float | None]] = []
    for raw_row in matrix_raw:
        cells = _as_list(raw_row)
        if len(cells) != len(backends):
            return None
        matrix.append([_as_float(cell) for cell in cells])
    floor = 1e-12
    finite = [max(v, floor) for row in matrix for v in row if v is not None and v > 0]
    low, high = _log_range(finite)
    with mpl.rc_context(_PLOT_RC):
        side = 1.6 + 0.55 * len(backends)
        figure = _new_figure(side + 1.4, side)
        axes = figure.add_subplot()
        axes.grid(False)
        norm = LogNorm(vmin=low, vmax=high)
        shown = [[math.nan if v is None or v <= 0 else max(v, floor) for v in row] for row in matrix]
        colormap = mpl.colormaps["magma_r"].with_extremes(bad="#f2f2f2")
        image = _heatmap(axes, shown, colormap, norm)
        axes.set_aspect("equal")
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                text = "—" if value is None else ("0" if value == 0 else f"{value:.0e}")
                dark = value is not None and value > 0 and norm(max(value, floor)) > 0.55
                axes.text(
                    j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black"
                )
        labels = [_plot_text(name) for name in backends]
        axes.set_xticks(range(len(backends)), labels, rotation=35, ha="right")
        axes.set_yticks(range(len(backends)), labels)
        figure.colorbar(image, ax=axes, label="relative difference")
        axes.set_title(_plot_text(_agreement_title(entry)))
        return _render_svg(figure, salt)


def plot_tuning(
    op: str, entries: Sequence[Mapping[str, Any]], colors: Mapping[str, str], salt: str
) -> Markup | None:
    """Best time found against tuning time, one curve per (backend, shape, dtype)."""
    with mpl.rc_context(_PLOT_RC):
        figure = _new_figure()
        axes = figure.add_subplot()
        handles, labels = [], []
        several_dtypes = len({_as_text(entry.get("dtype")) for entry in entries}) > 1
        for index, entry in enumerate(entries):
            points = []
            configs = None
            for step in _as_list(entry.get("log")):
                step = _as_dict(step)
                seconds, best = _as_float(step.get("t_s")), _as_float(step.get("best_ms"))
                if seconds is not None and best is not None:
                    points.append((seconds, best))
                    configs = _as_int(step.get("configs_tried"))
            if not points:
                continue
            points.sort()
            backend = _as_text(entry.get("backend"), "?")
            seconds, best = zip(*points)
            color = colors.get(backend, _PALETTE[index % len(_PALETTE)])
            (line,) = axes.step(seconds, best, where="post", color=color, marker=".", linewidth=1.3)
            handles.append(line)
            label = f"{backend} {shape_label(entry.get('shape'))}"
            if several_dtypes:
                label += f" {_as_text(entry.get('dtype'))}"
            if configs is not None:
                label += f" ({configs} configs)"
            labels.append(_plot_text(label))
        if not handles:
            return None
        axes.set_xlabel("tuning time (s)")
        axes.set_ylabel("best time found (ms)")
        axes.set_title(_plot_text(op) + ": autotuner convergence")
        _legend_outside(axes, handles, labels)
        return _render_svg(figure, salt)


def _deciles(series: Sequence[float]) -> list[float] | None:
    """Each tenth of a window's samples (in the order they ran) as its mean over the window's
    median, or None for a window too short to cut in ten or with no positive median."""
    if len(series) < 10:
        return None
    middle = statistics.median(series)
    if not middle > 0:
        return None
    n = len(series)
    return [statistics.fmean(series[i * n // 10 : (i + 1) * n // 10]) / middle for i in range(10)]


#: How many jobs a timing check's drift plot draws (one small panel each).
TIMING_CHECK_MAX_PANELS = 12


def plot_window_drift(entries: Sequence[Mapping[str, Any]], salt: str) -> Markup | None:
    """One panel per job: each kept window's samples by decile, over the window's median, a colour
    per method.  A flat line is a steady window; a slope is a clock that moved while it ran."""
    panels = []
    for entry in entries[:TIMING_CHECK_MAX_PANELS]:
        methods = [m for m in _as_list(entry.get("methods")) if isinstance(m, str)][:2]
        # "default" is the run's --timing mode; the other method is that mode with its options on top.
        base = _as_text(entry.get("timing"), "default")
        lines = []
        for method_index, method in enumerate(methods):
            label = f"{method} (--timing {base})" if method == "default" else f"{method} (on {base})"
            for series in _as_list(_as_dict(entry.get(method)).get("series_ms")):
                values = [v for v in (_as_float(x) for x in _as_list(series)) if v is not None]
                profile = _deciles(values)
                if profile is not None:
                    lines.append((method_index, label, profile))
        if lines:
            title = f"{_as_text(entry.get('backend'), '?')} {shape_label(entry.get('shape'))}"
            panels.append((title, lines))
    if not panels:
        return None
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    with mpl.rc_context(_PLOT_RC):
        figure = _new_figure(3.0 * columns, 2.2 * rows)
        handles: dict[str, Any] = {}
        for index, (title, lines) in enumerate(panels):
            axes = figure.add_subplot(rows, columns, index + 1)
            for method_index, method, profile in lines:
                color = "#7f7f7f" if method_index == 0 else _PALETTE[0]
                (line,) = axes.plot(range(1, 11), profile, color=color, marker=".", linewidth=1.1)
                handles.setdefault(_plot_text(method), line)
            axes.axhline(1.0, color="#bbbbbb", linewidth=0.6)
            axes.set_title(_plot_text(title), fontsize=8)
            axes.set_xticks([1, 5, 10])
            if index % columns == 0:
                axes.set_ylabel("decile / median")
            if index >= (rows - 1) * columns:
                axes.set_xlabel("decile of the window")
        figure.subplots_adjust(hspace=0.6, wspace=0.35)
        figure.legend(list(handles.values()), list(handles), loc="upper center", ncol=2, frameon=False)
        return _render_svg(figure, salt)


def check_timing_check(raw: Any, source: str = "timing check") -> None:
    """Raise ValueError when ``raw`` is not the JSON that ``tilearena timing-check --out`` writes."""
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{source}: expected a non-empty JSON list of timing-check jobs")
    for index, entry in enumerate(raw):
        methods = entry.get("methods") if isinstance(entry, Mapping) else None
        if not (isinstance(methods, list) and len(methods) == 2 and all(isinstance(m, str) for m in methods)):
            raise ValueError(f"{source}: job {index + 1} has no 'methods' pair (is it a timing-check file?)")


def build_timing_check(raw: list[Any], index: int, source: str) -> TimingCheck:
    """The page's section for one timing-check file (checked with ``check_timing_check``)."""
    jobs = []
    for entry in raw:
        methods = []
        for method in entry["methods"]:
            stats = _as_dict(entry.get(method))
            window = [v for v in (_as_float(x) for x in _as_list(stats.get("window_iqr"))) if v is not None]
            methods.append(
                (
                    _as_text(method),
                    _as_float(stats.get("median_ms")),
                    _as_float(stats.get("spread")),
                    statistics.median(window) if window else None,
                    len(_as_list(stats.get("samples_ms"))),
                )
            )
        backend = _as_text(entry.get("backend"), "?")
        jobs.append(TimingCheckJob(backend, shape_label(entry.get("shape")), methods))
    first = raw[0]
    svg = plot_window_drift(raw, f"timing{index}")
    names = [_as_text(m) for m in first["methods"]]
    caption = f"within-window drift by decile ({names[0]} grey, {names[1]} blue), every kept series"
    if len(raw) > TIMING_CHECK_MAX_PANELS:
        caption += f" of the first {TIMING_CHECK_MAX_PANELS} of {len(raw)} jobs (the table has them all)"
    return TimingCheck(
        anchor=f"timing-check-{index}",
        source=source,
        op=_as_text(first.get("op"), "?"),
        timing=_as_text(first.get("timing"), "default"),
        method_names=names,
        jobs=jobs,
        plot=Plot(svg, caption) if svg is not None else None,
    )


# --------------------------------------------------------------------------------------------------
# Page model
# --------------------------------------------------------------------------------------------------


def _colors_for(backends: Iterable[str]) -> dict[str, str]:
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(_backend_order(backends))}


def _build_run(results: Mapping[str, Any], index: int) -> Run:
    env = _as_dict(results.get("env"))
    rows = [_normalize_row(raw) for raw in _as_list(results.get("rows")) if isinstance(raw, Mapping)]
    _mark_speedups_and_best(rows)
    ceilings = _normalize_ceilings(_as_dict(results.get("ceilings")))
    run = Run(
        index=index,
        label=_run_label(env, index),
        anchor=f"run{index + 1}",
        env=env,
        ceilings=ceilings,
        rows=rows,
    )
    left = _as_dict(results.get("not_measured"))
    if left:
        run.stopped = _as_text(left.get("reason"), "stopped early")
        for entry in _as_list(left.get("shapes")):
            entry = _as_dict(entry)
            shape = _as_dict(entry.get("shape"))
            dims = "x".join(_as_text(shape[k]) for k in shape)
            run.not_measured.append(
                f"{_as_text(entry.get('op'))} {dims} {_as_text(entry.get('dtype'))}".strip()
            )
    colors = _colors_for(row.backend for row in rows)
    ops: list[str] = []
    for row in rows:
        if row.op not in ops:
            ops.append(row.op)
    for op_index, op in enumerate(ops):
        op_rows = [row for row in rows if row.op == op]
        bound, note = _classify_bound(op_rows, ceilings)
        shape_rank = {(key, dtype): rank for rank, (key, dtype, _) in enumerate(_shape_order(op_rows))}
        backend_rank = {name: rank for rank, name in enumerate(_backend_order(r.backend for r in op_rows))}
        op_rows.sort(key=lambda r: (shape_rank[(r.shape_key, r.dtype)], backend_rank[r.backend]))
        salt = f"{run.anchor}-op{op_index}"
        plots = []
        sol = plot_sol_vs_size(op, op_rows, colors, salt + "-sol")
        if sol is not None:
            plots.append(Plot(sol, f"{op}: % of speed of light against problem size"))
        roofline = plot_roofline(op, op_rows, ceilings, colors, salt + "-roof")
        if roofline is not None:
            plots.append(Plot(roofline, f"{op}: roofline, every timed row a point"))
        heatmap = plot_error_heatmap(op, op_rows, salt + "-err")
        run.ops.append(
            OpSection(
                name=op,
                anchor=f"{run.anchor}-op{op_index}",
                bound=bound,
                bound_note=note,
                rows=op_rows,
                plots=plots,
                error_heatmap=Plot(heatmap, f"{op}: relative error by backend and shape")
                if heatmap
                else None,
            )
        )
    for entry_index, raw in enumerate(_as_list(results.get("agreement"))):
        if not isinstance(raw, Mapping):
            continue
        svg = plot_agreement(raw, f"{run.anchor}-agree{entry_index}")
        if svg is not None:
            run.agreement.append(Plot(svg, _agreement_title(raw)))
    tuning_by_op: dict[str, list[Mapping[str, Any]]] = {}
    for raw in _as_list(results.get("tuning")):
        if isinstance(raw, Mapping):
            tuning_by_op.setdefault(_as_text(raw.get("op"), "?"), []).append(raw)
    for op_index, (op, entries) in enumerate(tuning_by_op.items()):
        svg = plot_tuning(op, entries, colors, f"{run.anchor}-tune{op_index}")
        if svg is not None:
            run.tuning.append(Plot(svg, f"{op}: best time found against tuning time"))
    return run


@dataclass
class ProvenanceLine:
    label: str
    values: list[str]


def _fmt_plain(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return _as_text(value)


def _timing_text(timing: Any) -> str:
    timing = _as_dict(timing)
    if not timing:
        return "—"
    parts = []
    if timing.get("method") is not None:
        parts.append(_as_text(timing["method"]))
    if timing.get("l2") is not None:
        parts.append(f"L2 {_as_text(timing['l2'])}")
    repeats = timing.get("repeats")
    if isinstance(repeats, (int, float)) and not isinstance(repeats, bool):
        parts.append(f"{_fmt_plain(repeats)} repeats")
    elif repeats is not None:
        parts.append(f"repeats: {_fmt_plain(repeats)}")
    if timing.get("warmup_ms") is not None:
        parts.append(f"{_fmt_plain(timing['warmup_ms'])} ms warm-up")
    known = {"method", "l2", "repeats", "warmup_ms"}
    parts += [f"{key}={_fmt_plain(value)}" for key, value in timing.items() if key not in known]
    return ", ".join(parts)


def _ceiling_text(measured: float | None, datasheet: float | None, unit: str) -> str:
    if measured is None and datasheet is None:
        return "—"
    measured_text = f"{measured:,.0f} {unit} measured" if measured is not None else "not measured"
    if datasheet is None:
        return measured_text
    text = f"{measured_text} · datasheet {datasheet:,.0f} {unit}"
    if measured is not None and datasheet:
        text += f" ({measured / datasheet * 100:.0f}% of datasheet)"
    return text


_PROVENANCE_FIELDS = (
    ("GPU", "gpu"),
    ("SM count", "sm_count"),
    ("compute capability", "cc"),
    ("driver", "driver"),
    ("CUDA", "cuda"),
    ("torch", "torch"),
    ("triton", "triton"),
    ("helion", "helion"),
    ("tilelang", "tilelang"),
    ("CUTLASS DSL", "cutlass_dsl"),
    ("commit", "commit"),
    ("date", "date"),
)


def _provenance(runs: Sequence[Run]) -> list[ProvenanceLine]:
    lines = [
        ProvenanceLine(label, [_fmt_plain(run.env.get(key)) for run in runs])
        for label, key in _PROVENANCE_FIELDS
    ]
    lines.append(ProvenanceLine("timing", [_timing_text(run.env.get("timing")) for run in runs]))
    lines.append(
        ProvenanceLine(
            "copy bandwidth",
            [_ceiling_text(r.ceilings.copy_gbps, r.ceilings.datasheet_copy_gbps, "GB/s") for r in runs],
        )
    )
    lines.append(
        ProvenanceLine(
            "bf16 matmul",
            [
                _ceiling_text(r.ceilings.matmul_tflops, r.ceilings.datasheet_matmul_tflops, "TFLOP/s")
                for r in runs
            ],
        )
    )
    lines.append(ProvenanceLine("datasheet", [_fmt_plain(r.ceilings.datasheet_name) for r in runs]))
    # Anything else the bench recorded is shown too rather than silently dropped.
    known = {key for _, key in _PROVENANCE_FIELDS} | {"timing"}
    extra: list[str] = []
    for run in runs:
        extra += [key for key in run.env if key not in known and key not in extra]
    for key in extra:
        lines.append(ProvenanceLine(key, [_fmt_plain(run.env.get(key)) for run in runs]))
    return lines


@dataclass
class ComparisonRow:
    op: str
    backend: str
    shape_label: str
    dtype: str
    ms: list[float | None]  # one per run; None where the row is absent, did not run or was wrong
    speedups: list[float | None]  # run 1's time over run k's, for k = 2..n: > 1 means run k is faster


@dataclass
class Comparison:
    run_labels: list[str]
    rows: list[ComparisonRow]
    geomeans: list[tuple[str, list[float | None]]]  # per backend, geometric mean speedup per later run


def _geomean(values: Sequence[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _comparison(runs: Sequence[Run]) -> Comparison | None:
    if len(runs) < 2:
        return None
    per_run: list[dict[tuple[str, str, str, str], Row]] = [
        {row.match_key: row for row in run.rows} for run in runs
    ]
    keys: list[tuple[str, str, str, str]] = []
    seen: set[tuple[str, str, str, str]] = set()
    for table in per_run:
        for key in table:
            if key not in seen:
                seen.add(key)
                keys.append(key)
    rows: list[ComparisonRow] = []
    for key in keys:
        present = [table.get(key) for table in per_run]
        ms = [row.ms if row is not None and row.ok else None for row in present]
        base = ms[0]
        speedups = [base / later if base and later else None for later in ms[1:]]
        label_row = next(row for row in present if row is not None)
        rows.append(ComparisonRow(key[0], key[1], label_row.shape_label, key[3], ms, speedups))
    backend_rank = {name: rank for rank, name in enumerate(_backend_order(row.backend for row in rows))}
    op_order = list(dict.fromkeys(row.op for row in rows))
    rows.sort(key=lambda r: (op_order.index(r.op), backend_rank[r.backend]))
    geomeans = []
    for backend in _backend_order(row.backend for row in rows):
        mine = [row for row in rows if row.backend == backend]
        per_later_run = [
            _geomean([row.speedups[k] for row in mine if row.speedups[k] is not None])
            for k in range(len(runs) - 1)
        ]
        geomeans.append((backend, per_later_run))
    return Comparison([run.label for run in runs], rows, geomeans)


# --------------------------------------------------------------------------------------------------
# Formatting filters used by the template
# --------------------------------------------------------------------------------------------------


def fmt_num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def fmt_bytes(value: float) -> str:
    """Decimal units, as GB/s are: 2e8 -> "200 MB"."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} B"


def fmt_sci(value: float | None) -> str:
    return "—" if value is None else f"{value:.1e}"


def fmt_pct(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}%" if abs(value) < 10 else f"{value:.0f}%"


def fmt_speedup(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.2g}×"  # 0.0021×, not 0.00×


def sort_value(value: float | int | None) -> str:
    """The data-sort attribute of a numeric cell: empty for missing values (they sort last)."""
    return "" if value is None else repr(float(value))


def _sanitize_json(value: Any) -> Any:
    """Results as strict JSON: NaN and infinities (which Python's json accepts) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): _sanitize_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize_json(item) for item in value]
    return value


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # templates end in .j2, so select_autoescape would not switch it on
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(num=fmt_num, sci=fmt_sci, pct=fmt_pct, speedup=fmt_speedup, sortval=sort_value)
    return environment


def _script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def build_report(
    results: list[dict],
    layouts_svgs: dict[str, str] | None = None,
    timing_checks: Sequence[tuple[str, Any]] = (),
) -> str:
    """The report page for one or more results (schema 1) as a self-contained HTML string.

    ``layouts_svgs`` maps a title to an SVG drawing made by the project's layout module. Those drawings
    are trusted and embedded as markup; nothing taken from ``results`` ever is.  ``timing_checks``
    are (source name, JSON) pairs of ``tilearena timing-check --out`` files, shown as a section each.
    """
    if isinstance(results, Mapping):
        results = [results]  # one results dict is a common enough slip to accept
    for index, result in enumerate(results):
        check_schema(result, f"results {index + 1}")
    runs = [_build_run(result, index) for index, result in enumerate(results)]
    for source, raw in timing_checks:
        check_timing_check(raw, source)
    checks = [build_timing_check(raw, index, source) for index, (source, raw) in enumerate(timing_checks)]
    layouts = [
        (_as_text(name), scope_svg_ids(strip_svg_prolog(svg), f"layout{index}"))
        for index, (name, svg) in enumerate((layouts_svgs or {}).items())
    ]
    script = (TEMPLATES_DIR / "report.js").read_text()
    gpus = list(dict.fromkeys(_as_text(run.env.get("gpu")) for run in runs if run.env.get("gpu")))
    template = _environment().get_template("report.html.j2")
    return template.render(
        title="tilearena report" + (" — " + ", ".join(gpus) if gpus else ""),
        runs=runs,
        multiple_runs=len(runs) > 1,
        provenance=_provenance(runs),
        comparison=_comparison(runs),
        layouts=layouts,
        timing_checks=checks,
        css=Markup((TEMPLATES_DIR / "report.css").read_text()),
        script=Markup(script),
        script_hash=_script_hash(script),
        raw_results=[_sanitize_json(result) for result in results],
        our_backends=_backend_order({row.backend for run in runs for row in run.rows if row.ours}),
    )


def load_results(path: Path) -> dict:
    results = read_json(path, "results")
    check_schema(results, str(path))
    return results


def write_report(
    paths: list[Path],
    out_dir: Path,
    layout_svgs: dict[str, str] | None = None,
    timing_check_paths: Sequence[Path] = (),
) -> Path:
    """Read the results (and timing-check) files, write ``out_dir/index.html``, return its path."""
    results = [load_results(Path(path)) for path in paths]
    checks = []
    for path in timing_check_paths:
        checks.append((Path(path).name, read_json(path, "--timing-check")))
    html = build_report(results, layout_svgs, checks)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    index.write_text(html, encoding="utf-8")
    return index


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``report`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of benchmark results",
        description="Write DIR/index.html from one or more results files; several files are compared.",
    )
    parser.add_argument(
        "results", nargs="+", type=Path, metavar="RESULTS.json", help="results of tilearena bench"
    )
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("reports"),
        metavar="DIR",
        help="output directory (default: reports/)",
    )
    parser.add_argument(
        "--layout",
        action="append",
        default=[],
        metavar="LAYOUT",
        help='also draw a layout, e.g. "(4,8):(8,1)" (repeatable; see tilearena layout show)',
    )
    parser.add_argument(
        "--timing-check",
        action="append",
        default=[],
        type=Path,
        metavar="JSON",
        help="also show a tilearena timing-check --out file: spreads and within-window drift (repeatable)",
    )
    parser.set_defaults(command="report")
    return parser


def layout_drawings(expressions: Sequence[str]) -> dict[str, str]:
    """SVG drawings of layout expressions, made by the layout module (our own, trusted markup)."""
    if not expressions:
        return {}
    # Absolute imports: this file also runs as a script (python -m tilearena.bench.report).
    from tilearena.layouts.cli import parse_layout
    from tilearena.layouts.draw import to_svg

    return {text: to_svg(parse_layout(text)) for text in expressions}


def run(args: argparse.Namespace) -> int:
    try:
        drawings = layout_drawings(getattr(args, "layout", []) or []) or None
        checks = list(getattr(args, "timing_check", []) or [])
        index = write_report(list(args.results), args.out, layout_svgs=drawings, timing_check_paths=checks)
    except (OSError, ValueError, SyntaxError) as error:  # json.JSONDecodeError is a ValueError
        print(f"tilearena report: {error}", file=sys.stderr)
        return 2
    print(index)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tilearena.bench.report`` works before the CLI is wired in."""
    parser = argparse.ArgumentParser(prog="tilearena")
    add_parser(parser.add_subparsers(required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
