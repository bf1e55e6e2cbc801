"""Quantization memory: how much GPU memory a model needs at each precision, and how many GPUs that is.

Seed 002 (Tier 2, "Quantization": "70B model: FP16 = 140GB, INT4 = 35GB") and seed 000 ("Quantization":
a model that needed four GPUs may fit on one). Formulas, in decimal GB (1 GB = 1e9 bytes):

    weights   = parameters * bytes per parameter         FP32 4, FP16/BF16 2, FP8/INT8 1, INT4 0.5
    KV cache  = 2 (K and V) * num_layers * num_kv_heads * head_dim * bytes per KV element
                * context_length * batch_size
    total     = (weights + KV cache) * (1 + overhead_fraction)      activations, CUDA context, framework
    GPUs      = ceil(total / (gpu_vram_gb * usable_vram_fraction))

``head_dim`` defaults to hidden_size / num_attention_heads and ``num_kv_heads`` to num_attention_heads
(plain multi-head attention; grouped-query models have fewer KV heads, so give num_kv_heads when known).
Pure: no I/O. The GPU catalogue is the ``gpu`` model's.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal, localcontext
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ..errors import ScenarioError
from ..money import MONEY_CONTEXT, format_usd
from ._base import (
    Column,
    PlanContext,
    PlannerModel,
    PosDecimal,
    PosInt,
    Report,
    Result,
    Scenario,
    Table,
    ceil_div,
    percent,
)
from .gpu import DEFAULT_HOURS_PER_MONTH, GPU_CATALOGUE, GpuSpec, find_gpu

__all__ = [
    "BYTES_PER_GB",
    "MODEL",
    "PRECISION_BYTES",
    "MemoryResult",
    "MemoryScenario",
    "next_power_of_two",
]

BYTES_PER_GB = Decimal(10**9)  # decimal gigabytes throughout
Precision = Literal["FP32", "FP16", "BF16", "FP8", "INT8", "INT4"]
PRECISION_BYTES: dict[str, Decimal] = {
    "FP32": Decimal(4),
    "FP16": Decimal(2),
    "BF16": Decimal(2),
    "FP8": Decimal(1),
    "INT8": Decimal(1),
    "INT4": Decimal("0.5"),
}
ALL_PRECISIONS: tuple[str, ...] = tuple(PRECISION_BYTES)
DEFAULT_PRECISIONS = ["FP32", "FP16", "INT8", "INT4"]
REFERENCE = "FP16"
DEFAULT_OVERHEAD = Decimal("0.10")
DEFAULT_USABLE = Decimal("0.9")
GPUS_PER_SERVER = 8  # the usual maximum in one server (and one tensor-parallel group)

UsableFraction = Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)]


def next_power_of_two(n: int) -> int:
    """Tensor-parallel sizes are usually 1, 2, 4, 8: the smallest power of two >= n."""
    return 1 << (n - 1).bit_length() if n > 1 else 1


# -- scenario ---------------------------------------------------------------------------------------


class MemoryScenario(Scenario):
    parameters_billion: PosDecimal
    # One precision, a list to compare, or "all".
    precision: Annotated[list[Precision], Field(min_length=1)] = Field(default_factory=lambda: list(DEFAULT_PRECISIONS))
    # KV cache: num_layers plus (num_kv_heads and head_dim) or (hidden_size and num_attention_heads).
    num_layers: PosInt | None = None
    num_kv_heads: PosInt | None = None
    head_dim: PosInt | None = None
    hidden_size: PosInt | None = None
    num_attention_heads: PosInt | None = None
    kv_cache_precision: Precision = "FP16"
    context_length: PosInt | None = None
    batch_size: PosInt = 1
    # Activations, CUDA context, framework buffers and fragmentation, as a share of weights + KV cache.
    overhead_fraction: Annotated[Decimal, Field(ge=0, le=10, allow_inf_nan=False)] = DEFAULT_OVERHEAD
    # The GPU: a catalogue name (see `margin plan gpu`) or a VRAM size.
    gpu: Annotated[str, Field(min_length=1)] | None = None
    gpu_vram_gb: PosDecimal | None = None
    # Share of VRAM the serving engine may use (vLLM's gpu_memory_utilization defaults to 0.9).
    usable_vram_fraction: UsableFraction = DEFAULT_USABLE

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = list(ALL_PRECISIONS) if value.strip().lower() == "all" else [value]
        if isinstance(value, list | tuple):
            seen: list[Any] = []
            for item in value:
                item = item.strip().upper() if isinstance(item, str) else item
                if item not in seen:
                    seen.append(item)
            return seen
        return value

    @field_validator("kv_cache_precision", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> MemoryScenario:
        # Cross-field problems raise ScenarioError (not ValueError) so the error names the field itself.
        if (self.gpu is None) == (self.gpu_vram_gb is None):
            raise ScenarioError(
                "give exactly one of gpu (a catalogue name: "
                f"{', '.join(g.name for g in GPU_CATALOGUE)}) or gpu_vram_gb (GB of one GPU)",
                field="gpu" if self.gpu_vram_gb is None else "gpu_vram_gb",
            )
        if self.gpu is not None and find_gpu(self.gpu) is None:
            raise ScenarioError(
                f"unknown GPU {self.gpu!r}; use one of {', '.join(g.name for g in GPU_CATALOGUE)}, "
                "or give gpu_vram_gb instead",
                field="gpu",
            )
        kv_fields = ("num_kv_heads", "head_dim", "hidden_size", "num_attention_heads", "context_length")
        if self.num_layers is None:
            given = [f for f in kv_fields if getattr(self, f) is not None]
            if given:
                raise ScenarioError(
                    f"sizing the KV cache needs num_layers (got {', '.join(given)} without it); give "
                    "num_layers, or remove the KV cache fields to count weights only",
                    field="num_layers",
                )
            return self
        if self.context_length is None:
            raise ScenarioError("the KV cache grows with the context: give context_length", field="context_length")
        if self.head_dim is None:
            if self.hidden_size is None or self.num_attention_heads is None:
                raise ScenarioError(
                    "give head_dim, or hidden_size and num_attention_heads (head_dim = hidden_size / heads)",
                    field="head_dim",
                )
            if self.hidden_size % self.num_attention_heads:
                raise ScenarioError(
                    f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                    f"{self.num_attention_heads}; give head_dim",
                    field="hidden_size",
                )
        if self.num_kv_heads is None and self.num_attention_heads is None:
            raise ScenarioError(
                "give num_kv_heads (grouped-query models have fewer KV heads than attention heads), or "
                "num_attention_heads to assume plain multi-head attention",
                field="num_kv_heads",
            )
        if (
            self.num_kv_heads is not None
            and self.num_attention_heads is not None
            and self.num_kv_heads > self.num_attention_heads
        ):
            raise ScenarioError(
                f"{self.num_kv_heads} KV heads is more than {self.num_attention_heads} attention heads",
                field="num_kv_heads",
            )
        return self


# -- result -----------------------------------------------------------------------------------------


class PrecisionMemory(Result):
    precision: str
    bytes_per_parameter: Decimal
    weights_gb: Decimal
    kv_cache_gb: Decimal
    overhead_gb: Decimal
    total_gb: Decimal
    gpus_needed: int
    tensor_parallel_gpus: int  # gpus_needed rounded up to a power of two
    weights_only_gpus: int  # ceil(weights / usable VRAM): no KV cache, no overhead
    fits_single_gpu: bool
    max_batch_on_gpus: int | None  # sequences of context_length that fit on gpus_needed GPUs; None without KV
    monthly_cost: Decimal | None  # gpus_needed x hourly x 720 h, for a catalogue GPU
    memory_saving_vs_fp16: Decimal  # 1 - total / total at FP16
    gpus_saved_vs_fp16: int


class CatalogueFit(Result):
    gpu: str
    vram_gb: Decimal
    usable_gb: Decimal
    hourly_cost: Decimal
    gpus_needed: dict[str, int]  # precision -> GPUs
    tensor_parallel_gpus: dict[str, int]  # precision -> GPUs rounded up to a power of two
    monthly_cost: dict[str, Decimal]  # precision -> GPUs x hourly x 720 h


class CheapestFit(Result):
    """The cheapest catalogue option for one precision, by the formula's count and by power-of-two count."""

    precision: str
    gpu: str
    gpus: int
    monthly_cost: Decimal
    tensor_parallel_gpu: str
    tensor_parallel_gpus: int
    tensor_parallel_monthly_cost: Decimal
    several_servers: bool  # either count above GPUS_PER_SERVER


