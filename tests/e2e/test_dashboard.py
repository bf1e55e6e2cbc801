"""The dashboard in a real headless Chromium (Debian's ``chromium`` driven by Playwright), against the real
gateway (``margin serve`` in a subprocess) fed with real traffic through the official ``openai`` SDK:
signing in, every page loading with its charts drawn, the numbers shown equal to the ledger's, no console
error, no failed request, no request leaving the gateway, and an HTML report that works from a file.

Chromium comes from Debian, never from Playwright's downloads: ``scripts/test-deps.sh`` (run by ``make test``)
installs it in CI. Without it these tests skip, except in CI (CI=true), where they fail."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from margin.money import format_usd

from .conftest import RunningGateway, start_gateway

CHROMIUM = os.environ.get("MARGIN_CHROMIUM", "/usr/bin/chromium")
# This machine's closed network refuses Chromium's background connections; these flags stop it trying.
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
DASH = "dash-key-e2e-read-only"
MASTER = "mk-master-test"  # what tests/e2e/conftest.py gives every gateway
EVIL_TEAM = "<script>alert(1)</script>"
PAGES = ["", "/teams", "/projects", "/features", "/models", "/alerts", "/recommendations", "/tasks"]
PERIOD = datetime.now(UTC).strftime("%Y-%m")


def _need_browser() -> Any:
    """Playwright's sync API, or a skip (a failure in CI) saying how to get what is missing."""
    missing = None
    if not os.access(CHROMIUM, os.X_OK):
        missing = (
            f"the dashboard's browser tests need Debian's chromium at {CHROMIUM}: sudo apt-get install chromium "
            "(or MARGIN_INSTALL_TEST_DEPS=1 make test)"
        )
    try:
        from playwright import sync_api
    except ImportError:
        missing = "the dashboard's browser tests need playwright: pip install -e '.[dev]'"
        sync_api = None
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing + " (CI=true: a missing browser fails instead of skipping)")
        pytest.skip(missing)
    return sync_api


CONFIG = """\
gateway:
  budgets:
    - {name: ml-month, scope: team, value: ml, period: month, amount: 0.05}
    - {name: all-month, scope: global, period: month, amount: 100}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory) -> Iterator[RunningGateway]:
    _need_browser()
    running = start_gateway(tmp_path_factory.mktemp("dashboard"), CONFIG, extra_env={"MARGIN_DASHBOARD_KEY": DASH})
    try:
        _traffic(running)
        yield running
    finally:
        running.stop()


def _traffic(gw: RunningGateway) -> None:
    """Real requests through the official SDK: three teams (one with a name that is an HTML script), projects,
    features, three models, a task that succeeds and one that fails, and enough requests without max_tokens for
    the max_tokens recommendation."""
    plan = [("ml", "search", "qa", "gpt-4o"), ("web", "shop", "chat", "gpt-4o-mini"), (EVIL_TEAM, "x", "qa", None)]
    for team, project, feature, model in plan:
        created = httpx2.post(
            gw.base_url + "/v1/margin/keys",
            json={"team": team, "project": project},
            headers={"authorization": f"Bearer {MASTER}"},
        )
        key = created.json()["key"]
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
        for i in range(3):
            client.chat.completions.create(
                model=model or ("claude-haiku-4-5" if i else "gpt-4o-mini"),
                max_tokens=40,
                messages=[{"role": "user", "content": f"{team} question {i}"}],
                extra_headers={"X-Margin-Tags": f"feature={feature}", "X-Margin-Task-Id": f"task-{project}"},
            )
        if team == "ml":
            for i in range(22):  # no max_tokens: each reserves the gateway's default cap
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"short {i}"}]
                )
        outcome = {"ml": "success", "web": "failure"}.get(team)
        if outcome:
            response = httpx2.post(
                f"{gw.base_url}/v1/margin/tasks/task-{project}/outcome",
                json={"outcome": outcome},
                headers={"authorization": f"Bearer {key}"},
            )
            assert response.status_code == 200, response.text
    gw.flush_ledger()


class Watch:
    """Everything a page did wrong: console errors, uncaught exceptions, failed or refused requests, requests
    to anywhere but the gateway (aborted), and dialogs (an injected alert() would open one)."""

    def __init__(self, context: Any, allowed: str) -> None:
        self.problems: list[str] = []
        self.allowed = allowed
        context.route("**/*", self._route)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.allowed) or url.startswith("data:"):
            route.continue_()
        else:
            self.problems.append(f"request outside {self.allowed}: {url}")
            route.abort()

    def attach(self, page: Any) -> Any:
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))

        def dialog(d: Any) -> None:
            self.problems.append(f"dialog: {d.message}")
            d.dismiss()

        page.on("dialog", dialog)
        return page


@pytest.fixture(scope="module")
def browser(gw) -> Iterator[Any]:
    sync_api = _need_browser()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def signed_in(browser, gw) -> Iterator[tuple[Any, Watch]]:
    """One page signed in through the login form with the read-only dashboard key."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)  # a chart that never draws fails in seconds, not minutes
    watch = Watch(context, gw.base_url)
    page = watch.attach(context.new_page())
    page.goto(gw.base_url + "/dashboard/teams")
    assert "/dashboard/login" in page.url  # not signed in: sent to the form
    page.fill("input[name=key]", DASH)
    page.click("button[type=submit]")
    page.wait_for_url(gw.base_url + "/dashboard/teams")
    yield page, watch
    context.close()


