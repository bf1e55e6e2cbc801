"""The two scripts every page needs, read from installed packages (never from the network): plotly.js as the
``plotly`` Python package bundles it, and margin's own chart loader (static/dashboard.js)."""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ..errors import MarginError

__all__ = ["Asset", "AssetError", "loader_js", "plotly_js"]


class AssetError(MarginError):
    """A script the dashboard needs is not installed."""

    exit_code = 2
    http_status = 500
    error_type = "dashboard_asset_missing"


@dataclass(frozen=True)
class Asset:
    """A script's text, its gzip form (served when the browser accepts it) and a short content hash for
    cache-busting URLs (``?v=...``), so the file can be cached for a year."""

    name: str
    text: str
    version: str

    @property
    def body(self) -> bytes:
        return self.text.encode("utf-8")

    @property
    def gzipped(self) -> bytes:
        return _gzipped(self.name, self.version)

    def inline(self) -> str:
        """The text safe inside an inline <script> element: a literal ``</script`` would end the element, so
        it is written ``<\\/script`` (the same string to JavaScript, inside a string or a regex)."""
        return re.sub(r"</(script)", r"<\\/\1", self.text, flags=re.IGNORECASE)


def _version(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@cache
def plotly_js() -> Asset:
    """plotly.min.js from the installed ``plotly`` package (a core dependency of margin)."""
    try:
        file = resources.files("plotly") / "package_data" / "plotly.min.js"
        text = file.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError) as exc:
        raise AssetError(
            "the dashboard draws its charts with plotly.min.js from the 'plotly' Python package, which is not "
            f"installed or has no package_data/plotly.min.js ({exc}); reinstall margin (pip install margin) or "
            "run pip install plotly"
        ) from None
    return Asset("plotly.min.js", text, _version(text))


@cache
def loader_js() -> Asset:
    """margin's chart loader: finds each chart's JSON block and draws it with plotly."""
    text = (resources.files("margin.dashboard") / "static" / "dashboard.js").read_text(encoding="utf-8")
    return Asset("dashboard.js", text, _version(text))


@cache
def _gzipped(name: str, version: str) -> bytes:
    asset = plotly_js() if name == "plotly.min.js" else loader_js()
    # mtime=0: the same bytes every time, so the ETag-like version stays honest.
    return gzip.compress(asset.body, compresslevel=6, mtime=0)
