"""Unit tests of the HTML report builder (bench/report.py) on synthetic results; CPU only, no torch."""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import importlib.util
import json
import random
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
XSS_BACKEND = "<script>alert(1)</script>"


def load_report_module() -> ModuleType:
    """bench/report.py of this checkout, loaded from its folder as a package of its own.

    The repository folder ``bench`` is installed as ``tilearena.bench``; loading it from its files
    tests the source tree whether or not (and however) the package is installed, and keeps torch
    out (report.py imports only its sibling results.py, which needs no torch either).
    """
    name = "tilearena_bench_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, REPO / "bench" / "__init__.py", submodule_search_locations=[str(REPO / "bench")]
        )
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package  # dataclasses look their module up while the class is being made
        spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.report")


report = load_report_module()


# --------------------------------------------------------------------------------------------------
# A realistic synthetic results file: H100-like ceilings, three ops, ours and peers, one wrong result,
# one backend that is not installed, and a backend whose name is markup.
# --------------------------------------------------------------------------------------------------

COPY_GBPS = 3010.5
MATMUL_TFLOPS = 742.0


def _row(op, backend, dsl, shape, nbytes, flops, ms, *, bound, rel_err=2e-3, tol=1e-2, ok=True, error=None):
    if ms is None:
        return {
            "op": op,
            "backend": backend,
            "dsl": dsl,
            "shape": shape,
            "dtype": "bfloat16",
            "ms": None,
            "ms_iqr": None,
            "gbps": None,
            "tflops": None,
            "sol_pct": None,
            "bytes": nbytes,
            "flops": flops,
            "rel_err": None,
            "max_abs_err": None,
            "tol": tol,
            "ok": False,
            "error": error,
        }
    gbps = nbytes / ms / 1e6
    tflops = flops / ms / 1e9
    sol = gbps / COPY_GBPS * 100 if bound == "memory" else tflops / MATMUL_TFLOPS * 100
    return {
        "op": op,
        "backend": backend,
        "dsl": dsl,
        "shape": shape,
        "dtype": "bfloat16",
        "ms": ms,
        "ms_iqr": ms * 0.02,
        "gbps": gbps,
        "tflops": tflops,
        "sol_pct": sol,
        "bytes": nbytes,
        "flops": flops,
        "rel_err": rel_err,
        "max_abs_err": rel_err * 4,
        "tol": tol,
        "ok": ok,
        "error": error,
    }


