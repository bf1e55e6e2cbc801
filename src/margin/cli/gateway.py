"""``margin serve``, ``margin keys``, ``margin spend`` and ``margin cache``: run the gateway, manage virtual keys,
read the ledger, invalidate cached answers."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table as RichTable

from ..config import MarginConfig
from ..errors import MarginError
from ..keys import new_virtual_key
from ..money import format_usd
from ..store.base import MeteringLedger, VirtualKey
from ..store.location import ledger_location
from ..store.location import open_ledger as open_ledger_at
from ._common import err_console, out_console, print_json, state

keys_app = typer.Typer(
    help="Virtual keys: each carries a user, team, project, tags, an optional budget and models.", no_args_is_help=True
)

cache_app = typer.Typer(help="The gateway's exact cache (it lives in the running gateway).", no_args_is_help=True)

GROUPS = ("key", "user", "team", "project", "feature", "model", "provider", "status")


def open_ledger(config: MarginConfig) -> MeteringLedger:
    """The ledger ``gateway.database`` names: a SQLite file (the default, ``$MARGIN_HOME/ledger.db``) or a
    PostgreSQL URL, the same selection as ``margin serve``."""
    return open_ledger_at(ledger_location(config))


def create_key(
    ledger: MeteringLedger,
    *,
    user: str | None,
    team: str | None,
    project: str | None,
    tags: dict[str, str],
    budget: str | None,
    models: tuple[str, ...],
) -> tuple[str, VirtualKey]:
    secret, key = new_virtual_key(user=user, team=team, project=project, tags=tags, budget=budget, models=models)
    ledger.create_key(key)
    return secret, key


def _parse_tags(values: list[str]) -> dict[str, str]:
    tags = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--tag")
        tags[name.strip()] = value.strip()
    return tags


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Who uses the key.")] = None,
    team: Annotated[str | None, typer.Option("--team", "-t", help="Team the spend belongs to.")] = None,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project the spend belongs to.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Extra tag NAME=VALUE (repeatable).")] = None,
    budget: Annotated[
        str | None, typer.Option("--budget", help="Spend budget, e.g. 5/day, 100/month, 0.5/request.")
    ] = None,
    models: Annotated[str | None, typer.Option("--models", help="Comma-separated models the key may use.")] = None,
) -> None:
    """Create a key and print it ONCE (only its hash is stored)."""
    st = state(ctx)
    tags = _parse_tags(tag or [])
    allowed = tuple(m.strip() for m in (models or "").split(",") if m.strip())
    ledger = open_ledger(st.config)
    try:
        secret, key = create_key(
            ledger, user=user, team=team, project=project, tags=tags, budget=budget, models=allowed
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--budget") from None
    finally:
        ledger.close()
    out_console.print(secret)
    err_console.print(f"[dim]key {key.prefix}… created (id {key.key_id}); store it now: it is not shown again[/]")


@keys_app.command("list")
def keys_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List keys (prefix, owner, tags, budget, status). Secrets are never shown."""
    st = state(ctx)
    ledger = open_ledger(st.config)
    try:
        keys = ledger.list_keys()
    finally:
        ledger.close()
    if as_json:
        print_json([{k: v for k, v in vars(key).items() if k != "key_hash"} for key in keys])
        return
    table = RichTable(title="Virtual keys", title_justify="left")
    for header in ("id", "prefix", "user", "team", "project", "tags", "budget", "models", "created", "status"):
        table.add_column(header)
    for key in keys:
        table.add_row(
            key.key_id,
            key.prefix + "…",
            key.user or "-",
            key.team or "-",
            key.project or "-",
            ",".join(f"{k}={v}" for k, v in key.tags.items()) or "-",
            key.budget or "-",
            ",".join(key.models) or "all",
            key.created_at.strftime("%Y-%m-%d %H:%M"),
            "revoked" if key.revoked_at else "active",
        )
    out_console.print(table)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key: Annotated[str, typer.Argument(help="Key id or prefix.")]) -> None:
    """Revoke a key; requests with it are refused within seconds."""
    st = state(ctx)
    ledger = open_ledger(st.config)
    try:
        done = ledger.revoke_key(key)
    finally:
        ledger.close()
    if not done:
        raise typer.BadParameter(f"no active key with id or prefix {key!r}; see `margin keys list`", param_hint="KEY")
    out_console.print(f"revoked {key}")


