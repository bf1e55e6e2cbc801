"""Self-contained HTML reports (``margin report ... --html FILE``): a dashboard page rendered with plotly.js
and the chart loader inlined, so the file opens offline, anywhere, and refers to nothing on any network."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ._data import Page, attribution_page, period_of
from ._reads import BREAKDOWNS, Sources, read_page
from ._render import report_html

__all__ = ["BREAKDOWNS", "Sources", "attribution_page", "period_of", "read_page", "write_report"]


def write_report(path: Path, page: Page, *, generated_at: datetime) -> int:
    """Write ``page`` as one self-contained HTML file; returns its size in bytes."""
    data = report_html(page, generated_at=generated_at).encode("utf-8")
    path.write_bytes(data)
    return len(data)