def synthetic_results(gpu: str = "NVIDIA H100 80GB HBM3", slowdown: float = 1.0, seed: int = 0) -> dict:
    """Results in schema 1; ``slowdown`` scales every time (for comparisons of runs)."""
    rng = random.Random(seed)
    rows = []
    memory_efficiency = {
        "triton": 0.86,
        "cute": 0.91,
        "tilelang": 0.83,
        "eager": 0.42,
        "compile": 0.78,
        "quack": 0.90,
        "liger": 0.80,
        XSS_BACKEND: 0.5,
    }
    dsl_of = {
        "triton": "triton",
        "cute": "cute",
        "tilelang": "tilelang",
        "helion": "helion",
        "quack": "cute",
        "liger": "triton",
        "compile": "triton",
        "eager": "aten",
        "cublas": "cublas",
        XSS_BACKEND: "?",
    }
    for op, shapes in (
        ("rmsnorm", [(1024, 4096), (4096, 4096), (16384, 4096), (32768, 4096)]),
        ("softmax", [(4096, 8192), (16384, 8192), (8192, 32768)]),
    ):
        for m, n in shapes:
            shape = {"M": m, "N": n}
            nbytes = 2 * m * n * 2 + (n * 2 if op == "rmsnorm" else 0)
            flops = (4 if op == "rmsnorm" else 5) * m * n
            for backend, efficiency in memory_efficiency.items():
                if op == "softmax" and backend == "liger":
                    continue
                # Small problems cannot fill the GPU: efficiency grows with size.
                fill = min(1.0, (nbytes / 64e6) ** 0.25)
                ms = nbytes / (COPY_GBPS * 1e6 * efficiency * fill * rng.uniform(0.97, 1.03)) * slowdown
                rel_err, ok, error = 10 ** rng.uniform(-3.3, -2.4), True, None
                if op == "softmax" and backend == "tilelang" and m == 16384:
                    rel_err, ok, error = 4.1e-2, False, "rel_err 4.1e-02 > tol 1.0e-02"
                rows.append(
                    _row(
                        op,
                        backend,
                        dsl_of[backend],
                        shape,
                        nbytes,
                        flops,
                        ms,
                        bound="memory",
                        rel_err=rel_err,
                        ok=ok,
                        error=error,
                    )
                )
            rows.append(
                _row(
                    op,
                    "helion",
                    "helion",
                    shape,
                    nbytes,
                    flops,
                    None,
                    bound="memory",
                    error="helion not installed",
                )
            )
    matmul_efficiency = {
        "triton": 0.80,
        "cute": 0.88,
        "tilelang": 0.84,
        "cublas": 0.90,
        "eager": 0.90,
        "compile": 0.86,
    }
    for size in (1024, 2048, 4096, 8192):
        shape = {"M": size, "N": size, "K": size}
        nbytes = 3 * size * size * 2
        flops = 2 * size**3
        for backend, efficiency in matmul_efficiency.items():
            fill = min(1.0, (size / 4096) ** 0.7)
            ms = flops / (MATMUL_TFLOPS * 1e9 * efficiency * fill * rng.uniform(0.97, 1.03)) * slowdown
            rows.append(
                _row(
                    "matmul",
                    backend,
                    dsl_of[backend],
                    shape,
                    nbytes,
                    flops,
                    ms,
                    bound="compute",
                    rel_err=10 ** rng.uniform(-3.0, -2.6),
                    tol=2e-2,
                )
            )
        rows.append(
            _row(
                "matmul",
                "helion",
                "helion",
                shape,
                nbytes,
                flops,
                None,
                bound="compute",
                tol=2e-2,
                error="helion not installed",
            )
        )
    agreement_backends = ["triton", "cute", "tilelang", "quack", "eager", XSS_BACKEND]
    matrix = [[0.0 if i == j else 10 ** rng.uniform(-3.5, -2.5) for j in range(6)] for i in range(6)]
    matrix[2][5] = matrix[5][2] = None
    tuning = []
    for backend, start in (("triton", 1.9), ("cute", 1.7)):
        log, best = [], start
        for step in range(1, 13):
            best = min(best, best * rng.uniform(0.85, 1.0))
            log.append({"t_s": step * 7.5, "configs_tried": step * 6, "best_ms": best})
        tuning.append(
            {
                "op": "matmul",
                "backend": backend,
                "shape": {"M": 4096, "N": 4096, "K": 4096},
                "dtype": "bfloat16",
                "log": log,
            }
        )
    return {
        "schema": 1,
        "env": {
            "gpu": gpu,
            "sm_count": 132,
            "cc": "9.0",
            "driver": "580.95.05",
            "cuda": "13.0",
            "torch": "2.11.0",
            "triton": "3.6.0",
            "helion": None,
            "tilelang": "0.1.15",
            "cutlass_dsl": "4.8.1",
            "commit": "3f9c2ab71d0e5c44",
            "date": "2026-11-23T15:02:11Z",
            "timing": {"method": "cuda-graph", "l2": "flushed", "repeats": 100, "warmup_ms": 25.0},
        },
        "ceilings": {
            "copy_gbps": COPY_GBPS,
            "matmul_bf16_tflops": MATMUL_TFLOPS,
            "datasheet": {"copy_gbps": 3350.0, "matmul_bf16_tflops": 989.0, "name": "H100 SXM5"},
        },
        "rows": rows,
        "agreement": [
            {
                "op": "rmsnorm",
                "shape": {"M": 4096, "N": 4096},
                "dtype": "bfloat16",
                "backends": agreement_backends,
                "matrix": matrix,
            }
        ],
        "tuning": tuning,
    }


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


