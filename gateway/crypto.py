"""Secrets at rest: API-key material (generate, parse, hash) and AES-256-GCM for provider keys.

API keys look like ``lgw_proj_<keyid>_<secret>`` or ``lgw_test_<keyid>_<secret>``:
``keyid`` is 12 hex characters (public, the lookup key), ``secret`` is 43 url-safe
characters from ``secrets.token_urlsafe(32)`` (256 bits). A fast hash is right for a
256-bit random secret (a slow KDF protects low-entropy passwords, not this); the
stored value is SHA-256 over a domain tag and the whole key, compared with
``hmac.compare_digest``.

Provider keys are sealed with AES-256-GCM: a fresh random 12-byte nonce per
encryption, associated data = ``project_id ‖ provider ‖ master-key id`` so a
ciphertext copied to another row (or decrypted under another key id) fails. The
blob is ``b"\\x01" + key_id(8 ascii) + nonce(12) + ciphertext+tag``; the key id names
which master key sealed it, so keys can be rotated: set the new key in
``WATCHLLM_MASTER_KEY`` and the old ones in ``WATCHLLM_MASTER_KEYS_OLD`` (comma
separated) until every row is re-sealed (``MasterKeys.needs_reseal``; no CLI job for it yet).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from typing import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ApiKeyParts", "generate_api_key", "parse_api_key", "hash_api_key", "verify_api_key",
    "MasterKeys", "MasterKeyError", "DecryptError",
]

PROJECT_PREFIX = "lgw_proj_"
TEST_PREFIX = "lgw_test_"
_KEY_RE = re.compile(r"lgw_(proj|test)_([0-9a-f]{12})_([A-Za-z0-9_-]{43,128})")
_HASH_TAG = b"watchllm/api-key/v1\x00"


@dataclass(frozen=True, slots=True)
class ApiKeyParts:
    key_id: str
    is_test: bool

    @property
    def prefix(self) -> str:
        """What may be shown and logged: the type and the public key id, never the secret."""
        return f"{TEST_PREFIX if self.is_test else PROJECT_PREFIX}{self.key_id}"


def generate_api_key(*, is_test: bool = False) -> tuple[str, ApiKeyParts]:
    """A new plaintext key (show it once) and its public parts."""
    parts = ApiKeyParts(secrets.token_hex(6), is_test)
    return f"{parts.prefix}_{secrets.token_urlsafe(32)}", parts


def parse_api_key(key: str) -> ApiKeyParts | None:
    """The public parts of a well-formed key, else None (no lookup for garbage)."""
    m = _KEY_RE.fullmatch(key)
    if m is None:
        return None
    return ApiKeyParts(m.group(2), m.group(1) == "test")


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(_HASH_TAG + key.encode()).digest()


def verify_api_key(key: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_api_key(key), stored_hash)


# provider keys ---------------------------------------------------------------------
class MasterKeyError(RuntimeError):
    """No usable master key: provider keys can be neither stored nor read (fail closed)."""


class DecryptError(ValueError):
    """The blob was not sealed for this row (AAD), was tampered with, or its master key is gone."""


_VERSION = b"\x01"


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"watchllm/master-key-id\x00" + key).hexdigest()[:8]


def _decode_key(text: str, name: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"{name}: not valid base64") from None
    if len(raw) != 32:
        raise MasterKeyError(f"{name}: must decode to 32 bytes (AES-256), got {len(raw)}")
    return raw


def _aad(project_id: str, provider: str, key_id: str) -> bytes:
    return b"\x00".join((b"watchllm/provider-key/v1", project_id.encode(), provider.encode(), key_id.encode()))


class MasterKeys:
    """The active master key (seals) plus older ones (unseal only), keyed by a short id."""

    def __init__(self, active: bytes, old: list[bytes] | None = None) -> None:
        if len(active) != 32:
            raise MasterKeyError("master key must be 32 bytes")
        self.active_id = _key_id(active)
        self._keys: dict[str, AESGCM] = {_key_id(k): AESGCM(k) for k in (old or []) if len(k) == 32}
        self._keys[self.active_id] = AESGCM(active)

    @classmethod
    def generate_key(cls) -> str:
        """A new base64 master key, for ``WATCHLLM_MASTER_KEY``."""
        return base64.b64encode(secrets.token_bytes(32)).decode()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "MasterKeys | None":
        env = os.environ if env is None else env
        text = env.get("WATCHLLM_MASTER_KEY", "")
        if not text:
            return None
        old = [_decode_key(t, "WATCHLLM_MASTER_KEYS_OLD") for t in env.get("WATCHLLM_MASTER_KEYS_OLD", "").split(",") if t.strip()]
        return cls(_decode_key(text, "WATCHLLM_MASTER_KEY"), old)

    def seal(self, plaintext: str, *, project_id: str, provider: str) -> tuple[bytes, str]:
        nonce = secrets.token_bytes(12)
        kid = self.active_id
        ct = self._keys[kid].encrypt(nonce, plaintext.encode(), _aad(project_id, provider, kid))
        return _VERSION + kid.encode() + nonce + ct, kid

    def unseal(self, blob: bytes, *, project_id: str, provider: str) -> str:
        if len(blob) < 1 + 8 + 12 + 16 or blob[:1] != _VERSION:
            raise DecryptError("unknown provider-key format")
        kid = blob[1:9].decode("ascii", "replace")
        aead = self._keys.get(kid)
        if aead is None:
            raise DecryptError(f"sealed with master key {kid!r}, which is not configured")
        try:
            return aead.decrypt(blob[9:21], blob[21:], _aad(project_id, provider, kid)).decode()
        except InvalidTag:
            raise DecryptError("provider key does not belong to this project/provider or was modified") from None

    def needs_reseal(self, blob: bytes) -> bool:
        return blob[1:9].decode("ascii", "replace") != self.active_id
