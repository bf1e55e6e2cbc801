"""Exact money: Decimal in USD, conversions to integer micro-dollars, and display formatting.

Floats never carry money in margin. Every amount is a :class:`~decimal.Decimal`; rounding happens only
when an amount is shown to a person (:func:`format_usd`) or stored as integer micro-dollars
(:func:`to_micros`, which rounds half-even and is documented as the one lossy step).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

__all__ = [
    "MICROS_PER_USD",
    "MONEY_CONTEXT",
    "ZERO",
    "format_usd",
    "from_micros",
    "per_million",
    "to_decimal",
    "to_micros",
]

ZERO = Decimal(0)
MICROS_PER_USD = 1_000_000
# 50 significant digits: far beyond any bill, so sums and products of prices never round silently.
MONEY_CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN)


def to_decimal(value: Decimal | int | str) -> Decimal:
    """Convert an int, str or Decimal to Decimal. Floats are refused: they cannot hold cents exactly."""
    if isinstance(value, bool):
        raise TypeError("a bool is not an amount of money")
    if isinstance(value, float):
        raise TypeError(f"refusing float {value!r} as money: pass a Decimal, int or str instead")
    if isinstance(value, Decimal):
        return value
    return Decimal(value)


def per_million(tokens: Decimal | int, price_per_million: Decimal) -> Decimal:
    """Cost of ``tokens`` at a price quoted in USD per 1M tokens."""
    with localcontext(MONEY_CONTEXT):
        return Decimal(tokens) * price_per_million / MICROS_PER_USD


def to_micros(amount: Decimal) -> int:
    """USD -> integer micro-dollars, rounded half-even (the only rounding a stored amount gets)."""
    with localcontext(MONEY_CONTEXT):
        return int((amount * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_micros(micros: int) -> Decimal:
    """Integer micro-dollars -> USD, exactly."""
    with localcontext(MONEY_CONTEXT):
        return Decimal(micros) / MICROS_PER_USD


def format_usd(amount: Decimal, *, places: int | None = None, sign: bool = False) -> str:
    """Format an amount for people: ``$1,234.57``.

    With ``places=None`` the number of decimals adapts so small per-request costs stay readable:
    two decimals from one dollar up, below that enough to show three significant digits
    (``$0.0135``, ``$0.000085``). Display only: never feed the result back into a calculation.
    """
    if not amount.is_finite():
        return "∞" if amount > 0 else "-∞"
    if places is None:
        places = 2
        magnitude = abs(amount)
        if magnitude != 0 and magnitude < 1:
            # adjusted() is the exponent of the leading digit: 0.000085 -> -5, so 7 places show "850".
            places = min(-magnitude.adjusted() + 2, 12)
    quantum = Decimal(1).scaleb(-places)
    with localcontext(MONEY_CONTEXT):
        rounded = amount.quantize(quantum, rounding=ROUND_HALF_EVEN)
    text = f"{abs(rounded):,.{places}f}"
    prefix = "-" if rounded < 0 else ("+" if sign and rounded > 0 else "")
    return f"{prefix}${text}"
