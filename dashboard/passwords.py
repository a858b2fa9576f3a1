"""Salted password hashes for dashboard logins (scrypt, so a leaked config file does not leak passwords) and signed sessions.

Encoded as ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>``: the parameters travel
with the hash, so they can be raised later without invalidating existing users.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~50 ms and 16 MiB per check: slow to brute-force, quick to log in
SALT_BYTES, HASH_BYTES = 16, 32


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=HASH_BYTES)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The encoded hash to put in ``dashboard.auth.users.<name>.password_hash``."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def _decode(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    scheme, n, r, p, salt, digest = encoded.split("$")
    if scheme != "scrypt":
        raise ValueError(scheme)
    return int(n), int(r), int(p), bytes.fromhex(salt), bytes.fromhex(digest)


def check_encoded(encoded: str) -> str | None:
    """Why ``encoded`` is not a usable hash (a plain password pasted by mistake, say), or None if it is."""
    try:
        n, r, p, salt, digest = _decode(encoded)
    except ValueError:
        return "not a password hash: expected scrypt$n$r$p$salt$hash from `python -m dashboard.auth hash`"
    if n < 2**14 or n & (n - 1) or r < 1 or p < 1 or len(salt) < 8 or len(digest) != HASH_BYTES:
        return "weak or malformed scrypt parameters: create the hash again with `python -m dashboard.auth hash`"
    return None


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time comparison of ``password`` against an encoded hash."""
    n, r, p, salt, digest = _decode(encoded)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)


# -- signed sessions -----------------------------------------------------------------------------------------------
#
# A login is kept in the browser as a signed token ``v1.<payload>.<mac>``: the payload (base64url JSON) names the
# user, their role, when the session ends and a random id; the mac is an HMAC-SHA256 over the payload *and* the
# user's password hash, so changing a password ends that user's sessions. The key lives only in memory: a new random
# one per server process, or MASKWATCH_SESSION_KEY for replicas behind one address (never written anywhere).

SESSION_KEY_ENV = "MASKWATCH_SESSION_KEY"
MIN_SESSION_KEY_CHARS = 32
_PROCESS_KEY = os.urandom(32)
_TOKEN_PREFIX = "v1"


def session_key_problem(env: Mapping[str, str]) -> str | None:
    """Why MASKWATCH_SESSION_KEY cannot sign sessions (never quoting it), or None."""
    key = env.get(SESSION_KEY_ENV)
    if key is not None and len(key) < MIN_SESSION_KEY_CHARS:
        return f"{SESSION_KEY_ENV} is too short: give at least {MIN_SESSION_KEY_CHARS} random characters"
    return None


def session_key(env: Mapping[str, str] | None = None) -> bytes:
    """The key that signs sessions: MASKWATCH_SESSION_KEY if set (and long enough), else this process's random key."""
    env = os.environ if env is None else env
    problem = session_key_problem(env)
    if problem:
        raise ValueError(problem)
    key = env.get(SESSION_KEY_ENV)
    return hashlib.sha256(b"maskwatch-session\0" + key.encode()).digest() if key else _PROCESS_KEY


@dataclass(frozen=True)
class SessionClaims:
    user: str
    role: str
    expires: float  # epoch seconds
    nonce: str  # tells sessions apart, so one can be revoked


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str, password_hash: str) -> str:
    message = payload.encode() + b"\0" + hashlib.sha256(password_hash.encode()).digest()
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def sign_session(key: bytes, user: str, role: str, password_hash: str, hours: float, now: float | None = None) -> str:
    """A token for ``user`` valid for ``hours``; put it in a cookie, never in a URL."""
    now = time.time() if now is None else now
    claims = {"u": user, "r": role, "e": round(now + hours * 3600), "n": _b64(os.urandom(12))}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{_TOKEN_PREFIX}.{payload}.{_mac(key, payload, password_hash)}"


def read_session(token: str, key: bytes, password_hashes: Mapping[str, str],
                 now: float | None = None) -> SessionClaims | None:  # fmt: skip
    """The claims of a token this key signed for a user who still has that password, unless expired; else None."""
    try:
        prefix, payload, mac = token.split(".")
        claims = json.loads(_unb64(payload))
        user, role, expires, nonce = str(claims["u"]), str(claims["r"]), float(claims["e"]), str(claims["n"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    password_hash = password_hashes.get(user)
    if prefix != _TOKEN_PREFIX or password_hash is None:
        return None
    if not hmac.compare_digest(mac, _mac(key, payload, password_hash)):
        return None
    if expires <= (time.time() if now is None else now):
        return None
    return SessionClaims(user, role, expires, nonce)