class _TableParser(HTMLParser):
    """Rows of the table with a given id, as lists of (cell text, attributes), plus the row's class."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id = table_id
        self.depth = 0  # > 0 while inside the wanted table
        self.rows: list[tuple[str, list[tuple[str, dict[str, str | None]]]]] = []
        self.headers: list[str] = []
        self._cell: list[str] | None = None
        self._cell_attrs: dict[str, str | None] = {}
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            if self.depth or attributes.get("id") == self.table_id:
                self.depth += 1
            return
        if not self.depth:
            return
        if tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head:
            self.rows.append((attributes.get("class") or "", []))
        elif tag in ("td", "th"):
            self._cell, self._cell_attrs = [], attributes

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
        elif not self.depth:
            return
        elif tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            if self._in_head:
                self.headers.append(text)
            else:
                self.rows[-1][1].append((text, self._cell_attrs))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str, table_id: str) -> tuple[list[str], list[dict[str, str]]]:
    """(headers, rows as {header: text} plus "_class") of one table of the page."""
    parser = _TableParser(table_id)
    parser.feed(html)
    assert parser.headers, f"table {table_id!r} not found"
    rows = []
    for row_class, cells in parser.rows:
        row = {header: text for header, (text, _) in zip(parser.headers, cells)}
        row["_class"] = row_class
        rows.append(row)
    return parser.headers, rows


def op_table_id(html: str, op: str) -> str:
    match = re.search(r'<section id="([^"]+)" class="op">\s*<h2>' + re.escape(op) + "</h2>", html)
    assert match, f"no section for op {op}"
    return match.group(1) + "-table"


def only_ops(results: dict, *ops: str) -> dict:
    """The results cut down to some ops, without agreement or tuning: fewer plots, faster tests."""
    return {
        **results,
        "rows": [row for row in results["rows"] if row["op"] in ops],
        "agreement": [],
        "tuning": [],
    }


@pytest.fixture
def no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip matplotlib's drawing (the slow part) in tests about tables and page structure."""
    monkeypatch.setattr(report, "_render_svg", lambda figure, salt: report.Markup(f'<svg id="{salt}"></svg>'))


@pytest.fixture(scope="module")
def results() -> dict:
    return synthetic_results()


@pytest.fixture(scope="module")
def page(results: dict) -> str:
    return report.build_report([results])


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def test_page_is_one_html_document_with_every_section(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    for anchor in ('id="provenance"', 'id="run1-numerics"', 'id="run1-tuning"'):
        assert anchor in page
    for op in ("rmsnorm", "softmax", "matmul"):
        assert f"<h2>{op}</h2>" in page
    assert 'id="comparison"' not in page  # one run: nothing to compare
    assert 'id="layouts"' not in page  # no layouts given


def test_provenance_shows_environment_timing_and_both_ceilings(page: str) -> None:
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.split('id="provenance"')[1].split("</table>")[0]))
    for expected in (
        "NVIDIA H100 80GB HBM3",
        "132",
        "580.95.05",
        "13.0",
        "2.11.0",
        "3.6.0",
        "0.1.15",
        "4.8.1",
        "3f9c2ab71d0e5c44",
        "2026-11-23T15:02:11Z",
        "cuda-graph",
        "L2 flushed",
        "100 repeats",
        "25 ms warm-up",
        "3,010 GB/s measured",
        "datasheet 3,350 GB/s",
        "742 TFLOP/s measured",
        "datasheet 989 TFLOP/s",
        "H100 SXM5",
    ):
        assert expected in text, expected


def test_backend_named_like_markup_is_escaped_everywhere(page: str) -> None:
    # Not in the tables, not in the SVG text, not in the embedded JSON.
    assert XSS_BACKEND not in page
    assert "alert(1)" in page  # it is there, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script") == 2  # the JSON data block and the page's own script, nothing else
    data = page.split('<script type="application/json" id="tilearena-results">')[1].split("</script>")[0]
    assert "<" not in data
    assert json.loads(data)[0]["agreement"][0]["backends"][-1] == XSS_BACKEND


