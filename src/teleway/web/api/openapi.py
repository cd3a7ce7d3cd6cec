"""The OpenAPI 3.1 description of `/api/v1`, and the docs page that renders it without a CDN.

Written out by hand (not generated from the handlers) because it is the contract customers code
against: it changes when we decide, and the tests run schemathesis against it so handlers and
document cannot drift apart unnoticed.
"""

from __future__ import annotations

import html
import json
from typing import Any

from teleway.core.accept import MAX_TEXT_CHARS, MAX_VALIDITY
from teleway.core.model import DeliveryState, Device, Origin
from teleway.web.api import schemas
from teleway.web.api.problems import CATALOGUE, PROBLEM_JSON

VERSION = "1.0.0"

_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_STR_OR_NULL = {"type": ["string", "null"]}
_STATE = {"type": "string", "enum": [s.value for s in DeliveryState]}
_DEVICE = {"type": "string", "enum": [d.value for d in Device]}
_ORIGIN = {"type": "string", "enum": [o.value for o in Origin]}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _ref("Problem")}}}


def _json_response(description: str, schema: dict[str, Any], **headers: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


_ERRORS = {
    "400": _problem_response("Malformed request (not JSON, bad header)"),
    "401": _problem_response("No API key, or an unknown or revoked one"),
    "429": _problem_response("Too many requests for this key; see Retry-After"),
    "503": _problem_response("The store cannot take requests now; see Retry-After"),
    "default": _problem_response("Any other error, as RFC 9457 problem details"),
}

_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "format": "uri-reference"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "retry_after": {"type": "integer", "minimum": 1},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "reason"],
                    "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
        },
    },
    "Recipient": {
        "type": "object",
        "required": ["number"],
        "additionalProperties": False,
        "properties": {
            "number": {
                "type": "string",
                "minLength": 1,
                "maxLength": schemas.MAX_NUMBER_CHARS,
                "description": "E.164 (+14155550100) or national with the account's country",
                "examples": ["+14155550100"],
            },
            "device": {**_DEVICE, "default": "sms"},
        },
    },
    "MessageOptions": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "validity": {
                "type": "integer",
                "minimum": 1,
                "maximum": int(MAX_VALIDITY.total_seconds()),
                "description": "seconds to keep trying (default: the account's validity)",
            },
            "schedule": {**_TIME, "description": "deliver no earlier than this (RFC 3339)"},
            "sender_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 16,
                "pattern": r"^(\+?[0-9]{1,15}|[A-Za-z0-9.\-_&][A-Za-z0-9 .\-_&]{0,10})$",
                "description": "a number, or up to 11 letters, digits and spaces",
            },
            "callback_url": {
                "type": "string",
                "format": "uri",
                "pattern": "^https?://",
                "maxLength": schemas.MAX_URL_CHARS,
                "description": "webhook for this message's state changes (else the account's)",
            },
        },
    },
    "MessageRequest": {
        "type": "object",
        "required": ["recipients"],
        "additionalProperties": False,
        "properties": {
            "recipients": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": _ref("Recipient"),
            },
            "text": {"type": "string", "maxLength": MAX_TEXT_CHARS},
            "subject": {"type": "string", "maxLength": schemas.MAX_SUBJECT_CHARS},
            "options": _ref("MessageOptions"),
        },
        "examples": [
            {
                "recipients": [{"number": "+14155550100", "device": "sms"}],
                "text": "Your parcel arrives today",
                "options": {"callback_url": "https://example.com/teleway-hook"},
            }
        ],
    },
    "MessageMultipart": {
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {"type": "string", "description": "the MessageRequest as JSON text"},
            "attachments": {
                "type": "array",
                "maxItems": schemas.MAX_ATTACHMENTS,
                "items": {"type": "string", "contentMediaType": "application/octet-stream"},
            },
        },
    },
    "MessageCreated": {
        "type": "object",
        "required": ["id", "created_at", "deliveries", "links"],
        "properties": {
            "id": {"type": "string"},
            "created_at": _TIME,
            "deliveries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "recipient", "device", "state"],
                    "properties": {
                        "id": {"type": "string"},
                        "recipient": {"type": "string"},
                        "device": _DEVICE,
                        "state": _STATE,
                    },
                },
            },
            "links": {
                "type": "object",
                "required": ["self"],
                "properties": {"self": {"type": "string"}},
            },
        },
    },
    "Event": {
        "type": "object",
        "required": ["at", "from", "to", "reason"],
        "properties": {
            "at": _TIME,
            "from": {"type": ["string", "null"], "enum": [*(s.value for s in DeliveryState), None]},
            "to": _STATE,
            "reason": {"type": "string"},
        },
    },
    "Part": {
        "type": "object",
        "required": ["upstream_id", "part", "state"],
        "properties": {
            "upstream_id": {"type": "string"},
            "part": {"type": "integer", "minimum": 1},
            "state": _STR_OR_NULL,
            "updated_at": _TIME_OR_NULL,
        },
    },
    "Delivery": {
        "type": "object",
        "required": ["id", "recipient", "device", "state", "final", "attempts"],
        "properties": {
            "id": {"type": "string"},
            "recipient": {"type": "string"},
            "device": _DEVICE,
            "state": _STATE,
            "final": {"type": "boolean"},
            "attempts": {"type": "integer", "minimum": 0},
            "channel": _STR_OR_NULL,
            "error": _STR_OR_NULL,
            "upstream_ids": {"type": "array", "items": {"type": "string"}},
            "valid_until": _TIME_OR_NULL,
            "updated_at": _TIME,
            "events": {"type": "array", "items": _ref("Event")},
            "parts": {"type": "array", "items": _ref("Part")},
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "origin", "created_at", "text", "deliveries", "state_counts"],
        "properties": {
            "id": {"type": "string"},
            "origin": _ORIGIN,
            "submitter": {"type": "string"},
            "created_at": _TIME,
            "subject": {"type": "string"},
            "text": {"type": "string"},
            "attachments": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["filename", "content_type", "size"],
                    "properties": {
                        "filename": {"type": "string"},
                        "content_type": {"type": "string"},
                        "size": {"type": "integer", "minimum": 0},
                    },
                },
            },
            "options": {
                "type": "object",
                "properties": {
                    "valid_until": _TIME_OR_NULL,
                    "scheduled_at": _TIME_OR_NULL,
                    "sender_id": _STR_OR_NULL,
                    "callback_url": _STR_OR_NULL,
                    "report": {"type": "string"},
                },
            },
            "deliveries": {"type": "array", "items": _ref("Delivery")},
            "state_counts": _COUNTS,
            "cancelled": {"type": "array", "items": {"type": "string"}},
        },
    },
    "MessagePage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("Message")},
            "next_cursor": _STR_OR_NULL,
        },
    },
    "Usage": {
        "type": "object",
        "required": ["account", "since", "until", "messages", "deliveries", "sms_parts"],
        "properties": {
            "account": {"type": "string"},
            "since": _TIME,
            "until": _TIME,
            "messages": {"type": "integer", "minimum": 0},
            "deliveries": {"type": "integer", "minimum": 0},
            "sms_parts": {"type": "integer", "minimum": 0},
            "by_state": _COUNTS,
            "by_device": _COUNTS,
            "by_origin": _COUNTS,
        },
    },
    "WebhookEvent": {
        "type": "object",
        "description": "The JSON body POSTed to a webhook on each delivery state change",
        "required": ["event", "id", "message_id", "delivery_id", "state", "final", "at"],
        "properties": {
            "event": {"type": "string", "enum": ["delivery.state_changed"]},
            "id": {"type": "integer", "description": "unique per report: deduplicate on it"},
            "message_id": {"type": "string"},
            "delivery_id": {"type": "string"},
            "recipient": {"type": "string"},
            "device": _DEVICE,
            "state": _STATE,
            "final": {"type": "boolean"},
            "reason": {"type": "string"},
            "error": _STR_OR_NULL,
            "upstream_ids": {"type": "array", "items": {"type": "string"}},
            "attempts": {"type": "integer"},
            "at": _TIME,
        },
    },
}

