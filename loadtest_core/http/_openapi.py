"""The OpenAPI description of the HTTP surface, written by hand to say exactly what it does."""

from __future__ import annotations

from typing import Any

CODES = [
    "UNAUTHORIZED",
    "INVALID_REQUEST",
    "INTERNAL_SERVER_ERROR",
    "NOT_FOUND",
    "ACTION_NOT_AVAILABLE",
    "METHOD_NOT_ALLOWED",
    "SERVICE_UNAVAILABLE",
    "REQUEST_TOO_LARGE",
    "REQUEST_TIMEOUT",
]


def openapi(max_body: int, max_plans: int) -> dict[str, Any]:
    error = {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "enum": CODES},
            "message": {"type": "string"},
            "planId": {"type": "integer", "format": "int64", "minimum": 1},
        },
    }
    envelope = {
        "type": "object",
        "required": ["data", "errors"],
        "properties": {
            "data": {"nullable": True, "enum": [None]},
            "errors": {
                "type": "array",
                "nullable": True,
                "items": {"$ref": "#/components/schemas/Error"},
            },
        },
    }
    failure = {
        "type": "object",
        "required": ["data", "errors"],
        "properties": {
            "data": {"nullable": True, "enum": [None]},
            "errors": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/components/schemas/Error"},
            },
        },
    }

    def answer(text: str, schema: str) -> dict[str, Any]:
        return {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "loadtest-core batch stop",
            "version": "0.1.0",
            "description": "Testinium-style POST /stop/execution over the loadtest-core engine.",
        },
        "paths": {
            "/stop/execution": {
                "post": {
                    "summary": "Stop the running tests of test plans",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "description": f"At most {max_body} bytes.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["plans"],
                                    "properties": {
                                        "plans": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": max_plans,
                                            "items": {
                                                "type": "integer",
                                                "format": "int64",
                                                "minimum": 1,
                                                "maximum": 9223372036854775807,
                                            },
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": answer(
                            "Well-formed and authorised; per-plan failures in errors "
                            "(NOT_FOUND, ACTION_NOT_AVAILABLE)",
                            "Envelope",
                        ),
                        "400": answer("INVALID_REQUEST: malformed body or content type", "Failure"),
                        "401": {
                            **answer("UNAUTHORIZED: missing or invalid bearer token", "Failure"),
                            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                        },
                        "500": answer("INTERNAL_SERVER_ERROR", "Failure"),
                        "503": answer(
                            "SERVICE_UNAVAILABLE: the store cannot take writes now, "
                            "or too many connections; retry later",
                            "Failure",
                        ),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"status": {"type": "string"}},
                                    }
                                }
                            },
                        },
                        "503": answer(
                            "SERVICE_UNAVAILABLE: the store cannot take writes", "Failure"
                        ),
                    },
                }
            },
        },
        "components": {
            "schemas": {"Error": error, "Envelope": envelope, "Failure": failure},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
