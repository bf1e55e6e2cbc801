"""GPU selection: catalogue economics and the requirement check (seed 002, Exercise 2)."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ScenarioError
from margin.plan import PlanContext, parse_scenario
from margin.plan.gpu import GPU_CATALOGUE, MODEL, GpuResult, GpuScenario, find_gpu, normalize_gpu_name

D = Decimal


def _no_catalog(name: str):
    raise AssertionError("the gpu model never prices tokens")


CTX = PlanContext(resolve_rate=_no_catalog)


@pytest.fixture(autouse=True)
def _money_precision():
    """The model computes at 50 significant digits (MONEY_CONTEXT); derive expected values the same way."""
    with localcontext() as c:
        c.prec = 50
        yield


def run(data: dict) -> GpuResult:
    return MODEL.compute(parse_scenario(GpuScenario, data), CTX)


EXERCISE_2 = {
    "workload": {"peak_rps": 100, "p95_latency_ms": 200, "monthly_budget": 10000},
    "gpus": [
        {"name": "L4", "latency_ms": 80, "max_rps": 40},
        {"name": "A10G", "latency_ms": 65, "max_rps": 50},
        {"name": "A100 40GB", "latency_ms": 40, "max_rps": 100},
    ],
}


def by_name(items, name):
    return next(i for i in items if i.name == name)


# -- catalogue --------------------------------------------------------------------------------------


def test_catalogue_holds_the_seed_table_inputs():
    table = {g.name: (g.vram_gb, g.fp16_tflops, g.hourly_cost) for g in GPU_CATALOGUE}
    assert table == {
        "H100 SXM": (80, 1979, D("4.50")),
        "A100 80GB": (80, 312, D("2.50")),
        "A100 40GB": (40, 312, D("1.75")),
        "L4": (24, 121, D("0.50")),
        "A10G": (24, 125, D("0.75")),
        "T4": (16, 65, D("0.35")),
    }


def test_per_gpu_costs_follow_the_formulas():
    r = run({"utilization": "0.4"})
    assert [g.name for g in r.gpus] == [g.name for g in GPU_CATALOGUE]
    for spec in GPU_CATALOGUE:
        g = by_name(r.gpus, spec.name)
        assert g.usd_per_tflop_hour == spec.hourly_cost / spec.fp16_tflops
        assert g.monthly_cost == spec.hourly_cost * 720
        assert g.effective_hourly_cost == spec.hourly_cost / D("0.4")
        assert g.effective_usd_per_tflop_hour == spec.hourly_cost / spec.fp16_tflops / D("0.4")
        assert g.source == "catalogue"
    cheapest = min(GPU_CATALOGUE, key=lambda s: s.hourly_cost / s.fp16_tflops)
    assert r.cheapest_per_tflop_hour == cheapest.name
    assert r.options == [] and r.recommended is None and r.no_option_reason is None


def test_seed_utilization_arithmetic():
    # The seed's "H100 at $4.00/hour": 100%, 25% and 10% utilization.
    for u in ("1", "0.25", "0.1"):
        r = run({"utilization": u, "gpus": [{"name": "H100 SXM", "hourly_cost": "4.00"}]})
        assert by_name(r.gpus, "H100 SXM").effective_hourly_cost == D("4.00") / D(u)


def test_overrides_merge_by_name_and_new_gpus_are_added():
    r = run(
        {
            "hours_per_month": 730,
            "gpus": [
                {"name": "h100-sxm", "hourly_cost": 3},
                {"name": "a100_40gb", "monthly_cost": 1000},
                {"name": "MI300X", "vram_gb": 192, "fp16_tflops": 1307, "hourly_cost": 4, "best_for": "big"},
                {"name": "Custom", "vram_gb": 48, "monthly_cost": 500},
            ],
        }
    )
    h100 = by_name(r.gpus, "H100 SXM")
    assert h100.hourly_cost == 3 and h100.monthly_cost == 3 * 730 and h100.vram_gb == 80
    assert h100.source == "catalogue, overridden: hourly_cost"
    a100 = by_name(r.gpus, "A100 40GB")
    assert a100.monthly_cost == 1000 and a100.hourly_cost == D(1000) / 730
    assert by_name(r.gpus, "L4").monthly_cost == D("0.50") * 730
    mi = by_name(r.gpus, "MI300X")
    assert mi.source == "scenario" and mi.usd_per_tflop_hour == D(4) / 1307 and mi.best_for == "big"
    custom = by_name(r.gpus, "Custom")
    assert custom.fp16_tflops is None and custom.usd_per_tflop_hour is None
    assert custom.effective_usd_per_tflop_hour is None and custom.monthly_cost == 500
    assert [g.name for g in r.gpus][-2:] == ["MI300X", "Custom"]


def test_find_gpu_ignores_case_spaces_and_dashes():
    assert find_gpu("a100-80gb").name == "A100 80GB"
    assert find_gpu(" l4 ").name == "L4"
    assert find_gpu("B200") is None
    assert normalize_gpu_name("A100 80GB") == normalize_gpu_name("a100_80-gb")


# -- requirement mode -------------------------------------------------------------------------------


def test_exercise_2_instances_costs_and_tie_break():
    r = run(EXERCISE_2)
    measured = {"L4": (80, 40), "A10G": (65, 50), "A100 40GB": (40, 100)}
    for name, (_latency, max_rps) in measured.items():
        o = by_name(r.options, name)
        spec = find_gpu(name)
        instances = math.ceil(D(100) / max_rps)
        assert o.instances == instances
        assert o.monthly_cost_per_instance == spec.hourly_cost * 720
        assert o.monthly_cost == instances * spec.hourly_cost * 720
        assert o.capacity_rps == instances * max_rps
        assert o.load_at_peak == D(100) / (instances * max_rps)
        assert o.monthly_cost_per_rps == spec.hourly_cost * 720 / max_rps
        assert o.meets_latency and o.within_budget and o.fits_memory is None and o.qualifies
    l4, a10g = by_name(r.options, "L4"), by_name(r.options, "A10G")
    assert l4.monthly_cost == a10g.monthly_cost  # 3 x L4 and 2 x A10G cost the same
    assert r.recommended == "A10G"  # tie broken by lower latency
    assert "ties with L4" in r.recommendation and "lower latency" in r.recommendation
    assert [o.name for o in r.options] == ["A10G", "L4", "A100 40GB"]


def test_tie_on_cost_and_latency_goes_to_fewer_instances_then_name():
    data = {
        "workload": {"peak_rps": 100, "p95_latency_ms": 200},
        "gpus": [
            {"name": "Small", "vram_gb": 24, "hourly_cost": 1, "latency_ms": 50, "max_rps": 25},  # 4 x $720
            {"name": "Big", "vram_gb": 80, "hourly_cost": 2, "latency_ms": 50, "max_rps": 50},  # 2 x $1440
        ],
    }
    r = run(data)
    assert by_name(r.options, "Small").monthly_cost == by_name(r.options, "Big").monthly_cost
    assert r.recommended == "Big" and "fewer instances" in r.recommendation
    data["gpus"][1]["max_rps"] = 25
    data["gpus"][1]["hourly_cost"] = 1
    r = run(data)
    assert r.recommended == "Big"  # identical on cost, latency and instances: name order
    assert "tie-break order" in r.recommendation


def test_latency_boundary_is_inclusive():
    data = {
        "workload": {"peak_rps": 10, "p95_latency_ms": 80},
        "gpus": [{"name": "L4", "latency_ms": 80, "max_rps": 40}],
    }
    assert run(data).options[0].meets_latency
    data["gpus"][0]["latency_ms"] = "80.1"
    r = run(data)
    assert not r.options[0].meets_latency and r.recommended is None
    assert "80.1 ms exceeds the 80 ms" in r.no_option_reason


def test_memory_and_budget_boundaries():
    def workload(memory, budget):
        return {
            "workload": {
                "peak_rps": 100,
                "p95_latency_ms": 200,
                "monthly_budget": budget,
                "model_memory_gb": memory,
            },
            "gpus": EXERCISE_2["gpus"],
        }

    l4_total = 3 * D("0.50") * 720
    r = run(workload(24, l4_total))
    assert by_name(r.options, "L4").fits_memory and by_name(r.options, "L4").within_budget
    r = run(workload("24.5", l4_total))
    assert not by_name(r.options, "L4").fits_memory and not by_name(r.options, "A10G").fits_memory
    assert r.recommended == "A100 40GB" or r.recommended is None
    a100_total = D("1.75") * 720
    assert r.recommended is None  # A100 40GB costs more than the L4-sized budget
    assert "over the" in r.no_option_reason and format(a100_total - l4_total, ",.2f") in r.no_option_reason
    r = run(workload("24.5", a100_total))
    assert r.recommended == "A100 40GB"
    r = run(workload(None, l4_total - D("0.01")))
    assert r.recommended is None and "budget" in r.no_option_reason


def test_none_qualifies_explains_each_gpu():
    data = {
        "workload": {"peak_rps": 100, "p95_latency_ms": 50, "monthly_budget": 1000, "model_memory_gb": 30},
        "gpus": EXERCISE_2["gpus"],
    }
    r = run(data)
    assert r.recommended is None and r.recommendation is None
    for name in ("L4", "A10G", "A100 40GB"):
        assert name in r.no_option_reason
    assert "latency 80 ms exceeds the 50 ms" in r.no_option_reason
    assert "needs 30 GB but the GPU has 24 GB" in r.no_option_reason
    assert all(not o.qualifies for o in r.options)
    report = MODEL.report(r)
    assert any(w.startswith("No GPU meets every requirement") for w in report.warnings)


def test_max_load_fraction_adds_headroom():
    data = {**EXERCISE_2, "workload": {**EXERCISE_2["workload"], "max_load_fraction": "0.8"}}
    r = run(data)
    for name, max_rps in (("L4", 40), ("A10G", 50), ("A100 40GB", 100)):
        o = by_name(r.options, name)
        assert o.planned_rps_per_instance == max_rps * D("0.8")
        assert o.instances == math.ceil(D(100) / (max_rps * D("0.8")))
    assert r.recommended == "L4"  # 4 x L4 ($1,440) < 3 x A10G ($1,620) and 2 x A100 40GB ($2,520)


def test_hours_per_month_scale_instance_costs():
    r = run({**EXERCISE_2, "hours_per_month": 730})
    assert by_name(r.options, "A10G").monthly_cost == 2 * D("0.75") * 730


# -- bad scenarios ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"utilization": 0}, "utilization"),
        ({"utilization": "1.5"}, "utilization"),
        ({"hours_per_month": 800}, "hours_per_month"),
        ({"gpus": [{"name": "L4"}, {"name": "l4"}]}, "gpus.1.name"),
        ({"gpus": [{"name": "L4", "hourly_cost": 1, "monthly_cost": 700}]}, "gpus.0.monthly_cost"),
        ({"gpus": [{"name": "L4", "latency_ms": 80}]}, "gpus.0.max_rps"),
        ({"gpus": [{"name": "L4", "max_rps": 80}]}, "gpus.0.latency_ms"),
        ({"gpus": [{"name": "B200", "hourly_cost": 6}]}, "gpus.0.vram_gb"),
        ({"gpus": [{"name": "B200", "vram_gb": 192}]}, "gpus.0.hourly_cost"),
        ({"gpus": [{"name": "L4", "hourly_cost": -1}]}, "gpus.0.hourly_cost"),
        ({"workload": {"peak_rps": 10, "p95_latency_ms": 100}}, "gpus"),
        ({**EXERCISE_2, "workload": {"peak_rps": 0, "p95_latency_ms": 100}}, "workload.peak_rps"),
        (
            {**EXERCISE_2, "workload": {"peak_rps": 1, "p95_latency_ms": 100, "monthly_budget": -1}},
            "workload.monthly_budget",
        ),
        (
            {**EXERCISE_2, "workload": {"peak_rps": 1, "p95_latency_ms": 100, "max_load_fraction": 0}},
            "workload.max_load_fraction",
        ),
        ({"gpu": []}, "gpu"),
    ],
)
def test_bad_scenarios_name_the_field(data, field):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(GpuScenario, data)
    assert field in str(info.value) and info.value.field == field


# -- example and report -----------------------------------------------------------------------------


def test_example_parses_computes_and_reports():
    result = MODEL.compute(parse_scenario(MODEL.scenario_type, yaml.safe_load(MODEL.example)), CTX)
    assert result.recommended == "A10G"
    report = MODEL.report(result)
    assert report.csv_table == 1 and report.tables[1].title.startswith("Workload")
    assert any("100% of its measured max throughput" in w for w in report.warnings)
    assert any("sparsity" in n for n in report.notes)
    result.model_dump(mode="json")


def test_report_without_workload():
    report = MODEL.report(run({"gpus": [{"name": "H100 SXM", "fp16_tflops": "989.5"}]}))
    assert len(report.tables) == 1 and report.csv_table == 0
    assert not any("sparsity" in n for n in report.notes)
    for table in report.tables:
        assert all(len(row) == len(table.columns) for row in table.rows)


# -- properties -------------------------------------------------------------------------------------

measured_gpu = st.fixed_dictionaries(
    {
        "vram_gb": st.integers(8, 192),
        "hourly_cost": st.integers(10, 1000).map(lambda c: str(D(c) / 100)),
        "latency_ms": st.integers(5, 500),
        "max_rps": st.integers(1, 200),
    }
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(measured_gpu, min_size=1, max_size=5),
    st.integers(1, 2000),
    st.integers(10, 400),
    st.integers(0, 50_000),
    st.integers(0, 50_000),
)
def test_recommendation_is_minimal_and_cheapest_and_budget_monotone(gpus, peak, p95, b1, b2):
    entries = [{"name": f"G{i}", **g} for i, g in enumerate(gpus)]
    low, high = sorted((b1, b2))

    def result(budget):
        return run({"workload": {"peak_rps": peak, "p95_latency_ms": p95, "monthly_budget": budget}, "gpus": entries})

    r = result(low)
    for o in r.options:
        # Instances is the minimum that serves the peak.
        assert o.instances * o.max_rps >= peak
        assert (o.instances - 1) * o.max_rps < peak
    qualifying = [o for o in r.options if o.qualifies]
    if qualifying:
        best = by_name(r.options, r.recommended)
        assert best.monthly_cost == min(o.monthly_cost for o in qualifying)
        assert best.latency_ms == min(o.latency_ms for o in qualifying if o.monthly_cost == best.monthly_cost)
    else:
        assert r.recommended is None and r.no_option_reason
    # A larger budget never removes an option, nor makes the recommendation dearer than it was.
    r_high = result(high)
    assert {o.name for o in r_high.options if o.qualifies} >= {o.name for o in qualifying}
    if r.recommended is not None:
        assert (
            by_name(r_high.options, r_high.recommended).monthly_cost <= by_name(r.options, r.recommended).monthly_cost
        )
