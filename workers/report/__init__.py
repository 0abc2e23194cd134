"""The campaign report: verdict rows → one self-contained HTML page."""

from workers.report.build import build_report, render_report

__all__ = ["build_report", "render_report"]