_TIME_PARAM = {"type": "string", "format": "date-time"}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


_MESSAGE_ID = {
    "name": "message_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
}

_RETRY_AFTER = {"schema": {"type": "string"}, "description": "seconds to wait"}


def openapi_document(public_url: str = "") -> dict[str, Any]:
    """The document served at /api/v1/openapi.json."""
    server = (public_url.rstrip("/") + "/api/v1") if public_url else "/api/v1"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "teleway REST API",
            "version": VERSION,
            "description": (
                "Send SMS, voice calls and faxes, follow their deliveries, and receive "
                "signed webhooks on every state change. Errors are RFC 9457 problem+json."
            ),
        },
        "servers": [{"url": server}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            "/messages": {
                "post": {
                    "operationId": "createMessage",
                    "summary": "Submit a message to one or more recipients",
                    "description": (
                        "Answered 201 only once the message is committed. Retry safely with "
                        "the same Idempotency-Key: the same body gets the same answer."
                    ),
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 255,
                                "pattern": "^[!-~]+$",
                            },
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _ref("MessageRequest")},
                            "multipart/form-data": {"schema": _ref("MessageMultipart")},
                        },
                    },
                    "responses": {
                        "201": _json_response(
                            "Committed",
                            _ref("MessageCreated"),
                            Location={"schema": {"type": "string"}},
                        ),
                        "403": _problem_response("The account is disabled"),
                        "409": _problem_response("The same Idempotency-Key is in progress"),
                        "413": _problem_response("Body too large"),
                        "415": _problem_response("Neither JSON nor multipart"),
                        "422": _problem_response(
                            "Invalid request, with a reason per field; or an Idempotency-Key "
                            "reused with another body"
                        ),
                        **_ERRORS,
                    },
                },
                "get": {
                    "operationId": "listMessages",
                    "summary": "Messages of the account, newest first",
                    "parameters": [
                        _query("since", _TIME_PARAM, "created at or after"),
                        _query("until", _TIME_PARAM, "created before"),
                        _query(
                            "recipient",
                            {"type": "string", "maxLength": schemas.MAX_NUMBER_CHARS},
                            "digits the recipient's number contains",
                        ),
                        _query("device", _DEVICE, "a delivery to this device"),
                        _query("state", _STATE, "a delivery in this state"),
                        _query("origin", _ORIGIN, "how the message arrived"),
                        _query(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                            "page size",
                        ),
                        _query("cursor", {"type": "string"}, "next_cursor of the last page"),
                    ],
                    "responses": {
                        "200": _json_response(
                            "A page",
                            _ref("MessagePage"),
                            Link={"schema": {"type": "string"}},
                        ),
                        "422": _problem_response("Invalid filter"),
                        **_ERRORS,
                    },
                },
            },
            "/messages/{message_id}": {
                "get": {
                    "operationId": "getMessage",
                    "summary": "A message with every delivery's events and parts",
                    "parameters": [_MESSAGE_ID],
                    "responses": {
                        "200": _json_response("The message", _ref("Message")),
                        "404": _problem_response("No such message in this account"),
                        **_ERRORS,
                    },
                },
                "delete": {
                    "operationId": "cancelMessage",
                    "summary": "Cancel the deliveries still queued",
                    "parameters": [_MESSAGE_ID],
                    "responses": {
                        "200": _json_response("What was cancelled", _ref("Message")),
                        "404": _problem_response("No such message in this account"),
                        "409": _problem_response("No delivery is still queued"),
                        **_ERRORS,
                    },
                },
            },
            "/account/usage": {
                "get": {
                    "operationId": "getUsage",
                    "summary": "What the account sent (default: this calendar month, UTC)",
                    "parameters": [
                        _query("since", _TIME_PARAM, "from (default: start of this month)"),
                        _query("until", _TIME_PARAM, "to (default: now)"),
                    ],
                    "responses": {
                        "200": _json_response("Counts", _ref("Usage")),
                        "422": _problem_response("Invalid range"),
                        **_ERRORS,
                    },
                }
            },
        },
        "webhooks": {
            "deliveryStateChanged": {
                "post": {
                    "summary": "A delivery changed state",
                    "description": (
                        "Signed: `Teleway-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "
                        "'<t>.<body>' with the account's webhook secret>`. Answer 2xx within "
                        "10 s; anything else is retried with back-off until the message's "
                        "validity ends."
                    ),
                    "requestBody": {
                        "content": {"application/json": {"schema": _ref("WebhookEvent")}}
                    },
                    "responses": {"200": {"description": "Received"}},
                }
            }
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "tw_..."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "headers": {"Retry-After": _RETRY_AFTER},
        },
    }