class MemoryResult(Result):
    parameters_billion: Decimal
    gpu: str | None
    gpu_vram_gb: Decimal
    usable_vram_fraction: Decimal
    usable_vram_gb: Decimal
    overhead_fraction: Decimal
    # KV cache inputs as used (None when the KV cache is not counted)
    kv_cache_counted: bool
    num_layers: int | None
    num_kv_heads: int | None
    head_dim: int | None
    kv_heads_assumed_equal_to_attention_heads: bool
    kv_cache_precision: str
    context_length: int | None
    batch_size: int
    kv_cache_bytes_per_token: Decimal | None  # per sequence position, all layers, K and V
    kv_cache_gb_per_sequence: Decimal | None
    precisions: list[PrecisionMemory]
    fp16_reference: PrecisionMemory
    catalogue_fit: list[CatalogueFit]
    cheapest_fits: list[CheapestFit]  # per precision: the cheapest catalogue GPU that holds the model
    gb_definition: str = "1 GB = 1,000,000,000 bytes (decimal)"
    hours_per_month: Decimal = DEFAULT_HOURS_PER_MONTH


# -- compute ----------------------------------------------------------------------------------------


def _gpus(total_gb: Decimal, usable_gb: Decimal) -> int:
    return max(1, ceil_div(total_gb, usable_gb))


