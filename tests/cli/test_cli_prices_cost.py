"""The CLI driven through its real entry point (``margin.cli.main``), as the console script runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import pytest

from margin.cli import main
from margin.pricing import TokenUsage, load_catalog


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def test_cost_json_gives_every_period_list_and_effective(capsys, tmp_path):
    config = tmp_path / "margin.yaml"
    config.write_text("prices:\n  discounts:\n    - provider: openai\n      percent: 25\n")
    code, out, _ = run(
        capsys,
        "--config",
        str(config),
        "cost",
        "--model",
        "gpt-4o",
        "--input-tokens",
        "2000",
        "--output-tokens",
        "500",
        "--cached-tokens",
        "1000",
        "--requests-per-day",
        "10000",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    expected = load_catalog().price(TokenUsage(input_tokens=2000, output_tokens=500, cache_read_tokens=1000), "gpt-4o")
    per_request = Decimal(doc["per_request"]["list"])
    assert per_request == expected.list_cost
    assert Decimal(doc["per_day"]["list"]) == per_request * 10000
    assert Decimal(doc["per_month"]["list"]) == per_request * 10000 * 30
    assert Decimal(doc["per_year"]["list"]) == per_request * 10000 * 365
    assert Decimal(doc["per_year"]["effective"]) == per_request * 10000 * 365 * Decimal("0.75")
    assert doc["price_source"].startswith("genai-prices")
    assert doc["prices_checked"]


def test_cost_at_date_and_batch(capsys):
    code, out, _ = run(
        capsys, "cost", "-m", "claude-sonnet-4-5", "-i", "1000", "-o", "1000", "--batch", "--json", "--at", "2026-11-01"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["batch"] is True
    assert doc["priced_at"].startswith("2026-11-01")


def test_cost_table_mentions_source_and_periods(capsys):
    code, out, _ = run(capsys, "cost", "-m", "gpt-4o-mini", "-i", "2000", "-o", "500", "-r", "10000")
    assert code == 0
    for word in ("per request", "per day", "per month", "per year", "price source: genai-prices"):
        assert word in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cost", "-m", "gpt-4o-mimi", "-i", "1", "-o", "1"], "Did you mean: gpt-4o-mini"),
        (["cost", "-m", "gpt-4o", "-i", "10", "-o", "1", "--cached-tokens", "20"], "exceed input_tokens"),
        (["cost", "-m", "gpt-4o", "-i", "-5", "-o", "1"], "--input-tokens"),
        (["cost", "-m", "gpt-4o", "-i", "5", "-o", "1", "--at", "yesterday"], "not a date"),
        (["prices", "show", "nonexistent-model-xyz"], "unknown model"),
        (["prices", "list", "--provider", "nope"], "unknown provider"),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_code_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in out + err
    assert "Traceback" not in out + err


def test_prices_summary_list_and_show(capsys):
    code, out, _ = run(capsys, "prices")
    assert code == 0 and "genai-prices" in out and "models:" in out
    code, out, _ = run(capsys, "prices", "list", "--provider", "openai", "--search", "gpt-4o-mini", "--json")
    assert code == 0
    models = json.loads(out)["models"]
    assert models and all(m["provider"] == "openai" and "gpt-4o-mini" in m["model"] for m in models)
    code, out, _ = run(capsys, "prices", "show", "claude-sonnet-4-5", "--json")
    doc = json.loads(out)
    assert doc["context_window"] == 200000
    tiers = doc["per_million_tokens"]["input"]["tiers"]
    assert tiers and tiers[0]["above_input_tokens"] == 200000
    assert doc["per_million_tokens"]["cached input"] is not None


def test_custom_model_from_config_shows_and_prices(capsys, tmp_path):
    config = tmp_path / "margin.yaml"
    config.write_text(
        "prices:\n  custom_models:\n    - id: my-llama\n      provider: self-hosted\n"
        "      input_mtok: 0.2\n      output_mtok: 0.8\n      prices_checked: 2026-11-01\n"
    )
    code, out, _ = run(capsys, "-c", str(config), "cost", "-m", "my-llama", "-i", "1000000", "-o", "1000000", "--json")
    assert code == 0
    assert Decimal(json.loads(out)["per_request"]["list"]) == Decimal("1.0")
    code, out, _ = run(capsys, "-c", str(config), "prices", "list", "--search", "my-llama")
    assert "(custom)" in out


def test_invalid_config_is_reported(capsys, tmp_path):
    config = tmp_path / "margin.yaml"
    config.write_text("prices:\n  discounts:\n    - percent: 150\n")
    code, _, err = run(capsys, "-c", str(config), "prices")
    assert code == 2
    assert "invalid config file" in err and "percent" in err


def test_stale_catalog_warns(capsys, tmp_path):
    config = tmp_path / "margin.yaml"
    config.write_text("prices:\n  max_age_days: 1\n")
    code, _, err = run(capsys, "-c", str(config), "prices")
    assert code == 0
    assert "warning" in err and "max_age_days=1" in err


def test_prices_update_from_file_and_reset(capsys, tmp_path):
    data = tmp_path / "data.json"
    data.write_text(
        json.dumps(
            [
                {
                    "id": "acme",
                    "name": "Acme",
                    "api_pattern": "x",
                    "models": [
                        {"id": "acme-1", "match": {"equals": "acme-1"}, "prices": {"input_mtok": 1, "output_mtok": 2}}
                    ],
                }
            ]
        )
    )
    code, out, _ = run(capsys, "prices", "update", "--from", str(data))
    assert code == 0 and "1 providers, 1 models" in out
    code, out, _ = run(capsys, "cost", "-m", "acme-1", "-i", "1000000", "-o", "0", "--json")
    assert code == 0 and Decimal(json.loads(out)["per_request"]["list"]) == 1
    code, out, _ = run(capsys, "prices", "update", "--reset")
    assert "bundled" in out
    code, _, err = run(capsys, "cost", "-m", "acme-1", "-i", "1", "-o", "0")
    assert code == 2 and "unknown model" in err


def test_console_script_runs_without_network(tmp_path):
    # The installed entry point, in a fresh process, must work offline and quickly.
    result = subprocess.run(
        [sys.executable, "-m", "margin", "prices", "show", "gpt-4o", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "gpt-4o"
