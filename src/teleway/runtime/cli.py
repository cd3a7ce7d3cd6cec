"""The `teleway` command. Every subcommand has --help; errors are one clear line and an exit
code (2: bad input or configuration, 1: the system failed), never a traceback."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from teleway.runtime.cli_admin import admin
from teleway.runtime.cli_config import config as config_group
from teleway.runtime.cli_routes import routes
from teleway.runtime.cli_simulate import simulate_mo
from teleway.runtime.cli_smpp import smpp
from teleway.runtime.cli_sms import sms
from teleway.runtime.config import Config, ConfigError, load_config

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class ConfigClickException(click.ClickException):
    """Bad input or configuration: exit code 2."""

    exit_code = 2


class LazyConfig(dict[str, Any]):
    """ctx.obj: loads the configuration the first time a command needs it."""

    def __init__(self, path: str | None) -> None:
        super().__init__(config_path=path)

    @property
    def config(self) -> Config:
        if "config" not in self:
            try:
                self["config"] = load_config(self["config_path"])
            except ConfigError as exc:
                raise ConfigClickException(f"invalid configuration:\n{exc}") from exc
        cfg: Config = self["config"]
        return cfg

    def __missing__(self, key: str) -> Any:
        if key == "database_url":
            return self.config.database.url
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


def _config(ctx: click.Context) -> Config:
    obj = ctx.find_object(LazyConfig)
    assert obj is not None
    return obj.config


@click.group(context_settings=CONTEXT)
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    envvar="TELEWAY_CONFIG",
    help="Configuration file (default: ./teleway.toml if present, else built-in defaults).",
)
@click.version_option(package_name="teleway")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """teleway: a messaging gateway. SMTP, SMPP and HTTP in; SMS, voice, fax and push out.

    \b
    Quick start:  teleway db upgrade && teleway admin apply examples/demo-provisioning.toml
                  teleway serve
    """
    ctx.obj = LazyConfig(config_path)


@main.command(context_settings=CONTEXT)
@click.option("--demo-hint", is_flag=True, hidden=True, help="Print how to send a first message.")
@click.pass_context
def serve(ctx: click.Context, demo_hint: bool) -> None:
    """Run every enabled listener and worker in this process.

    SIGTERM or SIGINT drain gracefully: stop accepting, finish work in flight, then exit.
    """
    from teleway.runtime.gateway import GatewayError, run_gateway
    from teleway.runtime.wiring import run

    cfg = _config(ctx)
    try:
        code = run(run_gateway(cfg, demo_hint=demo_hint), cfg.gateway.event_loop)
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


@main.group(context_settings=CONTEXT)
def db() -> None:
    """Database schema: migrations and checks."""


@db.command(context_settings=CONTEXT)
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Create or migrate the database schema to this version (safe to repeat)."""
    from teleway.runtime.gateway import GatewayError, upgrade_database

    cfg = _config(ctx)
    try:
        message = asyncio.run(upgrade_database(cfg))
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(message)


@db.command(context_settings=CONTEXT)
@click.pass_context
def check(ctx: click.Context) -> None:
    """Exit 0 when the database schema matches this version, else say what to do."""
    from teleway.runtime.gateway import GatewayError, check_database

    cfg = _config(ctx)
    try:
        click.echo(asyncio.run(check_database(cfg)))
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from exc


@main.group(context_settings=CONTEXT)
def simulate() -> None:
    """Simulators shipped for testing and demos."""