def test_error_messages_shapes_and_op_names_are_escaped() -> None:
    results = only_ops(synthetic_results(), "rmsnorm")
    results["rows"][0]["error"] = '<img src=x onerror="alert(2)">'
    results["rows"][0]["shape"] = {"M<b>": "</td><td>"}
    results["rows"][1]["op"] = "rms<i>norm"
    html = report.build_report([results])
    assert "<img" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert "M&lt;b&gt;=&lt;/td&gt;&lt;td&gt;" in html
    assert "<h2>rms&lt;i&gt;norm</h2>" in html


def test_dollar_and_underscore_names_reach_the_plots_verbatim() -> None:
    results = only_ops(synthetic_results(), "rmsnorm")
    for row in results["rows"]:
        if row["backend"] == "quack":
            row["backend"] = "_q$x^2$"
    # Mathtext would reject or typeset "$x^2$", and the legend would drop a label starting with "_".
    html = report.build_report([results])
    svgs = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    assert sum("_q$x^2$" in svg for svg in svgs) == 3  # SOL legend, roofline legend, error heat map


def test_fastest_correct_backend_is_marked_per_shape(results: dict, page: str) -> None:
    _, rows = table_rows(page, op_table_id(page, "softmax"))
    by_shape: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_shape.setdefault(row["shape"], []).append(row)
    assert len(by_shape) == 3
    for shape, shape_rows in by_shape.items():
        best = [row for row in shape_rows if "best" in row["_class"].split()]
        assert len(best) == 1, shape
        expected = min(
            (
                r
                for r in results["rows"]
                if r["op"] == "softmax"
                and r["ok"]
                and " ".join(f"{k}={v}" for k, v in r["shape"].items()) == shape
            ),
            key=lambda r: r["ms"],
        )
        assert (
            best[0]["backend"].replace("★", "").strip()
            == report.Markup.escape(expected["backend"]).unescape()
        )


def test_a_wrong_result_is_never_the_best_even_when_fastest(no_plots: None) -> None:
    results = only_ops(synthetic_results(), "softmax")
    wrong = next(r for r in results["rows"] if r["op"] == "softmax" and not r["ok"] and r["ms"])
    wrong["ms"] = 1e-6  # fastest by far, but wrong
    html = report.build_report([results])
    _, rows = table_rows(html, op_table_id(html, "softmax"))
    row = next(r for r in rows if r["backend"].startswith("tilelang") and r["status"].startswith("wrong"))
    assert "best" not in row["_class"] and "failed" in row["_class"]
    assert row["vs eager"] == "—"


def test_speedups_over_eager_and_best_peer(results: dict, page: str) -> None:
    shape = {"M": 4096, "N": 4096}
    same = [r for r in results["rows"] if r["op"] == "rmsnorm" and r["shape"] == shape and r["ok"]]
    eager = next(r["ms"] for r in same if r["backend"] == "eager")
    best_peer = min(r["ms"] for r in same if r["backend"] not in report.OUR_BACKENDS)
    cute = next(r["ms"] for r in same if r["backend"] == "cute")
    _, rows = table_rows(page, op_table_id(page, "rmsnorm"))
    row = next(r for r in rows if r["shape"] == "M=4096 N=4096" and r["backend"].startswith("cute"))
    assert row["vs eager"] == f"{eager / cute:.2f}×"
    assert row["vs best peer"] == f"{best_peer / cute:.2f}×"


def test_failed_and_unavailable_rows_show_their_reason(page: str) -> None:
    _, rows = table_rows(page, op_table_id(page, "softmax"))
    helion = [r for r in rows if r["backend"] == "helion"]
    assert helion and all(r["status"] == "did not run: helion not installed" for r in helion)
    assert all("not-run" in r["_class"] and r["time (ms)"] == "—" for r in helion)
    wrong = [r for r in rows if "failed" in r["_class"].split()]
    assert len(wrong) == 1
    assert wrong[0]["status"] == "wrong result: rel_err 4.1e-02 > tol 1.0e-02"
    assert wrong[0]["rel. error"] == "4.1e-02"


