from __future__ import annotations

import json
import logging

import click
import pytest
from click.testing import CliRunner

from teleway.runtime.cli import main
from teleway.runtime.logs import JsonFormatter, TextFormatter, log
from teleway.runtime.metrics import Metrics


def record(message: str, **fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("teleway.test", logging.INFO, __file__, 1, message, None, None)
    rec.fields = fields  # type: ignore[attr-defined]
    return rec


def test_json_logs_are_one_object_per_line_with_fields() -> None:
    line = JsonFormatter().format(record("bound", upstream="sim", window=10))
    data = json.loads(line)
    assert data["msg"] == "bound" and data["upstream"] == "sim" and data["window"] == 10
    assert data["level"] == "info" and data["logger"] == "teleway.test"


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_secrets_are_masked_in_every_format(formatter: logging.Formatter) -> None:
    line = formatter.format(record("bind", system_id="acme", password="hunter22", api_key="k-123"))
    assert "hunter22" not in line and "k-123" not in line
    assert "acme" in line and "***" in line


def test_log_helper_passes_fields(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("teleway.test.helper")
    with caplog.at_level(logging.INFO, logger="teleway.test.helper"):
        log(logger, logging.INFO, "accepted", message_id="01ABC")
    assert caplog.records[0].fields == {"message_id": "01ABC"}  # type: ignore[attr-defined]


def test_metrics_render_prometheus_text() -> None:
    metrics = Metrics()
    metrics.accepted.labels("smtp").inc()
    metrics.queue_depth.labels("queued").set(3)
    text = metrics.render().decode()
    assert 'teleway_messages_accepted_total{origin="smtp"} 1.0' in text
    assert 'teleway_queue_depth{state="queued"} 3.0' in text


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", _commands(main), ids=lambda p: " ".join(p) or "teleway")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_expected_commands_exist() -> None:
    names = {" ".join(p) for p in _commands(main)}
    for required in (
        "serve",
        "admin apply",
        "admin export",
        "db upgrade",
        "config check",
        "simulate smsc",
        "smpp decode",
        "smpp encode",
        "sms plan",
        "send",
        "status",
    ):
        assert required in names