def compute(s: MemoryScenario, ctx: PlanContext) -> MemoryResult:
    with localcontext(MONEY_CONTEXT):
        spec: GpuSpec | None = find_gpu(s.gpu) if s.gpu is not None else None
        vram = spec.vram_gb if spec is not None else s.gpu_vram_gb
        assert vram is not None
        usable = vram * s.usable_vram_fraction
        factor = 1 + s.overhead_fraction

        kv_per_token: Decimal | None = None
        kv_heads = head_dim = None
        assumed_mha = False
        if s.num_layers is not None:
            assert s.context_length is not None
            head_dim = s.head_dim
            if head_dim is None:
                assert s.hidden_size is not None and s.num_attention_heads is not None
                head_dim = s.hidden_size // s.num_attention_heads
            kv_heads = s.num_kv_heads
            if kv_heads is None:
                kv_heads, assumed_mha = s.num_attention_heads, True
            assert kv_heads is not None
            kv_bytes = PRECISION_BYTES[s.kv_cache_precision]
            kv_per_token = 2 * s.num_layers * kv_heads * head_dim * kv_bytes
            kv_seq_gb = kv_per_token * s.context_length / BYTES_PER_GB
            kv_gb = kv_seq_gb * s.batch_size
        else:
            kv_seq_gb = None
            kv_gb = Decimal(0)

        def weights_gb(precision: str) -> Decimal:
            return s.parameters_billion * PRECISION_BYTES[precision]  # billions of params x bytes = GB

        def row(precision: str, ref: PrecisionMemory | None) -> PrecisionMemory:
            weights = weights_gb(precision)
            total = (weights + kv_gb) * factor
            gpus = _gpus(total, usable)
            max_batch = None
            if kv_seq_gb is not None:
                room = gpus * usable - weights * factor
                with localcontext() as c:
                    c.rounding = ROUND_FLOOR
                    max_batch = max(0, int((room / (kv_seq_gb * factor)).to_integral_value()))
            return PrecisionMemory(
                precision=precision,
                bytes_per_parameter=PRECISION_BYTES[precision],
                weights_gb=weights,
                kv_cache_gb=kv_gb,
                overhead_gb=total - weights - kv_gb,
                total_gb=total,
                gpus_needed=gpus,
                tensor_parallel_gpus=next_power_of_two(gpus),
                weights_only_gpus=_gpus(weights, usable),
                fits_single_gpu=gpus == 1,
                max_batch_on_gpus=max_batch,
                monthly_cost=None if spec is None else gpus * spec.hourly_cost * DEFAULT_HOURS_PER_MONTH,
                memory_saving_vs_fp16=Decimal(0) if ref is None else 1 - total / ref.total_gb,
                gpus_saved_vs_fp16=0 if ref is None else ref.gpus_needed - gpus,
            )

        reference = row(REFERENCE, None)
        rows = [row(p, reference) for p in s.precision]

        fits: list[CatalogueFit] = []
        for g in GPU_CATALOGUE:
            g_usable = g.vram_gb * s.usable_vram_fraction
            counts = {p: _gpus((weights_gb(p) + kv_gb) * factor, g_usable) for p in s.precision}
            fits.append(
                CatalogueFit(
                    gpu=g.name,
                    vram_gb=g.vram_gb,
                    usable_gb=g_usable,
                    hourly_cost=g.hourly_cost,
                    gpus_needed=counts,
                    tensor_parallel_gpus={p: next_power_of_two(n) for p, n in counts.items()},
                    monthly_cost={p: n * g.hourly_cost * DEFAULT_HOURS_PER_MONTH for p, n in counts.items()},
                )
            )
        cheapest: list[CheapestFit] = []
        for p in s.precision:
            best = min(fits, key=lambda f, p=p: (f.monthly_cost[p], f.gpus_needed[p], f.gpu))
            best_tp = min(
                fits,
                key=lambda f, p=p: (
                    f.tensor_parallel_gpus[p] * f.hourly_cost,
                    f.tensor_parallel_gpus[p],
                    f.gpu,
                ),
            )
            n, n_tp = best.gpus_needed[p], best_tp.tensor_parallel_gpus[p]
            cheapest.append(
                CheapestFit(
                    precision=p,
                    gpu=best.gpu,
                    gpus=n,
                    monthly_cost=best.monthly_cost[p],
                    tensor_parallel_gpu=best_tp.gpu,
                    tensor_parallel_gpus=n_tp,
                    tensor_parallel_monthly_cost=n_tp * best_tp.hourly_cost * DEFAULT_HOURS_PER_MONTH,
                    several_servers=max(n, n_tp) > GPUS_PER_SERVER,
                )
            )

        return MemoryResult(
            parameters_billion=s.parameters_billion,
            gpu=None if spec is None else spec.name,
            gpu_vram_gb=vram,
            usable_vram_fraction=s.usable_vram_fraction,
            usable_vram_gb=usable,
            overhead_fraction=s.overhead_fraction,
            kv_cache_counted=s.num_layers is not None,
            num_layers=s.num_layers,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            kv_heads_assumed_equal_to_attention_heads=assumed_mha,
            kv_cache_precision=s.kv_cache_precision,
            context_length=s.context_length,
            batch_size=s.batch_size,
            kv_cache_bytes_per_token=kv_per_token,
            kv_cache_gb_per_sequence=kv_seq_gb,
            precisions=rows,
            fp16_reference=reference,
            catalogue_fit=fits,
            cheapest_fits=cheapest,
        )


