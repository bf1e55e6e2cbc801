"""Where price data comes from: the genai-prices package's bundled snapshot, or a newer data file that
``margin prices update --from FILE`` installed into margin's home. The only I/O of the pricing package.

genai-prices' background updater is never started: margin reads no network at runtime.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from genai_prices import data_snapshot
from genai_prices import types as gp

from ..errors import CatalogError

__all__ = ["PriceData", "PriceSource", "install_data_file", "load_price_data"]

_DATE = re.compile(r"\b(20\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\b")
DATA_FILE_NAME = "genai-prices-data.json"
META_FILE_NAME = "genai-prices-data.meta.json"


@dataclass(frozen=True, kw_only=True)
class PriceSource:
    """Which price data priced a result, and when that data was last checked."""

    name: str
    prices_checked: date | None

    def describe(self) -> str:
        checked = self.prices_checked.isoformat() if self.prices_checked else "unknown date"
        return f"{self.name} (prices checked {checked})"


@dataclass(frozen=True)
class PriceData:
    providers: list[gp.Provider]
    source: PriceSource


def newest_date_in(providers: list[gp.Provider], *, today: date) -> date | None:
    """The newest date the data mentions that is not in the future: review notes ("checked 2026-10-09")
    and price start dates. genai-prices carries no single dataset date, so this is the best honest bound."""
    newest: date | None = None

    def consider(day: date) -> None:
        nonlocal newest
        if day <= today and (newest is None or day > newest):
            newest = day

    for provider in providers:
        for text in (provider.price_comments, provider.description):
            for found in _dates_in(text):
                consider(found)
        for model in provider.models:
            for found in _dates_in(model.price_comments):
                consider(found)
            if isinstance(model.prices, list):
                for conditional in model.prices:
                    constraint = conditional.constraint
                    if isinstance(constraint, gp.StartDateConstraint):
                        consider(constraint.start_date)
    return newest


def _dates_in(text: str | None) -> list[date]:
    found: list[date] = []
    for year, month, day in _DATE.findall(text or ""):
        try:
            found.append(date(int(year), int(month), int(day)))
        except ValueError:
            continue
    return found


def load_price_data(home: Path, *, today: date | None = None) -> PriceData:
    """The installed update file when there is one, else the package's bundled snapshot."""
    today = today or datetime.now(UTC).date()
    data_file = home / DATA_FILE_NAME
    if data_file.is_file():
        providers = _parse_data_file(data_file)
        meta = _read_meta(home / META_FILE_NAME)
        checked = meta.get("prices_checked")
        return PriceData(
            providers,
            PriceSource(
                name=f"price file {meta.get('original_name', data_file.name)} (sha256 {meta.get('sha256', '?')[:12]})",
                prices_checked=date.fromisoformat(checked) if checked else newest_date_in(providers, today=today),
            ),
        )
    providers = data_snapshot.get_snapshot().providers
    return PriceData(
        providers,
        PriceSource(
            name=f"genai-prices {version('genai-prices')}", prices_checked=newest_date_in(providers, today=today)
        ),
    )


def install_data_file(source: Path, home: Path, *, today: date | None = None) -> PriceData:
    """Validate a genai-prices data file (the JSON provider array of genai-prices' data.json) and install
    it as margin's price data. Nothing is replaced unless the whole file validates."""
    today = today or datetime.now(UTC).date()
    providers = _parse_data_file(source)
    if not providers:
        raise CatalogError(f"{source} holds no providers; is it a genai-prices data.json file?")
    raw = source.read_bytes()
    home.mkdir(parents=True, exist_ok=True)
    checked = newest_date_in(providers, today=today)
    meta = {
        "original_name": source.name,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "prices_checked": checked.isoformat() if checked else None,
        "providers": len(providers),
        "models": sum(len(p.models) for p in providers),
    }
    # Write to temporary names then rename, so a crash never leaves a half-written price file in use.
    tmp_data = home / (DATA_FILE_NAME + ".tmp")
    tmp_meta = home / (META_FILE_NAME + ".tmp")
    tmp_data.write_bytes(raw)
    tmp_meta.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    tmp_data.replace(home / DATA_FILE_NAME)
    tmp_meta.replace(home / META_FILE_NAME)
    return load_price_data(home, today=today)


def remove_data_file(home: Path) -> bool:
    """Go back to the bundled snapshot. Returns whether a file was removed."""
    removed = False
    for name in (DATA_FILE_NAME, META_FILE_NAME):
        path = home / name
        if path.exists():
            path.unlink()
            removed = True
    return removed


def _parse_data_file(path: Path) -> list[gp.Provider]:
    try:
        raw: Any = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise CatalogError(f"price data file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise CatalogError(f"price data file {path} is not readable JSON: {exc}") from None
    if not isinstance(raw, list):
        raise CatalogError(
            f"price data file {path} must be a JSON array of providers (genai-prices' data.json format), "
            f"got a {type(raw).__name__}"
        )
    try:
        # genai-prices' own schema validation for its data file; it is private API, pinned by version.
        return gp._providers_from_raw(raw)  # type: ignore[attr-defined]
    except Exception as exc:  # pydantic ValidationError and friends: report, never half-load
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CatalogError(f"price data file {path} does not match the genai-prices schema: {first_line}") from None


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}
