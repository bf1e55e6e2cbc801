"""Shared costs from a FOCUS bill: rows summed exactly per resource and month, filters, tax and credits
skipped, clear errors for files that are not FOCUS, and ``margin costs import`` recording the items."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest

from margin.insights.focus_import import FocusImportError, shared_costs_from_focus

from ..cli.test_cli_prices_cost import run

BILL = """\
BilledCost,EffectiveCost,ListCost,ChargePeriodStart,ChargeCategory,ServiceCategory,ServiceName,ResourceId,ResourceName,SkuId
98.40,70.10,98.40,2026-11-01T00:00:00Z,Usage,Compute,Amazon EC2,i-0abc,gpu-node-1,p4d.24xlarge
98.40,70.10,98.40,2026-11-02T00:00:00Z,Usage,Compute,Amazon EC2,i-0abc,gpu-node-1,p4d.24xlarge
98.40,70.10,98.40,2026-12-01T00:00:00Z,Usage,Compute,Amazon EC2,i-0abc,gpu-node-1,p4d.24xlarge
7.87,7.87,7.87,2026-11-01T00:00:00Z,Tax,Compute,Amazon EC2,i-0abc,gpu-node-1,p4d.24xlarge
12.00,12.00,12.00,2026-11-01T00:00:00Z,Usage,Storage,Amazon S3,bucket-logs,,Standard
250.00,250.00,250.00,2026-11-15T00:00:00+00:00,Purchase,AI and Machine Learning,Vector DB,,,pro-plan
"""


def _rows(text=BILL):
    return list(csv.DictReader(io.StringIO(text)))


def test_rows_are_summed_per_resource_and_month():
    items = shared_costs_from_focus(_rows())
    found = {(i.name, i.period): (i.category, i.amount, i.rows) for i in items}
    assert found == {
        # Two days of EffectiveCost (70.10 + 70.10); the tax row is skipped.
        ("gpu-node-1", "2026-11"): ("compute", Decimal("140.20"), 2),
        ("gpu-node-1", "2026-12"): ("compute", Decimal("70.10"), 1),
        ("bucket-logs", "2026-11"): ("storage", Decimal("12.00"), 1),  # named by ResourceId (no ResourceName)
        ("Vector DB / pro-plan", "2026-11"): ("ai_and_machine_learning", Decimal("250.00"), 1),
    }
    billed = {(i.name, i.period): i.amount for i in shared_costs_from_focus(_rows(), cost_column="BilledCost")}
    assert billed[("gpu-node-1", "2026-11")] == Decimal("196.80")
    with_tax = {(i.name, i.period): i.amount for i in shared_costs_from_focus(_rows(), include_charges=["Tax"])}
    assert with_tax[("gpu-node-1", "2026-11")] == Decimal("148.07")


def test_filters_and_a_fixed_category():
    items = shared_costs_from_focus(_rows(), filters={"ServiceCategory": "Compute"}, category="gpu")
    assert [(i.name, i.period, i.category) for i in items] == [
        ("gpu-node-1", "2026-11", "gpu"),
        ("gpu-node-1", "2026-12", "gpu"),
    ]


def test_files_that_are_not_focus_are_refused_clearly():
    with pytest.raises(FocusImportError, match="no EffectiveCost"):
        shared_costs_from_focus(_rows("date,amount\n2026-11-01,5\n"))
    bad_cost = BILL.replace("70.10,98.40,2026-11-01", "seventy,98.40,2026-11-01", 1)
    with pytest.raises(FocusImportError, match="row 2: EffectiveCost 'seventy'"):
        shared_costs_from_focus(_rows(bad_cost))
    bad_date = BILL.replace("2026-11-02T00:00:00Z", "02/11/2026", 1)
    with pytest.raises(FocusImportError, match="row 3: ChargePeriodStart"):
        shared_costs_from_focus(_rows(bad_date))


def test_costs_import_cli_records_the_items(capsys, tmp_path):
    bill = tmp_path / "bill.csv"
    bill.write_text(BILL)
    code, out, err = run(capsys, "costs", "import", str(bill), "--where", "ServiceCategory=Compute", "--dry-run")
    assert code == 0, err
    assert "gpu-node-1" in out and "nothing recorded" in out
    code, out, _ = run(capsys, "costs", "list", "--json")
    assert json.loads(out) == []
    code, out, err = run(
        capsys, "costs", "import", str(bill), "--where", "ServiceCategory=Compute", "--category", "gpu"
    )
    assert code == 0, err
    assert "recorded 2 shared costs" in out
    code, out, _ = run(capsys, "costs", "list", "--period", "2026-11", "--json")
    (item,) = json.loads(out)
    assert item["name"] == "gpu-node-1" and item["category"] == "gpu" and item["amount"] == "140.20"
    code, _, err = run(capsys, "costs", "import", str(tmp_path / "missing.csv"))
    assert code == 2 and "cannot read" in err