# -- report -----------------------------------------------------------------------------------------


_pct = partial(percent, places=None, sign=False)


def report(r: MemoryResult) -> Report:
    gpu_label = r.gpu or f"{r.gpu_vram_gb:,} GB GPU"
    usable = f"{r.usable_vram_gb.normalize():f}"
    columns = [
        Column("Precision", "text"),
        Column("Bytes/param", "num"),
        Column("Weights", "num", "GB"),
        Column("KV cache", "num", "GB"),
        Column(f"Overhead ({_pct(r.overhead_fraction)}%)", "num", "GB"),
        Column("Total", "num", "GB"),
        Column(f"GPUs ({gpu_label}, {usable} GB usable)", "int"),
        Column("Tensor-parallel GPUs", "int"),
        Column("GPUs for weights alone", "int"),
        Column("Max batch on those GPUs", "int"),
        Column("Memory saved vs FP16", "pct"),
        Column("GPUs saved vs FP16", "int"),
    ]
    has_cost = r.gpu is not None
    if has_cost:
        columns.insert(9, Column("GPU cost", "usd", "$/month"))
    rows = []
    for p in r.precisions:
        cells: list[Any] = [
            p.precision,
            p.bytes_per_parameter,
            p.weights_gb,
            p.kv_cache_gb,
            p.overhead_gb,
            p.total_gb,
            p.gpus_needed,
            p.tensor_parallel_gpus,
            p.weights_only_gpus,
            p.max_batch_on_gpus,
            p.memory_saving_vs_fp16,
            p.gpus_saved_vs_fp16,
        ]
        if has_cost:
            cells.insert(9, p.monthly_cost)
        rows.append(tuple(cells))
    main = Table(f"Memory for a {r.parameters_billion:,}B-parameter model", tuple(columns), tuple(rows))

    fit_columns = [Column("GPU", "text"), Column("VRAM", "num", "GB"), Column("Usable", "num", "GB")]
    for p in r.precisions:
        fit_columns += [Column(f"{p.precision} GPUs", "int"), Column(f"{p.precision} cost", "usd", "$/month")]
    fit_rows = tuple(
        (
            f.gpu,
            f.vram_gb,
            f.usable_gb,
            *(x for p in r.precisions for x in (f.gpus_needed[p.precision], f.monthly_cost[p.precision])),
        )
        for f in r.catalogue_fit
    )
    fit = Table("Fit across the GPU catalogue (on-demand, 720 h/month)", tuple(fit_columns), fit_rows)

    notes = [
        "Memory in decimal GB (1 GB = 1e9 bytes). GPU sizes are the nominal marketed figures read as decimal "
        'GB; some cards\' "80GB" is really 80 GiB (85.9 GB), so the nominal figure is slightly conservative.',
        f"Usable VRAM = {_pct(r.usable_vram_fraction)}% of the card (the rest is CUDA context, driver and "
        "allocator reserve; vLLM's default gpu_memory_utilization is 0.9). Overhead "
        f"{_pct(r.overhead_fraction)}% on top of weights + KV cache covers activations and framework "
        "buffers.",
    ]
    if r.kv_cache_counted:
        notes.append(
            f"KV cache: 2 x {r.num_layers} layers x {r.num_kv_heads} KV heads x {r.head_dim} head_dim x "
            f"{PRECISION_BYTES[r.kv_cache_precision]:f} bytes ({r.kv_cache_precision}) = "
            f"{r.kv_cache_bytes_per_token:,} bytes per token; x {r.context_length:,} tokens x batch "
            f"{r.batch_size} = {r.fp16_reference.kv_cache_gb:,.2f} GB. It does not shrink when the weights "
            "are quantized: only kv_cache_precision changes it."
        )
        ref = r.fp16_reference
        share = ref.kv_cache_gb / (ref.weights_gb + ref.kv_cache_gb)
        notes.append(f"At FP16 the KV cache is {share * 100:.0f}% of weights + KV cache.")
    for c in r.cheapest_fits:
        cost = format_usd(c.monthly_cost)
        text = f"Cheapest catalogue fit at {c.precision}: {c.gpus} x {c.gpu} at {cost}/month"
        if (c.tensor_parallel_gpu, c.tensor_parallel_gpus) != (c.gpu, c.gpus):
            text += (
                f"; with power-of-two tensor parallelism {c.tensor_parallel_gpus} x {c.tensor_parallel_gpu} "
                f"at {format_usd(c.tensor_parallel_monthly_cost)}/month"
            )
        if c.several_servers:
            text += f" (more than {GPUS_PER_SERVER} GPUs: several servers)"
        notes.append(text + ".")
    notes.append(
        "This is a memory fit only: throughput and latency differ a lot between GPUs (small cards are slow "
        "per request), so check candidates against your workload with `margin plan gpu`."
    )

    warnings = []
    if not r.kv_cache_counted:
        warnings.append(
            "KV cache not counted (no num_layers/context_length given): this is weights plus overhead only; "
            "serving needs room for the KV cache of every concurrent sequence."
        )
    if r.kv_heads_assumed_equal_to_attention_heads:
        warnings.append(
            "num_kv_heads not given: assumed equal to num_attention_heads (plain multi-head attention). "
            "Grouped-query models (Llama 3, Mistral) have far fewer KV heads, so this overstates the KV "
            "cache."
        )
    odd = [p.precision for p in r.precisions if p.gpus_needed != p.tensor_parallel_gpus]
    if odd:
        warnings.append(
            f"{', '.join(odd)}: the GPU count is not a power of two; tensor parallelism usually needs 2, 4 "
            "or 8 GPUs (the attention heads must divide evenly), so plan the tensor-parallel column."
        )
    return Report(
        title="Quantization memory",
        tables=(main, fit),
        notes=tuple(notes),
        warnings=tuple(warnings),
        csv_table=0,
    )


