"""Admission: only machines holding the swarm key talk to the run's DHT and join its averaging.

Two locks, both keyed by the swarm key (see `keys.py`):

- the DHT: every request and response carries an access token whose tag only a key holder can make
  (hivemind's `TokenAuthorizerBase` protocol, with the requests signed by the peer's RSA key so a
  token cannot be lifted onto someone else's request). A peer without the key cannot bootstrap, read
  the run manifest, store a record or announce itself for averaging;
- the averagers: their RPCs (join a group, exchange tensor parts, download the state) are served only
  to peers whose libp2p id carries a membership proof, HMAC(key, run id, peer id), published in that
  same DHT. libp2p authenticates the remote peer id of every stream, so a proof cannot be reused by
  another peer; a peer that knows a member's address and the run id still cannot join a group.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from hivemind.proto.auth_pb2 import AccessToken
from hivemind.utils.auth import TokenAuthorizerBase

from gastown_ft.swarm.keys import SwarmKey

TOKEN_PURPOSE = "gastown-ft dht access token"
MEMBER_PURPOSE = "gastown-ft run member"
TOKEN_LIFETIME = timedelta(hours=6)
TOKEN_REFRESH_BEFORE = timedelta(minutes=30)


class SwarmKeyAuthorizer(TokenAuthorizerBase):
    """Access tokens tagged with the swarm key instead of signed by a central server."""

    def __init__(self, key: SwarmKey, local_private_key=None) -> None:
        super().__init__(local_private_key)
        self._key = key

    def _token_tag(self, token: AccessToken) -> bytes:
        return self._key.tag(TOKEN_PURPOSE, token.username, token.public_key, token.expiration_time)

    async def get_token(self) -> AccessToken:
        token = AccessToken(
            username=self._key.key_id,
            public_key=self.local_public_key.to_bytes(),
            expiration_time=(datetime.now(UTC) + TOKEN_LIFETIME).isoformat(),
        )
        token.signature = self._token_tag(token)
        return token

    def is_token_valid(self, access_token: AccessToken) -> bool:
        if not self._key.verify(
            access_token.signature,
            TOKEN_PURPOSE,
            access_token.username,
            access_token.public_key,
            access_token.expiration_time,
        ):
            return False
        try:
            expires = datetime.fromisoformat(access_token.expiration_time)
        except ValueError:
            return False
        return expires > datetime.now(UTC)

    def does_token_need_refreshing(self, access_token: AccessToken) -> bool:
        expires = datetime.fromisoformat(access_token.expiration_time)
        return expires - TOKEN_REFRESH_BEFORE < datetime.now(UTC)


def members_key(run_id: str) -> str:
    return f"{run_id}_members"


def membership_proof(key: SwarmKey, run_id: str, peer_id: str) -> bytes:
    return key.tag(MEMBER_PURPOSE, run_id, peer_id)


class MemberGate:
    """Decides whether a remote peer id may use this peer's averager RPCs: it must have a valid
    membership proof in the DHT. Valid answers are cached; refusals are asked again after a moment
    (a new member may publish its proof just after its first request)."""

    RECHECK_REFUSED_S = 2.0

    def __init__(self, dht: Any, key: SwarmKey, run_id: str) -> None:
        self.dht, self.key, self.run_id = dht, key, run_id
        self._admitted: set[str] = set()
        self._refused: dict[str, float] = {}

    async def admits(self, peer_id: str) -> bool:
        if peer_id in self._admitted:
            return True
        if time.monotonic() - self._refused.get(peer_id, -1e9) < self.RECHECK_REFUSED_S:
            return False
        found = await self.dht.get(members_key(self.run_id), latest=True, return_future=True)
        proofs = found.value if found is not None and isinstance(found.value, dict) else {}
        entry = proofs.get(peer_id)
        proof = getattr(entry, "value", None)
        if isinstance(proof, bytes) and self.key.verify(proof, MEMBER_PURPOSE, self.run_id, peer_id):
            self._admitted.add(peer_id)
            return True
        self._refused[peer_id] = time.monotonic()
        return False