def _charts_drawn(page: Any) -> list[dict[str, Any]]:
    """Wait until the loader drew every chart, then describe each (plotly's elements and its traces)."""
    page.wait_for_function("[...document.querySelectorAll('.chart')].every(c => c.dataset.rendered === 'true')")
    return page.eval_on_selector_all(
        ".chart",
        """charts => charts.map(c => ({
            id: c.id,
            plot: c.classList.contains('js-plotly-plot'),
            svg: c.querySelectorAll('.main-svg').length,
            traces: (c.data || []).length,
            drawn: c.querySelectorAll('g.trace').length,
        }))""",
    )


def test_every_page_loads_and_draws_its_charts(gw, signed_in):
    page, watch = signed_in
    for path in PAGES:
        page.goto(f"{gw.base_url}/dashboard{path}?period={PERIOD}")
        charts = _charts_drawn(page)
        assert charts, f"no chart on /dashboard{path}"
        for chart in charts:
            assert chart["plot"] and chart["svg"] >= 1 and chart["traces"] >= 1 and chart["drawn"] >= 1, (path, chart)
        assert page.locator('nav a[aria-current="page"]').count() == 1
    assert watch.problems == []


def _ledger_spend(gw: RunningGateway, by: str | None = None) -> dict[str | None, Decimal]:
    """Exact spend this month from the admin API (the sum of each event's Decimal cost)."""
    month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    response = httpx2.get(
        gw.base_url + "/v1/margin/spend",
        params={"since": month.isoformat(), **({"by": by} if by else {})},
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert response.status_code == 200, response.text
    return {r["group"]: Decimal(r["effective_cost"]) for r in response.json()["rows"]}


@pytest.fixture(scope="module")
def reports(gw) -> dict[str, dict[str, Any]]:
    """``margin report overview|teams|tasks --json`` on the seeded ledger, run side by side (each is a CLI
    process start)."""
    names = ("overview", "teams", "tasks")
    with ThreadPoolExecutor(len(names)) as pool:
        done = pool.map(lambda name: gw.margin("report", name, "--period", PERIOD, "--json").stdout, names)
        return {name: json.loads(out) for name, out in zip(names, done, strict=True)}


def _money(locator: Any) -> tuple[str, Decimal]:
    """A money figure as shown, and its exact value."""
    return locator.inner_text(), Decimal(locator.get_attribute("data-exact"))


def test_numbers_shown_are_the_ledgers(gw, signed_in, reports):
    page, watch = signed_in
    spend = _ledger_spend(gw)[None]
    overview = reports["overview"]
    page.goto(f"{gw.base_url}/dashboard?period={PERIOD}")
    shown, exact = _money(page.locator('[data-stat="mtd-effective"] .value .money'))
    assert exact == Decimal(overview["total"]["effective_cost"])  # the rollups, to the nano-dollar
    assert abs(exact - spend) <= Decimal("1e-9") * overview["total"]["requests"]  # each event rounded once
    assert shown == format_usd(spend)
    ml_budget = page.locator('[data-table="budgets"] tr[data-group="ml-month:ml"] td')
    assert ml_budget.nth(4).inner_text() == format_usd(_ledger_spend(gw, "team")["ml"])

    page.goto(f"{gw.base_url}/dashboard/teams?period={PERIOD}")
    by_team = _ledger_spend(gw, "team")
    report = {r["group"]: Decimal(r["effective_cost"]) for r in reports["teams"]["rows"]}
    rows = page.locator('[data-table="groups"] tbody tr[data-group]')
    seen = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        team = row.get_attribute("data-group")
        assert row.locator("td").first.inner_text() == team  # the name shown as text, markup and all
        seen[team] = _money(row.locator("td").nth(5).locator(".money"))
    assert set(seen) == set(by_team) == {"ml", "web", EVIL_TEAM}
    for team, (text, exact) in seen.items():
        assert exact == report[team] and text == format_usd(by_team[team])
    assert page.locator(f"text={EVIL_TEAM}").count() >= 1

    page.goto(f"{gw.base_url}/dashboard/tasks?period={PERIOD}")
    tasks = reports["tasks"]
    _, per_success = _money(page.locator('[data-stat="cost-per-success"] .value .money'))
    assert per_success == Decimal(tasks["cost_per_successful_task"]) and tasks["succeeded"] == 1
    assert page.locator('[data-stat="tasks"] .value').inner_text() == str(tasks["tasks"])
    assert watch.problems == []


def test_wrong_key_and_what_the_dashboard_key_cannot_open(gw, browser):
    context = browser.new_context()
    watch = Watch(context, gw.base_url)
    page = context.new_page()
    page.on("dialog", lambda d: d.dismiss())
    page.goto(gw.base_url + "/dashboard/login")
    page.fill("input[name=key]", "not-the-key")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text().startswith("that key does not open the dashboard")
    assert "/dashboard/login" in page.url and context.cookies() == []
    context.close()
    assert watch.problems == []
    dash = {"authorization": f"Bearer {DASH}"}
    assert httpx2.get(gw.base_url + "/v1/margin/keys", headers=dash).status_code == 403
    assert httpx2.get(gw.base_url + "/dashboard/api/teams.json", headers=dash).status_code == 200


def test_without_any_key_the_dashboard_says_what_to_set(browser, tmp_path):
    running = start_gateway(tmp_path, "gateway: {}\n", extra_env={"MARGIN_MASTER_KEY": ""})
    try:
        page = browser.new_page()
        response = page.goto(running.base_url + "/dashboard")
        assert response.status == 403
        text = page.inner_text("main")
        assert "MARGIN_DASHBOARD_KEY" in text and "MARGIN_MASTER_KEY" in text and "restart" in text
        page.close()
    finally:
        running.stop()


def test_html_report_works_from_a_file_with_no_network(gw, browser, reports, tmp_path):
    target = tmp_path / "teams.html"
    gw.margin("report", "teams", "--period", PERIOD, "--html", str(target))
    context = browser.new_context()
    watch = Watch(context, target.as_uri())  # nothing but the file itself may load
    page = watch.attach(context.new_page())
    page.goto(target.as_uri())
    charts = _charts_drawn(page)
    assert len(charts) == 2 and all(c["svg"] and c["drawn"] for c in charts)
    total = page.locator('tr[data-group="TOTAL"] td').nth(5).locator(".money")
    assert Decimal(total.get_attribute("data-exact")) == sum(
        Decimal(r["effective_cost"]) for r in reports["teams"]["rows"]
    )
    assert re.fullmatch(r"\$[\d,.]+", total.inner_text())
    context.close()
    assert watch.problems == []
    assert Path(target).stat().st_size > 1_000_000  # plotly.js is inside
