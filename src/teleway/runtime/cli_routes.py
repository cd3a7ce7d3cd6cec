"""``teleway routes ...``: which upstream SMSC a number would use, and why.

The route table is the ``[[routes]]`` of the configuration (docs/sms.md, "Routing"); a running
gateway reloads it on SIGHUP and when the file changes, so ``routes check`` shows what the
gateway does after its next reload.
"""

from __future__ import annotations

import json

import click

from teleway.core.numbers import InvalidNumber, normalise_number
from teleway.core.routing import RouteError

__all__ = ["routes"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
def routes() -> None:
    """SMS routes: check which upstream a number would use."""


@routes.command("check", context_settings=CONTEXT)
@click.argument("number")
@click.option("--account", default=None, help="Name of the sending account.")
@click.option("--sender", default=None, help="Sender id: a number (+4915...) or a name (ACME).")
@click.option(
    "--down",
    multiple=True,
    metavar="UPSTREAM",
    help="Treat this upstream as unavailable (see the failover); repeatable.",
)
@click.option(
    "--seed-draw",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="The load-sharing draw in [0, 1) (which share is used).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def check(
    ctx: click.Context,
    number: str,
    account: str | None,
    sender: str | None,
    down: tuple[str, ...],
    seed_draw: float,
    as_json: bool,
) -> None:
    """Print which upstream an SMS to NUMBER would use and why.

    \b
    Example:  teleway routes check +447911123456 --account acme --sender ACME
    """
    from teleway.runtime.cli import ConfigClickException, _config

    config = _config(ctx)
    try:
        destination = normalise_number(number)
    except InvalidNumber as exc:
        raise ConfigClickException(f"invalid number {exc}") from exc
    try:
        table = config.route_table()
    except RouteError as exc:
        raise ConfigClickException(f"invalid route table: {exc}") from exc
    unknown = [name for name in down if name not in table.upstreams]
    if unknown:
        raise ConfigClickException(
            f"--down: no upstream named {', '.join(unknown)}"
            f" (known: {', '.join(table.upstreams) or 'none'})"
        )
    choice = table.choose(
        destination,
        account=account,
        sender=sender,
        available=lambda name: name not in down,
        draw=seed_draw,
    )
    if as_json:
        out = {
            "number": destination,
            "route": choice.route,
            "upstream": choice.upstream,
            "failover": list(choice.candidates[1:]),
            "reasons": list(choice.reasons),
        }
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(f"{destination} -> {choice.upstream or 'no upstream available'}")
        click.echo(f"route: {choice.route or '(default: every upstream in order)'}")
        if choice.candidates[1:]:
            click.echo(f"failover: {', '.join(choice.candidates[1:])}")
        for reason in choice.reasons:
            click.echo(f"  {reason}")
    if choice.upstream is None:
        ctx.exit(1)
