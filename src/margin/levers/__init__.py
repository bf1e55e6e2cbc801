"""The pure core of margin's cost-reduction levers: no I/O, no gateway state. See docs/levers-core.md.

* complexity: :func:`score_request` / :class:`ComplexityScorer` -> :class:`ComplexityScore` (score, tier, signals)
* routing: :class:`TierMap`, :func:`choose_model`, :func:`cascade_order`, :func:`downgrade_order`,
  :func:`downgrade_to_fit`
* cascade validation: :func:`validate_answer` -> :class:`Validation`; :class:`ValidatorRegistry`
* prompt compression: :func:`compress_messages`, :func:`compress_text`
* context management: :func:`fit_context`, :func:`summary_request`, :func:`with_summary`
* learned router: :func:`training_rows`, :func:`train_router` -> :class:`TrainedRouter` (docs/router.md)
"""

from ._complexity import (
    DEFAULT_COMPLEX_FROM,
    DEFAULT_SIMPLE_BELOW,
    DEFAULT_WEIGHTS,
    ComplexityScore,
    ComplexityScorer,
    Tier,
    score_request,
)
from ._compress import CompressionResult, TextCompression, compress_messages, compress_text, protected_spans
from ._context import ContextResult, fit_context, summary_request, turns, with_summary
from ._learned import EvaluationReport, TrainedRouter, train_router, training_rows
from ._routing import (
    TIERS,
    RouteDecision,
    TierMap,
    cascade_order,
    choose_model,
    downgrade_order,
    downgrade_to_fit,
)
from ._validate import (
    DEFAULT_CHECKS,
    REGISTRY,
    Validation,
    Validator,
    ValidatorRegistry,
    register_validator,
    schema_error,
    validate_answer,
)

__all__ = [
    "DEFAULT_CHECKS",
    "DEFAULT_COMPLEX_FROM",
    "DEFAULT_SIMPLE_BELOW",
    "DEFAULT_WEIGHTS",
    "REGISTRY",
    "TIERS",
    "ComplexityScore",
    "ComplexityScorer",
    "CompressionResult",
    "ContextResult",
    "EvaluationReport",
    "RouteDecision",
    "TextCompression",
    "Tier",
    "TierMap",
    "TrainedRouter",
    "Validation",
    "Validator",
    "ValidatorRegistry",
    "cascade_order",
    "choose_model",
    "compress_messages",
    "compress_text",
    "downgrade_order",
    "downgrade_to_fit",
    "fit_context",
    "protected_spans",
    "register_validator",
    "schema_error",
    "score_request",
    "summary_request",
    "train_router",
    "training_rows",
    "turns",
    "validate_answer",
    "with_summary",
]
