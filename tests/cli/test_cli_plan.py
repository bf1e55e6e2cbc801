"""``margin plan`` end to end through the CLI entry point: every model's example in every output mode,
and bad scenarios as one-line errors with exit code 2."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
import yaml

from margin.cli import main
from margin.plan import MODEL_NAMES, get_model


def run(capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_example_runs_in_every_output_mode(capsys, tmp_path, name):
    code, example, _ = run(capsys, "plan", name, "--example")
    assert code == 0 and example.strip()
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(example)

    code, table, err = run(capsys, "plan", name, "--scenario", str(scenario))
    assert code == 0, err
    assert get_model(name).report  # the title of the report is printed
    assert table.strip()

    code, out, err = run(capsys, "plan", name, "--scenario", str(scenario), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["model"] == name
    assert isinstance(document["result"], dict) and document["result"]
    assert "E+" not in out  # Decimals are positional digits, never scientific notation

    code, out, err = run(capsys, "plan", name, "--scenario", str(scenario), "--csv")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert len(rows) >= 2 and all(len(row) == len(rows[0]) for row in rows)
    assert not any(cell.startswith(("$", "-$")) for row in rows[1:] for cell in row)  # raw numbers


def test_scenario_as_json_file_and_stdin(capsys, tmp_path, monkeypatch):
    scenario = {
        "requests_per_day": 1000,
        "input_tokens": 2000,
        "output_tokens": 500,
        "models": [{"name": "x", "input_per_mtok": 5, "output_per_mtok": 30}],
    }
    path = tmp_path / "s.json"
    path.write_text(json.dumps(scenario))
    code, out, _ = run(capsys, "plan", "envelope", "--scenario", str(path), "--json")
    assert code == 0
    from_file = json.loads(out)
    code, out, _ = run(
        capsys, "plan", "envelope", "-s", "-", "--json", stdin=json.dumps(scenario), monkeypatch=monkeypatch
    )
    assert code == 0 and json.loads(out) == from_file
    # The per-day cost is derived here from the formula, not copied: 1000 x (2000 x 5 + 500 x 30) / 1e6.
    assert Decimal(1000) * (2000 * 5 + 500 * 30) / 10**6 == Decimal(25)
    assert "25" in json.dumps(from_file)


@pytest.mark.parametrize(
    ("model", "mutate", "message"),
    [
        ("breakeven", {"gpu_utilization": 0}, "gpu_utilization"),
        ("envelope", {"requests_per_day": -5}, "requests_per_day"),
        ("unit-economics", {"monthly_active_users": None}, "monthly_active_users"),
        ("tco", {"storage": -1}, "storage"),
        ("build-vs-buy", {"monthly_requests_year1": [1, 2, 3]}, "monthly_requests_year1"),
        ("envelope", {"not_a_field": 1}, "not_a_field"),
    ],
)
def test_bad_scenarios_name_the_field_and_exit_2(capsys, tmp_path, model, mutate, message):
    scenario = yaml.safe_load(get_model(model).example)
    for key, value in mutate.items():
        if value is None:
            scenario.pop(key, None)
        else:
            scenario[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(scenario))
    code, out, err = run(capsys, "plan", model, "--scenario", str(path))
    assert code == 2
    assert message in err
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) <= 3


def test_unknown_model_in_scenario_suggests(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("requests_per_day: 10\ninput_tokens: 10\noutput_tokens: 5\nmodels: [gpt-4o-mimi]\n")
    code, _, err = run(capsys, "plan", "envelope", "--scenario", str(path))
    assert code == 2 and "gpt-4o-mini" in err


@pytest.mark.parametrize(
    ("argv", "content", "message"),
    [
        (["plan", "nope", "--scenario", "x.yaml"], None, "unknown planner model"),
        (["plan", "envelope", "--scenario", "missing.yaml"], None, "does not exist"),
        (["plan", "envelope", "--scenario", "s.yaml"], "", "is empty"),
        (["plan", "envelope", "--scenario", "s.yaml"], "a: [1, 2", "neither valid YAML nor JSON"),
        (["plan", "envelope", "--scenario", "s.yaml"], "- 1\n- 2\n", "must be a mapping"),
        (["plan", "envelope"], None, "--example"),
    ],
)
def test_unusable_scenario_files(capsys, tmp_path, argv, content, message):
    if content is not None:
        (tmp_path / "s.yaml").write_text(content)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in out + err


def test_plan_without_model_lists_all(capsys):
    code, out, _ = run(capsys, "plan")
    assert code == 0
    for name in MODEL_NAMES:
        assert name in out


def test_demo_prints_comparison_and_breakeven(capsys):
    code, out, err = run(capsys, "demo")
    assert code == 0, err
    assert "Envelope" in out or "envelope" in out
    assert "break" in out.lower()
