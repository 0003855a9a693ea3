"""``flask allow ban``, ``unban`` and ``bans``: they act on the configured store, so an operator's
ban reaches every worker and instance (within ``ALLOW_BAN_SYNC_INTERVAL`` + 1 s)."""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING

import click
from flask import current_app

from .. import config as keys
from .ban import Ban, moment, network_of

if TYPE_CHECKING:
    from flask.cli import AppGroup

    from .service import BanService

EXIT_OK, EXIT_NOT_BANNED, EXIT_USAGE = 0, 1, 2
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_ttl(text: str) -> float:
    """``90``, ``30s``, ``10m``, ``1h``, ``2d``, ``1w`` as seconds; ``0`` lasts until unbanned."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration (90, 30s, 10m, 1h, 2d, 1w; 0 = until unbanned)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _service() -> BanService:
    state = current_app.extensions.get("flask_allow")
    service = state.bans if state is not None else None
    if service is None:
        click.echo(f"Error: bans are not in use (set {keys.ALLOW_BANS} = True or {keys.ALLOW_AUTOBAN})", err=True)
        raise SystemExit(EXIT_USAGE)
    if service.down:
        click.echo(f"Error: the ban store {service.store.uri} cannot be reached", err=True)
        raise SystemExit(EXIT_USAGE)
    return service


def _network(text: str) -> object:
    try:
        return network_of(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'ADDRESS|NETWORK'") from None


def _line(ban: Ban) -> str:
    until = "until unbanned" if ban.until is None else f"until {ban.to_json()['until']}"
    return f"{ban.network}  {until}  strikes {ban.strikes}  {ban.source}  {ban.reason}".rstrip()


def add_commands(group: AppGroup) -> None:
    """Add the ban commands to the ``flask allow`` group."""

    @group.command("ban")
    @click.argument("targets", nargs=-1, required=True, metavar="ADDRESS|NETWORK...")
    @click.option("--ttl", default=None, help="How long: 90, 30s, 10m, 1h, 2d, 1w; 0 = until unbanned (ALLOW_BAN_TTL).")
    @click.option("--reason", default="", help="Why, shown in denials and the access log.")
    def ban_command(targets: tuple[str, ...], ttl: str | None, reason: str) -> None:
        """Ban addresses or networks in the configured store (every worker and instance): all of
        them or, when one is not an address or is exempt, none."""
        networks = [_network(target) for target in targets]
        service = _service()
        seconds = service.settings.ttl if ttl is None else parse_ttl(ttl)
        try:
            made = service.ban_many(networks, seconds, reason, source="cli")
        except ValueError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise SystemExit(EXIT_USAGE) from None
        service.sync()
        unwritten = {ban.network for ban in service.unwritten()}
        for ban in made:
            if ban.network not in unwritten:
                click.echo(f"banned {_line(ban)}")
        if unwritten:
            names = sorted(map(str, unwritten))
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            click.echo(
                f"Error: the ban store {service.store.uri} cannot be reached; not banned: {len(names)}"
                f" of {len(made)} ({shown})",
                err=True,
            )
            raise SystemExit(EXIT_USAGE)

    @group.command("unban")
    @click.argument("target", metavar="ADDRESS|NETWORK")
    def unban_command(target: str) -> None:
        """Lift the ban of exactly this address or network; exit 1 if it was not banned."""
        network = _network(target)
        service = _service()
        found = service.store.remove(network, time.time())  # type: ignore[arg-type]
        click.echo(f"unbanned {network}" if found else f"{network} was not banned")
        raise SystemExit(EXIT_OK if found else EXIT_NOT_BANNED)

    @group.command("bans")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per ban.")
    def bans_command(as_json: bool) -> None:
        """List the bans in force in the configured store."""
        service = _service()
        bans = sorted(service.store.active(time.time()), key=lambda b: (b.network.version, b.network))
        for ban in bans:
            click.echo(json.dumps(ban.to_json(), sort_keys=True) if as_json else _line(ban))
        if not bans and not as_json:
            click.echo(f"no bans in force ({service.store.uri}, {moment(time.time()).isoformat(timespec='seconds')})")