def test_memory_bound_ops_show_gbps_and_compute_bound_ops_tflops(page: str) -> None:
    headers, _ = table_rows(page, op_table_id(page, "rmsnorm"))
    assert "GB/s" in headers and "TFLOP/s" not in headers
    headers, rows = table_rows(page, op_table_id(page, "matmul"))
    assert "TFLOP/s" in headers and "GB/s" not in headers
    cublas = next(
        r for r in rows if r["backend"].startswith("cublas") and r["shape"] == "M=8192 N=8192 K=8192"
    )
    assert 600 < float(cublas["TFLOP/s"].replace(",", "")) < 742


def test_plots_are_inline_svg_without_prolog_or_external_references(page: str) -> None:
    svgs = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    # Per op: SOL and roofline and error heat map (3 x 3), one agreement matrix, one tuning plot.
    assert len(svgs) == 11
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page and "<metadata" not in page
    for svg in svgs:
        assert "font-family" in svg or "font:" in svg  # text is text (svg.fonttype none), not paths
        for reference in re.findall(r'(?:href|src)\s*=\s*"([^"]*)"', svg):
            assert reference.startswith(("#", "data:image/png;base64,")), reference
    # Nothing may load anything: no external URL in any src/href, no <link>, no @import.
    assert not re.search(r'(?:src|href)\s*=\s*"(?!#|data:image/png;base64,)', page)
    assert "<link" not in page and "@import" not in page
    assert not re.search(r"url\((?!#)", page)


def test_svg_ids_are_unique_across_the_page(page: str) -> None:
    ids = re.findall(r'\sid="([^"]+)"', page)
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates


def test_output_is_deterministic(results: dict) -> None:
    small = only_ops(results, "softmax")
    assert report.build_report([small]) == report.build_report([copy.deepcopy(small)])


