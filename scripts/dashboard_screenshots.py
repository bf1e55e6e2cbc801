"""Screenshots of the dashboard and of an HTML report for docs/insights.md.

    .venv/bin/python scripts/dashboard_screenshots.py [--out docs/img]

Builds a throwaway ledger with three weeks of made-up traffic for a few teams (written straight into the
ledger, back-dated, so the trend and the forecast have history), a spend spike a few hours ago (stored as an
alert by ``margin alerts check``), tasks with outcomes; then starts the real gateway on it, sends a few live
requests through the official openai SDK, signs in to the dashboard in headless Chromium (Debian's
``chromium``, as the browser tests use it) and saves 1280x900 PNGs. Nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import openai

from margin.config import PricesConfig
from margin.pricing import Catalog, TokenUsage, load_price_data
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

CHROMIUM = os.environ.get("MARGIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DASHBOARD_KEY = "md-screenshots"
CONFIG = """\
gateway:
  budgets:
    - {name: platform-month, scope: global, period: month, amount: 60}
    - {name: search-month, scope: team, value: search, period: month, amount: 12}
    - {name: support-month, scope: team, value: support, period: month, amount: 9.5}
insights:
  alerts: {enabled: true, interval_seconds: 3600, spike_multiple: 3, min_hourly_cost: 0.50, sinks: [{type: log}]}
  allocation_rules:
    - {category: platform_fee, method: even}
"""
# team -> (project, feature, model, requests per weekday, input tokens, output tokens)
TRAFFIC = {
    "search": ("search", "answers", "gpt-4o", 70, 2400, 350),
    "support": ("helpdesk", "chatbot", "claude-sonnet-4-6", 40, 1800, 420),
    "growth": ("campaigns", "emails", "gpt-4o-mini", 220, 900, 500),
    "data": ("etl", "extraction", "claude-haiku-4-5", 120, 3200, 180),
}
WEEKDAY = (1.0, 1.1, 1.05, 1.0, 0.9, 0.35, 0.3)  # quieter weekends


def _history(ledger_path: Path, home: Path, now: datetime) -> None:
    catalog = Catalog.from_data(load_price_data(home), PricesConfig())
    rng = random.Random(7)
    events: list[UsageEvent] = []
    start = (now - timedelta(days=24)).replace(hour=0, minute=0, second=0, microsecond=0)
    day = start
    while day < now.replace(hour=0, minute=0, second=0, microsecond=0):
        for team, (project, feature, model, per_day, inp, out) in TRAFFIC.items():
            for _ in range(int(per_day * WEEKDAY[day.weekday()] * rng.uniform(0.8, 1.2))):
                when = day + timedelta(seconds=rng.randrange(86_400))
                usage = TokenUsage(
                    input_tokens=int(inp * rng.uniform(0.5, 1.5)), output_tokens=int(out * rng.uniform(0.3, 1.2))
                )
                events.append(_event(len(events), when, team, project, feature, model, usage, catalog))
        day += timedelta(days=1)
    # A spike: support's bot loops for an hour, a few hours ago.
    spike = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    for i in range(90):
        usage = TokenUsage(input_tokens=6000, output_tokens=900)
        when = spike + timedelta(seconds=i * 30)
        events.append(_event(len(events), when, "support", "helpdesk", "chatbot", "claude-sonnet-4-6", usage, catalog))

    async def write() -> None:
        ledger = SQLiteLedger(ledger_path)
        for event in events:
            await ledger.write_event(event, wait=False)
        await ledger.flush()
        await ledger.aclose()

    asyncio.run(write())
    ledger = SQLiteLedger(ledger_path)
    try:
        for i in range(40):
            ledger.set_task_outcome(f"ticket-{i}", "failure" if i % 5 == 0 else "success")
    finally:
        ledger.close()


def _event(i, when, team, project, feature, model, usage, catalog) -> UsageEvent:
    cost = catalog.price(usage, model, at=when)
    return UsageEvent(
        event_id=f"hist-{i}",
        request_id=f"hist-{i}",
        attempt=0,
        started_at=when - timedelta(seconds=2),
        finished_at=when,
        status="ok",
        endpoint="chat.completions",
        requested_model=model,
        served_model=model,
        provider="mock",
        tags={"team": team, "project": project, "feature": feature},
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        list_cost=cost.list_cost,
        effective_cost=cost.effective_cost,
        max_tokens=4096,
        task_id=f"ticket-{i % 40}" if team == "support" and i % 3 == 0 else None,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "img")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    period = f"{now:%Y-%m}"
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        home = tmp / "home"
        home.mkdir()
        config = tmp / "margin.yaml"
        config.write_text(CONFIG)
        _history(home / "ledger.db", home, now)
        env = {
            **os.environ,
            "MARGIN_HOME": str(home),
            "MARGIN_DASHBOARD_KEY": DASHBOARD_KEY,
            "MARGIN_MASTER_KEY": "mk-screenshots",
        }
        margin = [sys.executable, "-m", "margin", "--config", str(config)]
        subprocess.run([*margin, "alerts", "check"], env=env, check=True, capture_output=True)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        gateway = subprocess.Popen(
            [*margin, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx2.get(base + "/health", timeout=0.5).status_code == 200:
                        break
                except httpx2.HTTPError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the gateway did not start") from None
                    time.sleep(0.1)
            client = openai.OpenAI(base_url=base + "/v1", api_key="mk-screenshots", max_retries=0)
            for i in range(5):
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    max_tokens=60,
                    messages=[{"role": "user", "content": f"draft a subject line #{i}"}],
                    extra_headers={"X-Margin-Tags": "team=growth,project=campaigns,feature=emails"},
                )
            # Shared costs for the showback report: a GPU node split by tokens (the default), a fee split evenly.
            for name, category, amount in (("gpu-node", "gpu", "12"), ("observability", "platform_fee", "8")):
                subprocess.run(
                    [*margin, "costs", "add", name, "--period", period, "--category", category, "--amount", amount],
                    env=env,
                    check=True,
                    capture_output=True,
                )
            report = tmp / "showback.html"
            subprocess.run(
                [*margin, "report", "attribution", "--period", period, "--html", str(report)],
                env=env,
                check=True,
                capture_output=True,
            )
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(base + "/dashboard/login")
                page.fill("input[name=key]", DASHBOARD_KEY)
                page.click("button[type=submit]")
                page.wait_for_url(base + "/dashboard")
                shots = {
                    "dashboard-overview.png": f"{base}/dashboard?period={period}",
                    "dashboard-teams.png": f"{base}/dashboard/teams?period={period}",
                    "dashboard-alerts.png": f"{base}/dashboard/alerts?period={period}",
                    "report-showback.png": report.as_uri(),
                }
                for name, url in shots.items():
                    page.goto(url)
                    page.wait_for_function(
                        "[...document.querySelectorAll('.chart')].every(c => c.dataset.rendered === 'true')"
                    )
                    page.screenshot(path=str(args.out / name))
                    print(f"wrote {args.out / name}")
                browser.close()
        finally:
            gateway.terminate()
            gateway.wait(timeout=20)


if __name__ == "__main__":
    main()
