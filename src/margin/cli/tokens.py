"""``margin tokens count``: offline token counts, exact for OpenAI encodings, labelled estimates otherwise."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import tokens as token_core
from ..errors import MarginError
from ._common import out_console, print_json, state

app = typer.Typer(help="Count tokens offline.", no_args_is_help=True)


class InputError(MarginError):
    exit_code = 2


@app.command("count")
def count(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model whose tokenizer to use, e.g. gpt-4o.")],
    source: Annotated[str, typer.Argument(help="File to count, or - for stdin.")] = "-",
    messages: Annotated[
        bool,
        typer.Option(
            "--messages",
            help="The input is a JSON chat messages array (or {messages: [...]}); count with the per-message overhead.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Count the tokens of a text or a chat conversation.

    Exact for OpenAI models (o200k_base, cl100k_base, verified vocabularies shipped in a package);
    for other families an estimate from o200k_base times a per-family factor, always labelled as such.
    """
    st = state(ctx)
    text = _read(source)
    factors = st.config.tokens.family_factors or None
    if messages:
        result = token_core.count_messages(_parse_messages(text, source), model, family_factors=factors)
    else:
        result = token_core.count_text(text, model, family_factors=factors)
    words = len(text.split()) if not messages else None
    if as_json:
        print_json(
            {
                "tokens": result.tokens,
                "model": result.model,
                "encoding": result.encoding,
                "exact": result.exact,
                "method": result.method,
                "factor": result.factor,
                "words": words,
                "characters": len(text),
            }
        )
        return
    label = "" if result.exact else "ESTIMATE: "
    out_console.print(f"{label}{result.tokens:,} tokens ({result.method})")
    if words is not None:
        out_console.print(f"[dim]{words:,} words, {len(text):,} characters[/]")


def _read(source: str) -> str:
    try:
        if source == "-":
            return sys.stdin.read()
        return Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"file {source} does not exist") from None
    except UnicodeDecodeError:
        raise InputError(f"file {source} is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc}") from None


def _parse_messages(text: str, source: str) -> list[Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"--messages expects JSON from {source}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        data = data["messages"]
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise InputError('--messages expects a JSON array of {role, content} objects, or {"messages": [...]}')
    return data
