"""Quantization memory: weights, KV cache and GPU counts derived here from the formulas."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ScenarioError
from margin.plan import PlanContext, parse_scenario
from margin.plan.gpu import GPU_CATALOGUE, find_gpu
from margin.plan.memory import MODEL, PRECISION_BYTES, MemoryResult, MemoryScenario, next_power_of_two

D = Decimal
GB = D(10**9)


def _no_catalog(name: str):
    raise AssertionError("the memory model never prices tokens")


CTX = PlanContext(resolve_rate=_no_catalog)


@pytest.fixture(autouse=True)
def _money_precision():
    """The model computes at 50 significant digits (MONEY_CONTEXT); derive expected values the same way."""
    with localcontext() as c:
        c.prec = 50
        yield


# A Llama-3.1-70B-like configuration.
LLAMA_70B = {
    "parameters_billion": 70,
    "num_layers": 80,
    "num_kv_heads": 8,
    "head_dim": 128,
    "context_length": 8192,
    "batch_size": 8,
    "gpu": "A100 80GB",
}


def run(**fields) -> MemoryResult:
    data = {k: v for k, v in fields.items() if v is not None}
    return MODEL.compute(parse_scenario(MemoryScenario, data), CTX)


def row(result: MemoryResult, precision: str):
    return next(p for p in result.precisions if p.precision == precision)


def expected_kv_gb(layers, kv_heads, head_dim, kv_bytes, context, batch) -> Decimal:
    return D(2) * layers * kv_heads * head_dim * kv_bytes * context * batch / GB


# -- main computation -------------------------------------------------------------------------------


def test_per_precision_table_follows_the_formulas():
    r = run(**LLAMA_70B, precision="all")
    assert [p.precision for p in r.precisions] == ["FP32", "FP16", "BF16", "FP8", "INT8", "INT4"]
    kv = expected_kv_gb(80, 8, 128, 2, 8192, 8)
    usable = D(80) * D("0.9")
    assert r.usable_vram_gb == usable and r.gpu_vram_gb == 80 and r.gpu == "A100 80GB"
    assert r.kv_cache_bytes_per_token == 2 * 80 * 8 * 128 * 2
    assert r.kv_cache_gb_per_sequence == D(2 * 80 * 8 * 128 * 2 * 8192) / GB
    fp16_total = (D(70) * 2 + kv) * D("1.1")
    for name, nbytes in {"FP32": 4, "FP16": 2, "BF16": 2, "FP8": 1, "INT8": 1, "INT4": D("0.5")}.items():
        p = row(r, name)
        weights = D(70) * 10**9 * D(nbytes) / GB
        total = (weights + kv) * D("1.1")
        gpus = math.ceil(total / usable)
        assert p.bytes_per_parameter == nbytes
        assert p.weights_gb == weights
        assert p.kv_cache_gb == kv
        assert p.total_gb == total
        assert p.overhead_gb == total - weights - kv
        assert p.gpus_needed == gpus
        assert p.tensor_parallel_gpus == next_power_of_two(gpus)
        assert p.weights_only_gpus == math.ceil(weights / usable)
        assert p.fits_single_gpu == (gpus == 1)
        assert p.monthly_cost == gpus * D("2.50") * 720
        assert p.memory_saving_vs_fp16 == 1 - total / fp16_total
        assert p.gpus_saved_vs_fp16 == math.ceil(fp16_total / usable) - gpus
        per_seq = D(2 * 80 * 8 * 128 * 2 * 8192) / GB * D("1.1")
        assert p.max_batch_on_gpus == math.floor((gpus * usable - weights * D("1.1")) / per_seq)
        assert p.max_batch_on_gpus >= 8
    assert row(r, "FP16").memory_saving_vs_fp16 == 0


def test_seed_claim_70b_fp16_140gb_int4_35gb():
    # "70B model: FP16 = 140GB, INT4 = 35GB. Can run on 2x A100 40GB instead of 4x A100 80GB"
    weights_only = run(parameters_billion=70, precision=["FP16", "INT4"], gpu="A100 80GB", overhead_fraction=0)
    assert row(weights_only, "FP16").weights_gb == D(70) * 2
    assert row(weights_only, "INT4").weights_gb == D(70) * D("0.5")
    # Weights alone: FP16 needs ceil(140 / 72) = 2 A100 80GB, not 4.
    assert row(weights_only, "FP16").gpus_needed == math.ceil(D(140) / (D(80) * D("0.9"))) == 2
    on_40 = run(parameters_billion=70, precision=["INT4"], gpu="A100 40GB", overhead_fraction=0)
    assert row(on_40, "INT4").gpus_needed == math.ceil(D(35) / (D(40) * D("0.9"))) == 1
    # With the 8k x 8 KV cache and 10% overhead: FP16 needs 3 A100 80GB (4 with tensor parallelism),
    # INT4 needs 2 A100 40GB: the seed's pairing holds for this serving load, not for the weights alone.
    served = run(**{**LLAMA_70B, "precision": ["FP16", "INT4"]})
    kv = expected_kv_gb(80, 8, 128, 2, 8192, 8)
    fp16 = row(served, "FP16")
    assert fp16.gpus_needed == math.ceil((D(140) + kv) * D("1.1") / 72) == 3
    assert fp16.tensor_parallel_gpus == 4
    served_40 = run(**{**LLAMA_70B, "precision": ["INT4"], "gpu": "A100 40GB"})
    assert row(served_40, "INT4").gpus_needed == math.ceil((D(35) + kv) * D("1.1") / 36) == 2


def test_kv_cache_from_hidden_size_assumes_mha_and_warns():
    r = run(
        parameters_billion=7,
        num_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        context_length=4096,
        gpu_vram_gb=24,
        precision="FP16",
    )
    assert r.head_dim == 4096 // 32 and r.num_kv_heads == 32 and r.kv_heads_assumed_equal_to_attention_heads
    assert row(r, "FP16").kv_cache_gb == expected_kv_gb(32, 32, 128, 2, 4096, 1)
    assert r.gpu is None and row(r, "FP16").monthly_cost is None
    assert any("assumed equal to num_attention_heads" in w for w in MODEL.report(r).warnings)
    gqa = run(
        parameters_billion=7,
        num_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        num_kv_heads=8,
        context_length=4096,
        gpu_vram_gb=24,
        precision="FP16",
    )
    assert gqa.num_kv_heads == 8 and not gqa.kv_heads_assumed_equal_to_attention_heads
    assert row(gqa, "FP16").kv_cache_gb == row(r, "FP16").kv_cache_gb / 4


def test_kv_cache_precision_changes_only_the_kv_cache():
    fp16 = run(**LLAMA_70B, precision="INT4")
    fp8 = run(**LLAMA_70B, precision="INT4", kv_cache_precision="fp8")
    assert row(fp8, "INT4").kv_cache_gb == row(fp16, "INT4").kv_cache_gb / 2
    assert row(fp8, "INT4").weights_gb == row(fp16, "INT4").weights_gb
    assert fp8.kv_cache_precision == "FP8"


def test_weights_only_mode_warns_that_kv_is_not_counted():
    r = run(parameters_billion=8, gpu="L4", precision=["fp16", "FP16", "int8"])
    assert [p.precision for p in r.precisions] == ["FP16", "INT8"]  # normalized and de-duplicated
    assert not r.kv_cache_counted and r.kv_cache_bytes_per_token is None
    p = row(r, "FP16")
    assert p.kv_cache_gb == 0 and p.max_batch_on_gpus is None
    assert p.total_gb == D(16) * D("1.1")
    assert p.gpus_needed == math.ceil(D(16) * D("1.1") / (D(24) * D("0.9")))
    assert any("KV cache not counted" in w for w in MODEL.report(r).warnings)


def test_default_precisions_and_fp16_reference_when_not_listed():
    r = run(parameters_billion=1, gpu="T4")
    assert [p.precision for p in r.precisions] == ["FP32", "FP16", "INT8", "INT4"]
    only = run(parameters_billion=10, gpu="T4", precision="INT4")
    assert only.fp16_reference.total_gb == D(20) * D("1.1")
    assert row(only, "INT4").memory_saving_vs_fp16 == 1 - D(5) / D(20)


def test_gpu_boundary_exact_fit_needs_one_gpu():
    # total = 20 * 2 * 1.0 = 40 GB; usable = 50 * 0.8 = 40 GB: exactly one GPU.
    r = run(
        parameters_billion=20,
        precision="FP16",
        overhead_fraction=0,
        gpu_vram_gb=50,
        usable_vram_fraction="0.8",
    )
    assert row(r, "FP16").gpus_needed == 1 and row(r, "FP16").fits_single_gpu
    r = run(
        parameters_billion="20.000001",
        precision="FP16",
        overhead_fraction=0,
        gpu_vram_gb=50,
        usable_vram_fraction="0.8",
    )
    assert row(r, "FP16").gpus_needed == 2


def test_catalogue_fit_and_cheapest_option():
    r = run(**LLAMA_70B, precision=["FP16", "INT4"])
    kv = expected_kv_gb(80, 8, 128, 2, 8192, 8)
    assert [f.gpu for f in r.catalogue_fit] == [g.name for g in GPU_CATALOGUE]
    for f in r.catalogue_fit:
        spec = find_gpu(f.gpu)
        usable = spec.vram_gb * D("0.9")
        for p, nbytes in (("FP16", 2), ("INT4", D("0.5"))):
            n = math.ceil((D(70) * nbytes + kv) * D("1.1") / usable)
            assert f.gpus_needed[p] == n
            assert f.tensor_parallel_gpus[p] == next_power_of_two(n)
            assert f.monthly_cost[p] == n * spec.hourly_cost * 720
    for c, p in zip(r.cheapest_fits, ("FP16", "INT4"), strict=True):
        best = min(r.catalogue_fit, key=lambda f, p=p: (f.monthly_cost[p], f.gpus_needed[p]))
        assert (c.precision, c.gpu, c.gpus, c.monthly_cost) == (
            p,
            best.gpu,
            best.gpus_needed[p],
            best.monthly_cost[p],
        )
        tp = min(
            r.catalogue_fit,
            key=lambda f, p=p: (f.tensor_parallel_gpus[p] * find_gpu(f.gpu).hourly_cost, f.gpu),
        )
        assert (c.tensor_parallel_gpu, c.tensor_parallel_gpus) == (tp.gpu, tp.tensor_parallel_gpus[p])
        assert c.tensor_parallel_monthly_cost == tp.tensor_parallel_gpus[p] * find_gpu(tp.gpu).hourly_cost * 720
        assert c.several_servers == (max(c.gpus, c.tensor_parallel_gpus) > 8)
    assert r.cheapest_fits[0].several_servers  # FP16 at this load: 9 x L4, or 16 x T4 with power-of-two TP


def test_next_power_of_two():
    assert [next_power_of_two(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 16]


# -- bad scenarios ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"gpu": None}, "gpu"),
        ({"gpu_vram_gb": 80}, "gpu_vram_gb"),
        ({"gpu": "B300"}, "gpu"),
        ({"precision": "FP12"}, "precision"),
        ({"precision": []}, "precision"),
        ({"kv_cache_precision": "FP4"}, "kv_cache_precision"),
        ({"parameters_billion": 0}, "parameters_billion"),
        ({"usable_vram_fraction": 0}, "usable_vram_fraction"),
        ({"usable_vram_fraction": "1.1"}, "usable_vram_fraction"),
        ({"overhead_fraction": -0.1}, "overhead_fraction"),
        ({"context_length": None}, "context_length"),
        ({"context_length": 0}, "context_length"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_layers": None}, "num_layers"),
        ({"head_dim": None}, "head_dim"),
        ({"head_dim": None, "hidden_size": 8001, "num_attention_heads": 64}, "hidden_size"),
        ({"num_kv_heads": None}, "num_kv_heads"),
        ({"num_kv_heads": 16, "num_attention_heads": 8}, "num_kv_heads"),
        ({"params_billion": 70}, "params_billion"),
    ],
)
def test_bad_scenarios_name_the_field(fields, field):
    data = {k: v for k, v in {**LLAMA_70B, **fields}.items() if v is not None}
    with pytest.raises(ScenarioError) as info:
        parse_scenario(MemoryScenario, data)
    assert field in str(info.value) and info.value.field.startswith(field)


# -- example and report -----------------------------------------------------------------------------


def test_example_parses_computes_and_reports():
    result = MODEL.compute(parse_scenario(MODEL.scenario_type, yaml.safe_load(MODEL.example)), CTX)
    assert [p.precision for p in result.precisions] == ["FP16", "INT8", "INT4"]
    report = MODEL.report(result)
    assert report.csv_table == 0 and len(report.tables) == 2
    for table in report.tables:
        assert all(len(r) == len(table.columns) for r in table.rows)
    assert any("power of two" in w for w in report.warnings)  # FP16 needs 3 GPUs
    result.model_dump(mode="json")


def test_report_with_vram_only_has_no_cost_column():
    report = MODEL.report(run(parameters_billion=7, gpu_vram_gb=24, precision="FP16"))
    assert not any(c.header == "GPU cost" for c in report.tables[0].columns)
    for table in report.tables:
        assert all(len(r) == len(table.columns) for r in table.rows)


# -- properties -------------------------------------------------------------------------------------

precisions = st.sampled_from(sorted(PRECISION_BYTES))
config = st.fixed_dictionaries(
    {
        "parameters_billion": st.integers(1, 2000).map(lambda i: str(D(i) / 10)),
        "num_layers": st.integers(1, 128),
        "num_kv_heads": st.integers(1, 16),
        "head_dim": st.sampled_from([64, 80, 128, 256]),
        "context_length": st.integers(1, 131072),
        "batch_size": st.integers(1, 64),
        "overhead_fraction": st.integers(0, 50).map(lambda i: str(D(i) / 100)),
        "gpu_vram_gb": st.integers(8, 192),
        "usable_vram_fraction": st.integers(50, 100).map(lambda i: str(D(i) / 100)),
    }
)


@settings(max_examples=80, deadline=None)
@given(config, precisions, precisions)
def test_memory_is_monotone_in_precision_bytes(cfg, p1, p2):
    low, high = sorted((p1, p2), key=lambda p: PRECISION_BYTES[p])
    r = run(**cfg, precision=[low, high])
    assert row(r, low).total_gb <= row(r, high).total_gb
    assert row(r, low).gpus_needed <= row(r, high).gpus_needed


@settings(max_examples=80, deadline=None)
@given(config, precisions, st.integers(1, 131072), st.integers(1, 64))
def test_memory_is_monotone_in_context_and_batch(cfg, precision, context, batch):
    base = run(**cfg, precision=precision)
    longer = run(**{**cfg, "context_length": max(context, cfg["context_length"])}, precision=precision)
    bigger = run(**{**cfg, "batch_size": max(batch, cfg["batch_size"])}, precision=precision)
    for other in (longer, bigger):
        assert row(base, precision).total_gb <= row(other, precision).total_gb
        assert row(base, precision).gpus_needed <= row(other, precision).gpus_needed


@settings(max_examples=80, deadline=None)
@given(config, precisions)
def test_gpus_needed_is_the_minimum_that_fits(cfg, precision):
    r = run(**cfg, precision=precision)
    p = row(r, precision)
    usable = r.usable_vram_gb
    assert p.total_gb <= p.gpus_needed * usable
    if p.gpus_needed > 1:
        assert p.total_gb > (p.gpus_needed - 1) * usable
    if p.max_batch_on_gpus is not None:
        per_seq = r.kv_cache_gb_per_sequence * (1 + r.overhead_fraction)
        assert p.weights_gb * (1 + r.overhead_fraction) + p.max_batch_on_gpus * per_seq <= p.gpus_needed * usable
        assert p.weights_gb * (1 + r.overhead_fraction) + (p.max_batch_on_gpus + 1) * per_seq > p.gpus_needed * usable
