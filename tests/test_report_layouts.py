"""``tilearena report --layout``: drawings from the layout module are embedded in the page."""

from __future__ import annotations

from pathlib import Path

from test_report import synthetic_results
from tilearena.bench.results import atomic_write_json

from tilearena.cli import main


def test_report_embeds_layout_drawings(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    atomic_write_json(results, synthetic_results())
    layout = "((2,2),(4,2)):((1,8),(2,16))"
    assert main(["report", str(results), "-o", str(tmp_path), "--layout", layout]) == 0
    page = (tmp_path / "index.html").read_text()
    assert layout in page
    # Cell values of the layout appear in the drawing: 31 is its largest offset.
    assert ">31<" in page


def test_report_rejects_a_bad_layout(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    atomic_write_json(results, synthetic_results())
    assert main(["report", str(results), "-o", str(tmp_path), "--layout", "((2,2"]) == 2
    assert not (tmp_path / "index.html").exists()
