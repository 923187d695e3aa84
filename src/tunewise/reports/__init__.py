"""Renderers of a run report: terminal, Markdown, HTML, JSON; plots.

`tunewise.analysis.build_report` produces the typed `RunReport`; everything here only renders it.
"""

from __future__ import annotations

from pathlib import Path

from .model import RunReport

__all__ = ["RunReport", "write_reports"]


def write_reports(report: RunReport, out_dir: Path) -> dict[str, Path]:
    """The HTML, Markdown and JSON reports of a run, written into `out_dir`."""
    from .html import render_html
    from .markdown import to_markdown
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "report.html", "json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths["json"].write_text(to_json(report))
    paths["markdown"].write_text(to_markdown(report))
    paths["html"].write_text(render_html(report))
    return paths


def to_json(report: RunReport) -> str:
    return report.model_dump_json(indent=2)
