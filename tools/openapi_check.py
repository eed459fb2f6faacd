#!/usr/bin/env python3
"""Validates Couchpay's OpenAPI document as OpenAPI 3.1, and real responses against it.

Usage: openapi_check.py DOCUMENT.json SAMPLES.json

SAMPLES is a list of {"method", "path" (the documented template), "status", "body"}
recorded from a running server. Each body must validate against the schema the document
gives for that operation and status. Needs `pip install openapi-spec-validator`.
"""
import json
import sys

from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate


def response_schema(doc, method, path, status):
    op = doc["paths"][path][method.lower()]
    responses = op["responses"]
    response = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    if response is None:
        raise SystemExit(f"{method} {path}: status {status} is not documented")
    content = response.get("content", {})
    media = content.get("application/json")
    if media is None:
        raise SystemExit(f"{method} {path} {status}: no application/json schema")
    return media["schema"]


def main():
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    with open(sys.argv[2]) as f:
        samples = json.load(f)
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["openapi"].startswith("3.1"), doc["openapi"]
    print(f"document: OpenAPI {doc['openapi']}, {len(doc['paths'])} paths, "
          f"{len(doc['components']['schemas'])} schemas: valid")
    failures = 0
    for s in samples:
        schema = response_schema(doc, s["method"], s["path"], s["status"])
        # `#/components/...` references resolve against this root.
        root = dict(schema, components=doc["components"])
        errors = list(OAS31Validator(root).iter_errors(s["body"]))
        label = f"{s['method']} {s['path']} {s['status']}"
        if errors:
            failures += 1
            print(f"FAIL {label}:")
            for e in errors[:5]:
                print(f"    {'/'.join(map(str, e.absolute_path))}: {e.message}")
        else:
            print(f"ok   {label}")
    if failures:
        raise SystemExit(f"{failures} of {len(samples)} responses do not match the document")
    print(f"{len(samples)} real responses match their schemas")


if __name__ == "__main__":
    main()
