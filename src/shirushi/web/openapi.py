"""The OpenAPI 3.1 document of the RA/admin API, made from the operations the server runs.

Pure: the same `Operation` list that builds the routes (`web.operations`) gives every path,
method, parameter, body schema, answer and security requirement here, so nothing is kept twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shirushi.web.operations import Operation
from shirushi.web.schemas import ERROR, JsonSchema

ERROR_REF: JsonSchema = {"$ref": "#/components/schemas/Error"}


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.handler.__name__,
        "summary": op.summary,
        # Each route says who may call it; an empty list is the OpenAPI spelling of "anyone".
        "security": [{"bearer": []}] if op.role is not None else [],
    }
    if op.description:
        doc["description"] = op.description
    if op.role is not None:
        doc["x-role"] = op.role
    if op.params:
        doc["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": schema} for name, schema in op.params.items()
        ]
    if op.body is not None:
        doc["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
    responses: dict[str, Any] = {}
    for status, answer in op.all_responses().items():
        schema = answer.schema if answer.schema is not None or status < 400 else ERROR_REF
        entry: dict[str, Any] = {"description": answer.description}
        if schema is not None:
            entry["content"] = {"application/json": {"schema": schema}}
        if answer.headers:
            entry["headers"] = {
                name: {"description": text, "required": True, "schema": {"type": "string"}}
                for name, text in answer.headers.items()
            }
        responses[str(status)] = entry
    doc["responses"] = responses
    return doc


def openapi_document(operations: Sequence[Operation], *, title: str, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR},
        },
        "paths": paths,
    }
