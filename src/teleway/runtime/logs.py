"""Structured logging: `key=value` text for people, one JSON object per line for machines.

Log calls pass their fields in `extra={"fields": {...}}` (see `log()`), never secrets: any field
whose name looks like a secret is masked here as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "authorization")


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ("***" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in fields.items()
    }


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = _clean(getattr(record, "fields", {}) or {})
        extra = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extra:
            line += "  " + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(_clean(getattr(record, "fields", {}) or {}))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def setup_logging(level: str = "info", fmt: str = "text", file: str = "") -> None:
    handler: logging.Handler = (
        logging.FileHandler(file, encoding="utf-8") if file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # third-party chatter stays at warning unless debugging
    for noisy in ("aiosqlite", "asyncio", "uvicorn.access", "sqlalchemy", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "debug" else logging.INFO)


def log(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log `message` with structured fields."""
    logger.log(level, message, extra={"fields": fields})
