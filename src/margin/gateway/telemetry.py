"""OpenTelemetry spans for metered calls, with the GenAI semantic conventions. Optional and off by default
(``gateway.otel.enabled``); the packages come with margin's ``otel`` extra.

One span per usage event (an attempt, a cache hit or a rejection), emitted after the event is settled with
the event's own start and end times, so tracing adds nothing to the request path but the span's creation.
Attributes follow the GenAI conventions (``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``gen_ai.usage.cache_read.input_tokens``,
``gen_ai.usage.cache_creation.input_tokens``); margin's own figures are namespaced (``margin.cost.usd``,
``margin.cost.list_usd``, ``margin.status``, ``margin.request_id``, ``margin.cache``, tags as
``margin.tag.<name>``). Prompts and answers are never attached.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..usage import UsageEvent

__all__ = ["SpanEmitter", "build_emitter"]

_OPERATIONS = {"chat.completions": "chat", "messages": "chat", "embeddings": "embeddings"}


class SpanEmitter:
    """Turns usage events into spans on ``tracer`` (an OpenTelemetry ``Tracer``)."""

    def __init__(self, tracer: Any, provider: Any = None) -> None:
        self.tracer = tracer
        self.provider = provider  # the SDK TracerProvider margin built, flushed at shutdown

    def emit(self, event: UsageEvent) -> None:
        operation = _OPERATIONS.get(event.endpoint, event.endpoint)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": event.requested_model,
            "gen_ai.usage.input_tokens": event.input_tokens,
            "gen_ai.usage.output_tokens": event.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": event.cache_read_tokens,
            "gen_ai.usage.cache_creation.input_tokens": event.cache_write_tokens,
            "margin.cost.usd": float(event.effective_cost),
            "margin.cost.list_usd": float(event.list_cost),
            "margin.status": event.status,
            "margin.request_id": event.request_id,
            "margin.attempt": event.attempt,
        }
        if event.provider:
            attributes["gen_ai.provider.name"] = event.provider
        if event.served_model:
            attributes["gen_ai.response.model"] = event.served_model
        if event.cache:
            attributes["margin.cache"] = event.cache
        if event.avoided_cost:
            attributes["margin.cost.avoided_usd"] = float(event.avoided_cost)
        if event.error_type:
            attributes["error.type"] = event.error_type
        for name, value in event.tags.items():
            attributes[f"margin.tag.{name}"] = value
        name = f"{operation} {event.served_model or event.requested_model}".strip()
        span = self.tracer.start_span(name, start_time=_ns(event.started_at), attributes=attributes)
        span.end(end_time=_ns(event.finished_at))

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def _ns(moment: Any) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def build_emitter(config: Any, *, exporter: Any = None) -> SpanEmitter | None:
    """The emitter of ``gateway.otel`` (None when disabled). ``exporter`` replaces the configured one (tests
    pass an in-memory exporter)."""
    if not config.enabled:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        raise ConfigError(
            "gateway.otel.enabled needs the OpenTelemetry SDK: pip install 'margin[otel]' "
            "(opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http)"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif config.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint)))
    return SpanEmitter(provider.get_tracer("margin.gateway"), provider)
