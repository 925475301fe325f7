"""Agent keys that prove they were issued here, so they outlive a total loss of Redis data.

A key is ``fpk_<key id>~<nonce>.<mac>`` (``fpk_<key id>~<nonce>.<agent id>.<mac>`` when it is issued for one agent,
as a key roll does), where ``nonce`` is 128 random bits and ``mac`` an HMAC-SHA256 under the API's agent-key secret
(FLAREPORT_AGENT_KEY_SECRET, by default derived from MASTER_API_KEY: configuration, not data) over the key id, the
nonce and the agent id. The store still keeps every key's record in Redis and checks that first, so revocation
works as before; the proof matters only when the record is gone, and only after Redis really lost its data
(``recovery``). Then the key is recognised as ours and its record restored, bound to the same agent:

* an unbound key's agent id is derived from its key id under the same secret (``agent_id_for``), so binding it
  at the first register and restoring it after a loss both give the agent the id it had;
* a key issued for an agent names that agent inside the MAC, so nobody can move it to another agent.

Why the nonce: without it a key is a function of its key id, so whoever holds the secret could compute every
issued key from its id (ids are no secret: the keys page, logs and FLAREPORT_REVOKED_AGENT_KEYS show them). With it,
the secret mints only keys that have no record, which are refused while Redis holds its data.

The MAC is 256 bits, as unguessable as the random keys it replaces. Keys of the earlier format without a nonce
(``fpk_<key id>[.<agent id>].<mac>``) still verify; a holder of the secret can recompute them from their ids, so roll
them. Keys from before proofs existed carry none: they keep working while Redis has their records and cannot be
restored after a loss.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "fpk_"
_KEY_ID_HEX = 16
_MAC_CHARS = 43  # 32 bytes in unpadded base64url
_KEY_LABEL = b"flareport agent key\x00"
_NONCE_LABEL = b"flareport agent key with nonce\x00"
_NONCE_MARK = "~"  # never part of an agent id, a key id or base64url
_NONCE_CHARS = 22  # 16 bytes in unpadded base64url
_AGENT_LABEL = b"flareport agent id\x00"
_HEX = re.compile(r"^[0-9a-f]{16}\Z")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22}\Z")
_AGENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


def named_key_id(presented: str) -> str | None:
    """The key id a presented key names in its ``fpk_<16 hex>`` head (``key_<16 hex>``), unchecked; else None."""
    hex_id = presented[len(KEY_PREFIX) : len(KEY_PREFIX) + _KEY_ID_HEX]
    return "key_" + hex_id if presented.startswith(KEY_PREFIX) and _HEX.match(hex_id) else None


@dataclass(frozen=True, slots=True)
class KeyProof:
    key_id: str
    agent_id: str  # the agent the key is (or will be, at its first register) bound to


class KeyMinter:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def _mac(self, hex_id: str, agent_id: str, nonce: str | None = None) -> str:
        if nonce is None:  # the earlier format, still verified
            message = _KEY_LABEL + f"{hex_id}\x00{agent_id}".encode()
        else:
            message = _NONCE_LABEL + f"{hex_id}\x00{nonce}\x00{agent_id}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def agent_id_for(self, key_id: str) -> str:
        """The agent id an unbound key gets at its first register (stable, so a restored key gets it again)."""
        digest = hmac.new(self._secret, _AGENT_LABEL + key_id.encode(), hashlib.sha256).hexdigest()
        return "agt_" + digest[:20]

    def mint(self, agent_id: str | None = None) -> tuple[str, str]:
        """A new key and its key id; ``agent_id`` issues it for that agent (the agent id is part of the key)."""
        hex_id = secrets.token_hex(_KEY_ID_HEX // 2)
        nonce = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        middle = f".{agent_id}" if agent_id is not None else ""
        mac = self._mac(hex_id, agent_id or "", nonce)
        return f"{KEY_PREFIX}{hex_id}{_NONCE_MARK}{nonce}{middle}.{mac}", "key_" + hex_id

    def verify(self, presented: str) -> KeyProof | None:
        """The key id and agent of a key minted under this secret, or None (another format, or forged)."""
        head, dot, mac = presented.rpartition(".")
        if not dot or len(mac) != _MAC_CHARS or not head.startswith(KEY_PREFIX):
            return None
        hex_id, rest = head[len(KEY_PREFIX) : len(KEY_PREFIX) + _KEY_ID_HEX], head[len(KEY_PREFIX) + _KEY_ID_HEX :]
        nonce = None
        if rest.startswith(_NONCE_MARK):
            nonce, rest = rest[1 : 1 + _NONCE_CHARS], rest[1 + _NONCE_CHARS :]
            if not _NONCE.match(nonce):
                return None
        if not _HEX.match(hex_id) or (rest and (not rest.startswith(".") or not _AGENT.match(rest[1:]))):
            return None
        bound = rest[1:]
        if not hmac.compare_digest(self._mac(hex_id, bound, nonce).encode(), mac.encode()):
            return None
        key_id = "key_" + hex_id
        return KeyProof(key_id=key_id, agent_id=bound or self.agent_id_for(key_id))