def test_content_security_policy_allows_exactly_the_page_script(page: str) -> None:
    script = page.split("<script>")[1].split("</script>")[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in policy
    assert f"script-src 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_error_heatmap_marks_failures_and_shows_tolerance(page: str) -> None:
    numerics = page.split('id="run1-numerics"')[1].split("</section>")[0]
    softmax_svg = next(
        svg for svg in re.findall(r"<svg\b.*?</svg>", numerics, flags=re.S) if "softmax" in svg
    )
    assert "✗ 4.1e-02" in softmax_svg
    assert "tolerance 1e-02" in softmax_svg
    assert softmax_svg.count("n/a") == 3  # helion at every softmax shape
    assert "Cross-DSL agreement" in numerics


def test_missing_optional_keys_still_make_a_page() -> None:
    minimal = {
        "schema": 1,
        "rows": [
            {
                "op": "copy",
                "backend": "triton",
                "shape": {"N": 1 << 20},
                "ms": 0.01,
                "bytes": 1 << 22,
                "ok": True,
            }
        ],
    }
    html = report.build_report([minimal])
    assert "<h2>copy</h2>" in html and 'id="run1-tuning"' not in html and "Cross-DSL agreement" not in html
    _, rows = table_rows(html, op_table_id(html, "copy"))
    assert rows[0]["GB/s"] == "419"  # derived from bytes and ms when the file leaves it out
    empty = report.build_report([{"schema": 1}])
    assert "This results file has no rows." in empty
    odd = {
        "schema": 1,
        "env": {"timing": "?"},
        "ceilings": None,
        "agreement": [{"op": "x", "matrix": 3}],
        "tuning": [{"op": "x", "log": [{"t_s": "a"}]}],
        "rows": [{"op": "x", "ms": float("nan"), "bytes": None, "ok": "yes"}, "not a row"],
    }
    html = report.build_report([odd])
    assert "NaN" not in html.split('id="tilearena-results">')[1]


def test_a_run_stopped_by_its_budget_says_which_shapes_it_left(no_plots: None) -> None:
    """``not_measured`` (tilearena bench --budget): the reason and every shape left, escaped."""
    row = {"op": "copy", "backend": "triton", "shape": {"N": 1024}, "ms": 0.01, "bytes": 4096, "ok": True}
    stopped = {
        "schema": 1,
        "rows": [row],
        "not_measured": {
            "reason": "--budget 25 s: stopped after 20 s",
            "shapes": [
                {"op": "matmul", "shape": {"M": 16384, "N": 57344, "K": 8192, "BT": 1}, "dtype": "bfloat16"},
                {"op": XSS_BACKEND, "shape": {"M": "<b>"}, "dtype": None},
            ],
        },
    }
    html = report.build_report([stopped])
    assert "This run stopped early (--budget 25 s: stopped after 20 s); 2 shapes not measured" in html
    assert "matmul 16384x57344x8192x1 bfloat16" in html
    assert XSS_BACKEND not in html.split('id="tilearena-results">')[0] and "&lt;b&gt;" in html
    assert "stopped early" not in report.build_report([{"schema": 1, "rows": [row]}])


def test_rows_as_the_bench_writes_them(no_plots: None) -> None:
    """Rows of tilearena bench: "ours" and per-row timing given, bytes/flops possibly left out."""
    row = {
        "op": "rmsnorm",
        "backend": "mykernel",
        "dsl": "triton",
        "ours": True,
        "shape": {"M": 8, "N": 16},
        "dtype": "float32",
        "ms": 0.5,
        "ms_iqr": 0.01,
        "gbps": 2.0,
        "tflops": 0.004,
        "sol_pct": None,
        "rel_err": 1e-7,
        "max_abs_err": 1e-6,
        "tol": 1e-5,
        "ok": True,
        "error": None,
        "seed": 7,
        "noise": 0.02,
        "timing_method": "cpu-timer",
    }
    normalized = report._normalize_row(row)
    assert normalized.ours and normalized.bytes == 1_000_000 and normalized.flops == 2_000_000
    cpu_run = {
        "schema": 1,
        "env": {"gpu": "cpu", "timing": {"method": "cpu-timer", "repeats": "2 x 20"}},
        "ceilings": {"copy_gbps": None, "matmul_bf16_tflops": None, "datasheet": None},
        "rows": [row, {**row, "backend": "eager", "ours": False, "ms": 1.0}],
        "agreement": [],
    }
    html = report.build_report([cpu_run])
    _, rows = table_rows(html, op_table_id(html, "rmsnorm"))
    mine = next(r for r in rows if r["backend"].startswith("mykernel"))
    assert "ours" in mine["_class"] and mine["vs eager"] == "2.00×" and mine["vs best peer"] == "2.00×"
    assert 'title="timed with cpu-timer"' in html
    assert "Ours (in bold): mykernel;" in html
    assert 'id="run1-op0-roof"' in html  # a roofline from the derived sizes, though no roofs were measured
    assert "cpu-timer, repeats: 2 x 20" in html


def test_unsupported_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="schema 2"):
        report.build_report([{"schema": 2, "rows": []}])


def test_comparison_of_two_runs_matches_rows_and_gives_ratios(no_plots: None) -> None:
    before = only_ops(synthetic_results(seed=1), "rmsnorm", "matmul")
    after = only_ops(synthetic_results(gpu="NVIDIA H200", slowdown=0.8, seed=1), "rmsnorm", "matmul")
    after["rows"] = [r for r in after["rows"] if not (r["op"] == "matmul" and r["backend"] == "eager")]
    html = report.build_report([before, after])
    assert 'id="comparison"' in html and "run 2 · NVIDIA H200" in html
    headers, rows = table_rows(html, "comparison-table")
    assert headers[-1] == "run 2 vs run 1"
    triton = next(
        r for r in rows if r["op"] == "rmsnorm" and r["backend"] == "triton" and r["shape"] == "M=1024 N=4096"
    )
    assert triton["run 2 vs run 1"] == "1.25×"
    eager_matmul = [r for r in rows if r["op"] == "matmul" and r["backend"] == "eager"]
    assert eager_matmul and all(r["run 2 (ms)"] == "—" and r["run 2 vs run 1"] == "—" for r in eager_matmul)
    _, geomeans = table_rows(html, "comparison-geomean")
    assert all(row["run 2 vs run 1"] in ("1.25×", "—") for row in geomeans)
    assert next(r for r in geomeans if r["backend"] == "helion")["run 2 vs run 1"] == "—"
    # Every run gets its own sections; anchors stay unique.
    assert 'id="run2-op0"' in html and 'id="run2-numerics"' in html