EXAMPLE = """\
# A Llama-3.1-70B-like model served at 8k context, 8 concurrent sequences (seed 002 quantization notes).
parameters_billion: 70         # billions of parameters
precision: [FP16, INT8, INT4]  # one of FP32/FP16/BF16/FP8/INT8/INT4, a list, or "all"
num_layers: 80                 # transformer layers
num_kv_heads: 8                # grouped-query attention: 8 KV heads (64 attention heads)
head_dim: 128                  # hidden_size 8192 / 64 heads
kv_cache_precision: FP16       # KV cache element type (default FP16)
context_length: 8192           # tokens per sequence held in the KV cache
batch_size: 8                  # concurrent sequences
overhead_fraction: 0.10        # activations, CUDA context, framework buffers (share of weights + KV)
gpu: A100 80GB                 # a GPU from `margin plan gpu`, or gpu_vram_gb: 80
usable_vram_fraction: 0.9      # share of VRAM the serving engine may fill (vLLM default 0.9)
"""

MODEL = PlannerModel(
    name="memory",
    summary="Quantization memory: weights, KV cache and GPUs needed per precision (FP32 to INT4)",
    scenario_type=MemoryScenario,
    compute=compute,
    report=report,
    example=EXAMPLE,
    doc_anchor="memory",
)