def docs_page(document: dict[str, Any]) -> str:
    """A self-contained HTML page describing the API (no script, no CDN, no external style)."""
    e = html.escape
    out: list[str] = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(document['info']['title'])}</title>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem;color:#1d2330}code,pre{font:13px ui-monospace,monospace;background:#f3f4f6}"
        "pre{padding:.8rem;overflow:auto}h2{border-bottom:1px solid #ddd;margin-top:2.5rem}"
        ".m{display:inline-block;min-width:4.5rem;font-weight:700}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;"
        "text-align:left;vertical-align:top}</style></head><body>",
        f"<h1>{e(document['info']['title'])} <small>{e(document['info']['version'])}</small></h1>",
        f"<p>{e(document['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/api/v1/openapi.json'>openapi.json</a> (OpenAPI 3.1). "
        "Authenticate with <code>Authorization: Bearer &lt;key&gt;</code> or "
        "<code>X-API-Key: &lt;key&gt;</code>.</p>",
        "<h2>Operations</h2>",
    ]
    base = document["servers"][0]["url"]
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            out.append(
                f"<h3 id='{e(op['operationId'])}'><span class='m'>{e(method.upper())}</span>"
                f"<code>{e(base + path)}</code></h3><p>{e(op['summary'])}</p>"
            )
            if op.get("description"):
                out.append(f"<p>{e(op['description'])}</p>")
            params = op.get("parameters", [])
            if params:
                out.append("<table><tr><th>parameter</th><th>in</th><th>schema</th></tr>")
                for p in params:
                    out.append(
                        f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['in'])}</td>"
                        f"<td><code>{e(json.dumps(p['schema']))}</code></td></tr>"
                    )
                out.append("</table>")
            out.append("<p>Responses: " + ", ".join(
                f"<b>{e(code)}</b> {e(r['description'])}" for code, r in op["responses"].items()
            ) + "</p>")  # fmt: skip
    out.append("<h2>Webhooks</h2>")
    for name, hook in document["webhooks"].items():
        out.append(f"<h3>{e(name)}</h3><p>{e(hook['post']['description'])}</p>")
    out.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        out.append(
            f"<h3 id='schema-{e(name)}'>{e(name)}</h3><pre>{e(json.dumps(schema, indent=2))}</pre>"
        )
    out.append("<h2>Problem types</h2><table><tr><th>type</th><th>status</th><th>title</th></tr>")
    for kind in CATALOGUE:
        out.append(
            f"<tr id='problem-{e(kind.slug)}'><td><code>{e(kind.type_uri)}</code></td>"
            f"<td>{kind.status}</td><td>{e(kind.title)}</td></tr>"
        )
    out.append("</table></body></html>")
    return "".join(out)