def test_layouts_are_embedded_as_given_and_named_safely(no_plots: None) -> None:
    drawing = (
        '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        '<rect id="tv-layout" width="5" height="5"/></svg>'
    )
    html = report.build_report(
        [only_ops(synthetic_results(), "matmul")], {"TV layout <b>128x64</b>": drawing}
    )
    assert 'id="layouts"' in html
    assert '<rect id="layout0-tv-layout" width="5" height="5"/>' in html
    assert "TV layout &lt;b&gt;128x64&lt;/b&gt;" in html and '<?xml version="1.0"?>' not in html


def test_write_report_and_cli(tmp_path: Path, no_plots: None) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    small = {**only_ops(synthetic_results(), "matmul")}
    small["rows"] = [row for row in small["rows"] if row["backend"] in ("triton", "cublas")]
    first.write_text(json.dumps(small))
    second.write_text(json.dumps({**small, "env": {**small["env"], "gpu": "other"}}))
    parser = argparse.ArgumentParser(prog="tilearena")
    report.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(first), str(second), "-o", str(tmp_path / "out")])
    assert report.run(args) == 0
    index = tmp_path / "out" / "index.html"
    assert index.is_file() and 'id="comparison"' in index.read_text()
    assert parser.parse_args(["report", str(first)]).out == Path("reports")
    assert report.write_report([first], tmp_path / "single") == tmp_path / "single" / "index.html"
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 7}')
    assert report.run(parser.parse_args(["report", str(bad), "-o", str(tmp_path / "x")])) == 2
    assert report.run(parser.parse_args(["report", str(tmp_path / "missing.json"), "-o", str(tmp_path)])) == 2


