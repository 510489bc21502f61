"""The peer's DHT: where it listens, whom it dials first, and the admission check on every request."""

from __future__ import annotations

from pathlib import Path

from gastown_ft.config import SwarmConfig
from gastown_ft.errors import GastownFTError
from gastown_ft.swarm.auth import SwarmKeyAuthorizer
from gastown_ft.swarm.keys import SwarmKey

BOOTSTRAP_TIMEOUT_S = 20.0  # slow links: give the first pings time to come back


def host_maddrs(cfg: SwarmConfig) -> list[str]:
    proto = "ip6" if ":" in cfg.listen_host else "ip4"
    return [f"/{proto}/{cfg.listen_host}/tcp/{cfg.listen_port}"]


def start_dht(cfg: SwarmConfig, key: SwarmKey, initial_peers: list[str], identity_file: Path | None = None):
    """A running hivemind DHT admitted with `key`; a clear error when no initial peer lets us in."""
    import hivemind

    kwargs = {
        "initial_peers": list(initial_peers) or None,
        "start": True,
        "authorizer": SwarmKeyAuthorizer(key),
        "host_maddrs": host_maddrs(cfg),
        "client_mode": cfg.client_mode,
        "bootstrap_timeout": BOOTSTRAP_TIMEOUT_S,
        "wait_timeout": max(3.0, cfg.request_timeout),
    }
    if cfg.announce_maddrs:
        kwargs["announce_maddrs"] = list(cfg.announce_maddrs)
    if identity_file is not None:
        identity_file.parent.mkdir(parents=True, exist_ok=True)
        kwargs["identity_path"] = str(identity_file)
    try:
        return hivemind.DHT(**kwargs)
    except RuntimeError as e:
        if "bootstrap failed" in str(e):
            raise GastownFTError(
                f"no initial peer let this machine in ({', '.join(initial_peers)})",
                hint="check the addresses and the port (firewall), and that this machine has the same swarm "
                "key file as the first one (compare the key ids that `gastown-ft peer keygen --show` prints)",
            ) from None
        raise GastownFTError(f"cannot start the swarm node: {e}") from None
    except ValueError as e:  # a malformed multiaddr
        raise GastownFTError(
            f"bad swarm address: {e}", hint="a multiaddr looks like /ip4/10.0.0.5/tcp/31337/p2p/12D3Koo..."
        ) from None


def visible_maddrs(dht) -> list[str]:
    """The addresses others can join with (wildcard listen addresses expanded by the p2p daemon)."""
    return [str(m) for m in dht.get_visible_maddrs(latest=True)]
