"""Renderers of a run report: terminal, Markdown, HTML, JSON; plots.

`tunewise.analysis.build_report` produces the typed `RunReport`; everything here only renders it.
"""

from __future__ import annotations

from pathlib import Path

from ..analysis.model import RunReport

__all__ = ["RunReport", "write_reports"]


def write_reports(report: RunReport, out_dir: Path, *, checked: bool = True) -> dict[str, Path]:
    """The HTML, Markdown and JSON reports of a run, written into `out_dir`, never over a file tunewise did
    not write there or one edited since (`tunewise.store.owned`). `checked=False`: the run's folder in
    tunewise's home, which only tunewise writes (its reports from before the check have no record)."""
    from ..errors import TunewiseError
    from ..store.owned import check_folder, record_folder
    from .html import render_html
    from .markdown import to_markdown
    paths = {"html": out_dir / "report.html", "json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    texts = {"json": to_json(report), "markdown": to_markdown(report), "html": render_html(report)}
    record = check_folder(out_dir, [p.name for p in paths.values()], WRITER) if checked else {}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for kind, text in texts.items():
            paths[kind].write_text(text, encoding="utf-8")
        record_folder(out_dir, record, {paths[k].name: t.encode("utf-8") for k, t in texts.items()}, WRITER)
    except OSError as err:
        raise TunewiseError(f"cannot write the report here ({err.strerror or err}); choose a writable "
                            f"directory with --out", file=str(out_dir)) from None
    return paths


WRITER = "tunewise report"


def to_json(report: RunReport) -> str:
    return report.model_dump_json(indent=2)
