"""One exception tree for margin.

Every error a user can cause derives from :class:`MarginError` and carries a message that says what was
wrong and how to fix it. The CLI turns these into a one-line message and exit code 2 (bad input) without
a traceback; later the gateway maps ``http_status`` and ``error_type`` onto OpenAI-style JSON bodies.
"""

from __future__ import annotations

__all__ = [
    "CatalogError",
    "ConfigError",
    "MarginError",
    "ScenarioError",
    "TokenizerError",
    "UnknownModelError",
]


class MarginError(Exception):
    """Base class of every error margin raises on purpose."""

    exit_code: int = 1
    http_status: int = 500
    error_type: str = "margin_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(MarginError):
    """The config file is missing, unreadable or invalid."""

    exit_code = 2
    http_status = 500
    error_type = "config_error"


class ScenarioError(MarginError):
    """A planner scenario is invalid. ``field`` names the offending field (dotted path)."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class CatalogError(MarginError):
    """The price catalog could not be loaded or a price is malformed."""

    exit_code = 2
    http_status = 500
    error_type = "catalog_error"


class UnknownModelError(CatalogError):
    """No price is known for a model. ``suggestions`` holds close names."""

    http_status = 404
    error_type = "model_not_found"

    def __init__(self, model: str, suggestions: list[str], *, provider: str | None = None) -> None:
        self.model = model
        self.suggestions = suggestions
        where = f" from provider {provider!r}" if provider else ""
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(
            f"unknown model {model!r}{where}.{hint} "
            "Run `margin prices list --search TEXT` to browse, or add it under `prices.custom_models:` in margin.yaml."
        )


class TokenizerError(MarginError):
    """A tokenizer vocabulary is missing or fails its integrity check."""

    exit_code = 2
    error_type = "tokenizer_error"
