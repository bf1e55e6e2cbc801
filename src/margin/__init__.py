"""margin: cost engineering for LLM applications.

The domain core (pricing, tokens, planner) is pure and synchronous; the CLI is a thin edge around it.
Money is :class:`decimal.Decimal` end to end and is rounded only for display.
"""

__version__ = "0.1.0"
