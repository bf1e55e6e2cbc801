"""The OpenAPI 3.1 description of margin's own HTTP API (admin under /v1/margin/, task outcomes, cache feedback,
health, models), served at ``GET /v1/margin/openapi.json`` and used by the schemathesis tests. The proxied
OpenAI and Anthropic routes follow their providers' own specifications and are not repeated here. Pure data."""

from __future__ import annotations

from typing import Any

from ..store.base import GROUP_BY_CHOICES

__all__ = ["openapi_spec"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ADMIN_ERRORS = {
    "400": _error("bad input: the message says what was wrong"),
    "401": _error("no key sent"),
    "403": _error("not the master key, or the admin API is disabled"),
}

_KEY = {
    "type": "object",
    "required": ["key_id", "prefix", "created_at"],
    "properties": {
        "key_id": {"type": "string"},
        "prefix": {"type": "string"},
        "user": {"type": ["string", "null"]},
        "team": {"type": ["string", "null"]},
        "project": {"type": ["string", "null"]},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "budget": {"type": ["string", "null"]},
        "models": {"type": "array", "items": {"type": "string"}},
        "created_at": {"type": "string"},
        "revoked_at": {"type": ["string", "null"]},
    },
}

_NAME = {"type": ["string", "null"], "maxLength": 200}
_TEXT = {"type": ["string", "null"]}


def openapi_spec(version: str) -> dict[str, Any]:
    """The spec document for margin ``version``."""
    admin = [{"masterKey": []}]
    anyone = [{"masterKey": []}, {"virtualKey": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "margin gateway: admin and insight API",
            "version": version,
            "description": 'Errors are OpenAI-style JSON bodies: {"error": {"message", "type", "code"}}.',
        },
        "components": {
            "securitySchemes": {
                "masterKey": {"type": "http", "scheme": "bearer", "description": "the master key"},
                "virtualKey": {"type": "http", "scheme": "bearer", "description": "a virtual key"},
            },
            "schemas": {"Error": _ERROR, "Key": _KEY},
        },
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {"200": _ok({"type": "object", "required": ["status"]})},
                }
            },
            "/v1/margin/keys": {
                "get": {
                    "operationId": "listKeys",
                    "security": admin,
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "required": ["keys"],
                                "properties": {
                                    "keys": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}
                                },
                            }
                        ),
                        **_ADMIN_ERRORS,
                    },
                },
                "post": {
                    "operationId": "createKey",
                    "security": admin,
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "user": _NAME,
                                        "team": _NAME,
                                        "project": _NAME,
                                        "tags": {
                                            "type": ["object", "null"],
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "budget": {
                                            "type": ["string", "null"],
                                            "pattern": r"^\$?[0-9]+(\.[0-9]+)? ?/ ?(request|hour|day|month)$",
                                            "examples": ["5/day", "100/month"],
                                        },
                                        "models": {
                                            "type": ["array", "null"],
                                            "items": {"type": "string", "minLength": 1},
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _ok({"allOf": [{"$ref": "#/components/schemas/Key"}, {"required": ["key"]}]}, "created"),
                        **_ADMIN_ERRORS,
                    },
                },
            },
            "/v1/margin/keys/{key}/revoke": {
                "post": {
                    "operationId": "revokeKey",
                    "security": admin,
                    "parameters": [{"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": _ok({"type": "object", "required": ["revoked"]}),
                        "404": _error("no active key with that id or prefix"),
                        **_ADMIN_ERRORS,
                    },
                }
            },
            "/v1/margin/spend": {
                "get": {
                    "operationId": "spend",
                    "security": admin,
                    "parameters": [
                        {
                            "name": "by",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "anyOf": [
                                    {"enum": list(GROUP_BY_CHOICES)},
                                    {"type": "string", "pattern": r'^tag:[^"\\\x00-\x1f]+$'},
                                ]
                            },
                        },
                        {
                            "name": "since",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "format": "date-time"},
                        },
                    ],
                    "responses": {"200": _ok({"type": "object", "required": ["rows"]}), **_ADMIN_ERRORS},
                }
            },
            "/v1/margin/budgets": {
                "get": {
                    "operationId": "budgets",
                    "security": admin,
                    "responses": {"200": _ok({"type": "object", "required": ["budgets", "counters"]}), **_ADMIN_ERRORS},
                }
            },
            "/v1/margin/breakers/reset": {
                "post": {
                    "operationId": "resetBreakers",
                    "security": admin,
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"rule": _TEXT, "value": _TEXT},
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "responses": {"200": _ok({"type": "object", "required": ["reset"]}), **_ADMIN_ERRORS},
                }
            },
            "/v1/margin/alerts": {
                "get": {
                    "operationId": "alerts",
                    "security": admin,
                    "responses": {"200": _ok({"type": "object", "required": ["alerts"]}), **_ADMIN_ERRORS},
                }
            },
            "/v1/margin/ledger/flush": {
                "post": {
                    "operationId": "flushLedger",
                    "security": admin,
                    "responses": {"200": _ok({"type": "object", "required": ["flushed"]}), **_ADMIN_ERRORS},
                }
            },
            "/v1/margin/cache/clear": {
                "post": {
                    "operationId": "clearCache",
                    "security": admin,
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"route": _TEXT, "scope": _TEXT, "prefix": _TEXT},
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "required": ["cleared"],
                                "properties": {
                                    "cleared": {"type": "integer"},
                                    "exact": {"type": "integer"},
                                    "semantic": {"type": "integer"},
                                    "remaining": {"type": ["integer", "null"]},
                                },
                            }
                        ),
                        **_ADMIN_ERRORS,
                    },
                }
            },
            "/v1/margin/tasks/{task_id}/outcome": {
                "post": {
                    "operationId": "taskOutcome",
                    "security": anyone,
                    "parameters": [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["outcome"],
                                    "properties": {
                                        "outcome": {"enum": ["success", "failure"]},
                                        "note": {"type": ["string", "null"]},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _ok({"type": "object", "required": ["task_id", "outcome"]}),
                        "400": _error("bad input"),
                        "401": _error("no key, or an unknown key"),
                        "404": _error("no request of this key carries the task id"),
                    },
                }
            },
            "/v1/margin/feedback": {
                "post": {
                    "operationId": "feedback",
                    "security": anyone,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["request_id", "correct"],
                                    "properties": {"request_id": {"type": "string"}, "correct": {"type": "boolean"}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _ok({"type": "object", "required": ["request_id", "recorded", "correct"]}),
                        "400": _error("bad input"),
                        "401": _error("no key, or an unknown key"),
                        "404": _error("no semantic-cache hit with this request id for this key"),
                    },
                }
            },
        },
    }