@simulate.command(context_settings=CONTEXT)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2776, show_default=True, type=click.IntRange(0, 65535))
@click.option("--system-id", default="teleway", show_default=True)
@click.option(
    "--password", default="simulat", show_default=True, help="SMPP: at most 8 characters."
)
@click.option("--receipt-delay", default=1.0, show_default=True, type=click.FloatRange(0))
@click.option("--success-ratio", default=1.0, show_default=True, type=click.FloatRange(0, 1))
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append every accepted submit as a JSON line (fsynced).",
)
@click.option(
    "--id-format", type=click.Choice(["hex", "decimal"]), default="hex", show_default=True
)
@click.option("--seed", type=int, help="Seed for the success draw (repeatable runs).")
@click.option(
    "--throttle-every",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Answer every Nth submit with ESME_RTHROTTLED (0: never).",
)
@click.option(
    "--reject",
    "reject_destinations",
    multiple=True,
    metavar="NUMBER",
    help="Answer submits to this destination with ESME_RINVDSTADR; repeatable.",
)
@click.option(
    "--throttle-ratio",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of submits answered ESME_RTHROTTLED.",
)
@click.option(
    "--error-ratio",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of submits answered with --error-status.",
)
@click.option(
    "--error-status",
    default="0x08",
    show_default=True,
    help="command_status for --error-ratio (number, e.g. 0x08 ESME_RSYSERR, 0x0b ESME_RINVDSTADR).",
)
@click.option(
    "--response-delay",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds before each submit is answered (slow SMSC).",
)
@click.option(
    "--no-response-ratio",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of submits never answered (response timeouts).",
)
@click.option(
    "--disconnect-ratio",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of submits that drop the connection unanswered (random disconnects).",
)
@click.option(
    "--receipt-jitter",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Receipts come up to this many seconds after --receipt-delay.",
)
@click.option(
    "--receipts/--no-receipts",
    default=True,
    show_default=True,
    help="Send delivery receipts when asked (off: answer submits only).",
)
@click.option(
    "--failure-err",
    default=1,
    show_default=True,
    type=click.IntRange(0, 999),
    help="err: code of UNDELIV receipts.",
)
def smsc(
    host: str,
    port: int,
    system_id: str,
    password: str,
    receipt_delay: float,
    success_ratio: float,
    journal: Path | None,
    id_format: str,
    seed: int | None,
    throttle_every: int,
    reject_destinations: tuple[str, ...],
    throttle_ratio: float,
    error_ratio: float,
    error_status: str,
    response_delay: float,
    no_response_ratio: float,
    disconnect_ratio: float,
    receipt_jitter: float,
    receipts: bool,
    failure_err: int,
) -> None:
    """Run an SMPP SMSC simulator: accepts binds, answers submits, sends receipts.

    Replies from phones (MO) are injected with `teleway simulate mo`."""
    from teleway.runtime.logs import setup_logging
    from teleway.testing.smsc import SimulatorSettings, serve_forever

    setup_logging("info")
    settings = SimulatorSettings(
        host=host,
        port=port,
        system_id=system_id,
        password=password,
        receipt_delay=receipt_delay,
        success_ratio=success_ratio,
        journal=journal,
        id_format=id_format,
        seed=seed,
        throttle_every=throttle_every,
        reject_destinations=frozenset(d.lstrip("+") for d in reject_destinations),
        throttle_ratio=throttle_ratio,
        error_ratio=error_ratio,
        error_status=_status_number(error_status),
        response_delay=response_delay,
        no_response_ratio=no_response_ratio,
        disconnect_ratio=disconnect_ratio,
        receipt_jitter=receipt_jitter,
        failure_err=failure_err,
        receipts=receipts,
    )
    try:
        asyncio.run(serve_forever(settings))
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    except KeyboardInterrupt:
        pass


def _status_number(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number", param_hint="--error-status") from None
    if not 0 < value <= 0xFFFFFFFF:
        raise click.BadParameter("must be 1..0xffffffff", param_hint="--error-status")
    return value


simulate.add_command(simulate_mo)


@main.command(context_settings=CONTEXT)
@click.option("--account", required=True, help="Account name (see `teleway admin account list`).")
@click.option(
    "--to",
    "recipients",
    required=True,
    multiple=True,
    metavar="NUMBER[@DEVICE]",
    help="Recipient in international format; repeat for several. "
    "Device: sms (default), business, mobile, home, fax.",
)
@click.option("--subject", default="", help="Subject: applies the account's SMS template.")
@click.option("--sender-id", default=None, help="Sender id shown on the phone.")
@click.option("--report/--no-report", default=False, help="Ask for a delivery report.")
@click.argument("text")
@click.pass_context
def send(
    ctx: click.Context,
    account: str,
    recipients: tuple[str, ...],
    subject: str,
    sender_id: str | None,
    report: bool,
    text: str,
) -> None:
    """Submit a message from the command line (stored durably; a running gateway delivers it).

    \b
    Example:  teleway send --account demo --to +17816170000 "Hello from teleway"
    """
    from teleway.runtime.gateway import GatewayError, submit_from_cli

    cfg = _config(ctx)
    try:
        accepted = asyncio.run(
            submit_from_cli(
                cfg,
                account=account,
                recipients=recipients,
                subject=subject,
                sender_id=sender_id,
                report=report,
                text=text,
            )
        )
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from exc
    except ValueError as exc:
        raise ConfigClickException(str(exc)) from exc
    click.echo(f"accepted message {accepted.message_id}")
    for delivery_id, number in zip(accepted.delivery_ids, accepted.recipients, strict=True):
        click.echo(f"  delivery {delivery_id} -> {number}")


@main.command(context_settings=CONTEXT)
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, message_id: str, as_json: bool) -> None:
    """Show a message's deliveries and every state change."""
    from teleway.runtime.gateway import GatewayError, message_status

    cfg = _config(ctx)
    try:
        report = asyncio.run(message_status(cfg, message_id))
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        import json

        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(f"message {report['id']} from {report['submitter']} via {report['origin']}")
    for d in report["deliveries"]:
        click.echo(
            f"  {d['recipient']} ({d['device']}): {d['state']}  attempts={d['attempts']}"
            + (f"  error={d['error']}" if d["error"] else "")
        )
        for e in d["events"]:
            click.echo(f"    {e['at']}  {e['from'] or '-':>13} -> {e['to']:<13} {e['reason']}")


main.add_command(admin)
main.add_command(config_group)
main.add_command(smpp)
main.add_command(sms)
main.add_command(routes)