def parse_since(value: str | None) -> datetime | None:
    """``7d``, ``24h``, ``30m`` ago, or a date/datetime (UTC)."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)([dhm])", value.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        delta = {"d": timedelta(days=amount), "h": timedelta(hours=amount), "m": timedelta(minutes=amount)}[unit]
        return datetime.now(UTC) - delta
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: use 7d, 24h, 30m or a date like 2026-11-01", param_hint="--since"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def spend_command(
    ctx: typer.Context,
    by: Annotated[str | None, typer.Option("--by", help=f"Group by one of {', '.join(GROUPS)} or tag:NAME.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="7d, 24h, or a date (UTC). Default: everything.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Spend from the ledger: requests, tokens, list and effective cost, optionally grouped."""
    if by is not None and by not in GROUPS and not (by.startswith("tag:") and len(by) > 4):
        raise typer.BadParameter(f"choose one of {', '.join(GROUPS)} or tag:NAME", param_hint="--by")
    st = state(ctx)
    start = parse_since(since)
    ledger = open_ledger(st.config)
    try:
        rows = ledger.spend(start, None, by)
    finally:
        ledger.close()
    if as_json:
        print_json({"since": start, "by": by, "rows": [vars(r) for r in rows]})
        return
    table = RichTable(
        title=f"Spend{' by ' + by if by else ''}{' since ' + start.isoformat(timespec='minutes') if start else ''}",
        title_justify="left",
    )
    for header in (by or "all", "requests", "input tokens", "cached", "output tokens", "list cost", "effective cost"):
        table.add_column(header, justify="left" if header in (by, "all") else "right")
    for r in rows:
        table.add_row(
            r.group if r.group is not None else ("(all)" if by is None else "(untagged)"),
            f"{r.requests:,}",
            f"{r.input_tokens:,}",
            f"{r.cache_read_tokens:,}",
            f"{r.output_tokens:,}",
            format_usd(r.list_cost),
            format_usd(r.effective_cost),
        )
    out_console.print(table)


def _announce_dashboard(base: str, config: MarginConfig, *, has_master_key: bool, demo: bool) -> None:
    """Print where the dashboard is and what opens it. With ``--demo-key`` and no key configured, a dashboard
    key is made for this run only (never stored): ``make run`` then shows a working dashboard at once."""
    import os
    import secrets

    env = config.gateway.dashboard_key_env
    url = f"{base}/dashboard"
    if os.environ.get(env):
        line = f"dashboard: {url}  (sign in with the key in {env}, or the master key)"
    elif has_master_key:
        line = f"dashboard: {url}  (sign in with the master key; set {env} for a read-only key)"
    elif demo:
        key = "md-" + secrets.token_urlsafe(24)
        # The dashboard's routes read this variable when the app is built, just after this: this process only.
        os.environ[env] = key
        line = f"dashboard: {url}  (dashboard key for this run: {key})"
    else:
        line = f"dashboard: {url} is disabled: set {env} (a read-only key) or {config.gateway.master_key_env}"
    # Plain print: a terminal-width wrap would break the URL and the key apart.
    print(line, flush=True)