def test_report_module_does_not_import_torch() -> None:
    code = (
        "import importlib, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('b', {str(REPO / 'bench' / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(REPO / 'bench')!r}])\n"
        "package = importlib.util.module_from_spec(spec); sys.modules['b'] = package\n"
        "spec.loader.exec_module(package)\n"
        "module = importlib.import_module('b.report')\n"
        "row = {'op': 'x', 'backend': 'triton', 'ms': 1.0, 'ok': True}\n"
        "module.build_report([{'schema': 1, 'rows': [row]}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_rows_of_one_shape_timed_by_different_methods_are_marked(no_plots: None) -> None:
    """A shape whose rows were timed partly as graph replays and partly with events gets a ≠ on
    every timed row (the two methods differed by ~10 us near the 50 us switch at 64c3713); a shape
    timed one way gets none."""
    results = only_ops(synthetic_results(), "softmax")
    rows = [r for r in results["rows"] if r["ok"] and r["ms"]]
    shapes = []
    for row in rows:
        if row["shape"] not in shapes:
            shapes.append(row["shape"])
    mixed, plain = shapes[0], shapes[1]
    for row in rows:
        row["timing_method"] = "cuda-graph"
    next(r for r in rows if r["shape"] == mixed)["timing_method"] = "cuda-events"
    html = report.build_report([results])
    assert html.count('class="mixed-timing"') == sum(r["shape"] == mixed for r in rows)
    assert "not all timed the same way" in html
    for row in rows:
        row["timing_method"] = "cuda-graph"
    assert 'class="mixed-timing"' not in report.build_report([results])
    assert plain != mixed


def test_a_rows_gpu_state_shows_on_its_time_and_hostile_values_are_dropped(no_plots: None) -> None:
    """The SM clock, power and temperature NVML read while a row ran appear in its time cell's
    title, escaped; a malformed state shows nothing rather than breaking the page."""
    results = only_ops(synthetic_results(), "softmax")
    rows = [r for r in results["rows"] if r["ok"] and r["ms"]]
    rows[0]["timing_method"] = "cuda-events"
    rows[0]["gpu_state"] = {
        "sm_clock_mhz": 1425.0,
        "sm_clock_range_mhz": [1410, 1440],
        "power_w": 446.4,
        "temperature_c": 65,
        "clock_reasons": ["sw_power_cap", '<script>alert("x")</script>'],
    }
    rows[1]["gpu_state"] = {"sm_clock_mhz": "fast", "power_w": float("nan")}
    rows[2]["gpu_state"] = ["not", "a", "mapping"]
    html = report.build_report([results])
    note = "timed with cuda-events; SM 1425 MHz (1410-1440), 446 W, 65 C, clock held by sw_power_cap + "
    assert f'title="{note}' in html
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert report._gpu_note(rows[1]["gpu_state"]) is None and report._gpu_note(rows[2]["gpu_state"]) is None
    assert report._gpu_note({"sm_clock_mhz": 1980}) == "SM 1980 MHz"


# --------------------------------------------------------------------------------------------------
# Timing checks (tilearena timing-check --out) on the page
# --------------------------------------------------------------------------------------------------


def _timing_check_job(backend: str, drift: float) -> dict:
    """A job whose default windows drift by ``drift`` from first to last sample; the other flat."""
    ramp = [1.0 + drift * (i / 99 - 0.5) for i in range(100)]
    flat = [1.0] * 100
    return {
        "op": "matmul",
        "backend": backend,
        "shape": {"M": 4096, "N": 4096, "K": 14336, "BT": 1},
        "timing": "clean",
        "methods": ["default", "hot-start"],
        "default": {"samples_ms": [1.0, 1.05], "median_ms": 1.02, "spread": 0.035,
                    "window_iqr": [0.05, 0.07], "series_ms": [ramp]},
        "hot-start": {"samples_ms": [1.0, 1.001], "median_ms": 1.0005, "spread": 0.0007,
                      "window_iqr": [0.001, 0.002], "series_ms": [flat]},
    }


def test_deciles_read_a_window_in_order() -> None:
    ramp = [float(i) for i in range(1, 101)]
    profile = report._deciles(ramp)
    assert len(profile) == 10 and profile == sorted(profile) and profile[0] < 0.2 < 1.8 < profile[-1]
    assert report._deciles([1.0] * 9) is None and report._deciles([0.0] * 20) is None


def test_a_timing_check_gets_a_section_with_its_spreads_and_a_drift_plot() -> None:
    checks = [("tc.json", [_timing_check_job("triton", 0.1), _timing_check_job(XSS_BACKEND, 0.0)])]
    html = report.build_report([{"schema": 1, "rows": []}], timing_checks=checks)
    section = html[html.index('id="timing-check-0"') :]
    assert "Timing check: tc.json" in section and "--timing clean" in section
    assert "3.5 %" in section and "6.0 %" in section and "0.1 %" in section  # spread, window IQRs
    assert "<svg" in section and "decile of the window" in section
    assert XSS_BACKEND not in html and "&lt;script&gt;" in section  # a name is data, never markup
    assert 'href="#timing-check-0"' in html


def test_a_file_that_is_not_a_timing_check_is_refused_by_name(tmp_path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"schema": 1, "rows": []}))
    for bad in ({"schema": 1}, [], [{"methods": ["default"]}], [{"methods": "default"}]):
        wrong = tmp_path / "wrong.json"
        wrong.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=r"wrong\.json: "):
            report.write_report([results], tmp_path / "out", timing_check_paths=[wrong])
    good = tmp_path / "good.json"
    good.write_text(json.dumps([_timing_check_job("cute", 0.05)]))
    index = report.write_report([results], tmp_path / "out", timing_check_paths=[good])
    assert "Timing check: good.json" in index.read_text()
