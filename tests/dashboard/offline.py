"""What makes an HTML file need a network: elements that load a resource from a URL."""

from __future__ import annotations

from html.parser import HTMLParser

URL_ATTRIBUTES = {"src", "href", "action", "data", "poster", "srcset", "formaction", "background"}


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str, str]] = []
        self.script_sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value is not None:
                self.found.append((tag, name, value))
                if tag == "script" and name == "src":
                    self.script_sources.append(value)


def resource_urls(page: str) -> list[tuple[str, str, str]]:
    """Every (tag, attribute, value) that names something to load or go to."""
    parser = _Resources()
    parser.feed(page)
    return parser.found


def network_references(page: str) -> list[tuple[str, str, str]]:
    """The resource URLs that point at a network (http, https or protocol-relative)."""
    return [r for r in resource_urls(page) if r[2].strip().lower().startswith(("http://", "https://", "//"))]


def script_sources(page: str) -> list[str]:
    parser = _Resources()
    parser.feed(page)
    return parser.script_sources