def serve_command(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 4000).")] = None,
    demo_key: Annotated[bool, typer.Option("--demo-key", help="Create and print a demo key at start.")] = False,
    reuse_port: Annotated[
        bool,
        typer.Option(
            "--reuse-port",
            help="Listen with SO_REUSEPORT, so that several `margin serve` processes on this host share the port "
            "and the kernel spreads connections over them (give them one PostgreSQL or SQLite ledger and one "
            "Redis: docs/deploy.md).",
        ),
    ] = False,
) -> None:
    """Run the metering gateway (OpenAI- and Anthropic-compatible)."""
    import uvicorn

    from ..gateway.app import create_app
    from ..gateway.state import build_gateway

    st = state(ctx)
    config = st.config
    gw = build_gateway(config)
    listen_host = host or config.gateway.host
    listen_port = port or config.gateway.port
    base = f"http://{listen_host}:{listen_port}"
    out_console.rule("margin gateway")
    out_console.print(f"listening on {base}  (OpenAI: {base}/v1, Anthropic: {base})")
    out_console.print(f"models: {', '.join(sorted(gw.routes))}")
    out_console.print(f"ledger: {gw.ledger.describe()}")
    _announce_dashboard(base, config, has_master_key=gw.master_key is not None, demo=demo_key)
    if demo_key:
        secret, _ = create_key(
            gw.ledger, user="demo", team="demo", project="demo", tags={"environment": "dev"}, budget=None, models=()
        )
        out_console.print(f"demo key: [bold]{secret}[/]")
        # Plain print: a terminal-width wrap would break the copy-paste line.
        print(
            f"try: python -c \"from openai import OpenAI; c = OpenAI(base_url='{base}/v1', "
            f"api_key='{secret}'); print(c.chat.completions.create(model='gpt-4o-mini', "
            "messages=[{'role': 'user', 'content': 'hello'}]).choices[0].message.content)\"",
            flush=True,
        )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(gw),
            host=listen_host,
            port=listen_port,
            log_level="warning",
            loop="uvloop",
            http="httptools",
            lifespan="on",
            timeout_graceful_shutdown=10,
            # The gateway reads no client address; skipping X-Forwarded-* parsing saves work on every request.
            proxy_headers=False,
        )
    )
    try:
        server.run(sockets=[_reuse_port_socket(listen_host, listen_port)] if reuse_port else None)
    except KeyboardInterrupt:
        pass
    if not server.started:
        raise typer.Exit(3)  # the start-up failed (uvicorn.run's exit code); the reason is logged above


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (SO_REUSEPORT: Linux, the BSDs, macOS)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise MarginError("--reuse-port needs SO_REUSEPORT, which this platform does not have; use a load balancer")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MarginError(f"cannot listen on {host}:{port} ({exc.strerror}); is another program using it?") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@cache_app.command("clear")
def cache_clear(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", help="The running gateway.")] = "http://127.0.0.1:4000",
    route: Annotated[str | None, typer.Option("--route", help="Only entries stored by this lever route.")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="Only this partition, e.g. team:ml or key:ID.")] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only cache keys starting with this.")] = None,
) -> None:
    """Invalidate cached answers in a running gateway (all of them unless filtered). Needs the master key in
    the environment variable named by gateway.master_key_env (MARGIN_MASTER_KEY)."""
    import os

    import httpx2

    st = state(ctx)
    env = st.config.gateway.master_key_env
    master = os.environ.get(env)
    if not master:
        err_console.print(f"[red]error:[/red] set {env} to the gateway's master key")
        raise typer.Exit(2)
    body = {k: v for k, v in {"route": route, "scope": scope, "prefix": prefix}.items() if v is not None}
    try:
        response = httpx2.post(
            url.rstrip("/") + "/v1/margin/cache/clear", json=body, headers={"authorization": f"Bearer {master}"}
        )
    except httpx2.HTTPError as exc:
        err_console.print(f"[red]error:[/red] cannot reach the gateway at {url}: {exc}")
        raise typer.Exit(1) from None
    if response.status_code != 200:
        err_console.print(f"[red]error:[/red] HTTP {response.status_code}: {response.text}")
        raise typer.Exit(1)
    data = response.json()
    out_console.print(f"cleared {data['cleared']} cached answer(s); {data['remaining']} left")
