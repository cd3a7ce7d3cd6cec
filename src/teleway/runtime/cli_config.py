"""``teleway config check|show``: validate a configuration and print what would be used.

The lead registers :data:`config` in the main CLI group, which passes the file given to
``teleway --config FILE`` as ``ctx.obj["config_path"]``; ``--config`` on the subcommand itself
wins over it. Both commands exit with status 2 when the configuration is invalid, after
printing every problem on standard error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import tomli_w

from teleway.runtime.config import Config, ConfigError, load_config

__all__ = ["config"]

#: Exit status for an unusable configuration (the same as click's usage errors).
EXIT_INVALID = 2

config = click.Group("config", help="Check the configuration or show the effective one.")

_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Configuration file (default: $TELEWAY_CONFIG, else ./teleway.toml, else built-in).",
)


def _load(ctx: click.Context, config_path: Path | None) -> Config:
    """Load the configuration, or print every problem and exit with status 2."""
    if config_path is None and isinstance(ctx.obj, dict):
        config_path = ctx.obj.get("config_path")
    try:
        return load_config(config_path)
    except ConfigError as exc:
        count = len(exc.problems)
        click.echo(f"configuration invalid: {count} problem{'s' if count != 1 else ''}", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        ctx.exit(EXIT_INVALID)


def _source(cfg: Config) -> str:
    return str(cfg.source) if cfg.source is not None else "built-in defaults"


def _listener_notes(name: str, listener: Any) -> str:
    notes: list[str] = []
    if name == "smtp" and listener.starttls:
        notes.append("STARTTLS" if listener.tls_cert else "STARTTLS, self-signed")
    if name == "smpp_tls":
        notes.append("TLS" if listener.tls_cert else "TLS, self-signed")
    if name == "http":
        if listener.tls_cert:
            notes.append("HTTPS")
        if listener.metrics:
            notes.append("/metrics")
    return f"  ({', '.join(notes)})" if notes else ""


def summary_lines(cfg: Config) -> list[str]:
    """The short human summary ``config check`` prints after "configuration OK"."""
    lines = [
        f"source:    {_source(cfg)}",
        f"node:      {cfg.gateway.node_name}",
        f"domains:   {', '.join(cfg.gateway.domains)}",
        f"database:  {cfg.database.display_url}",
        "listeners:",
    ]
    for name in ("smtp", "smpp", "smpp_tls", "http"):
        listener = getattr(cfg.listeners, name)
        if listener.enabled:
            where = f"{listener.host}:{listener.port}"
            lines.append(f"  {name:<9} {where}{_listener_notes(name, listener)}")
        else:
            lines.append(f"  {name:<9} disabled")
    sim = cfg.simulator
    lines.append(
        f"  {'simulator':<9} {sim.host}:{sim.port}" if sim.enabled else "  simulator disabled"
    )
    if not cfg.upstreams:
        lines.append("upstreams: none (no SMS can be sent)")
    else:
        lines.append("upstreams:")
        for up in cfg.upstreams:
            state = "" if up.enabled else ", disabled"
            tls = ", TLS" if up.tls else ""
            lines.append(
                f"  {up.name:<9} {up.host}:{up.port} {up.bind_mode.value} x{up.binds}, "
                f"window {up.window}{tls}{state}"
            )
    return lines


@config.command("check")
@_config_option
@click.pass_context
def check(ctx: click.Context, config_path: Path | None) -> None:
    """Validate the configuration: print "configuration OK" and a summary, or every problem."""
    cfg = _load(ctx, config_path)
    click.echo("configuration OK")
    for line in summary_lines(cfg):
        click.echo(line)


@config.command("show")
@_config_option
@click.pass_context
def show(ctx: click.Context, config_path: Path | None) -> None:
    """Print the effective configuration (defaults, file, environment) as TOML, secrets masked."""
    cfg = _load(ctx, config_path)
    click.echo(f"# effective teleway configuration (source: {_source(cfg)}); secrets shown as ***")
    click.echo(tomli_w.dumps(cfg.masked_dict()), nl=False)
