"""Salted password hashes for dashboard logins: scrypt, so a leaked config file does not leak passwords.

Encoded as ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>``: the parameters travel
with the hash, so they can be raised later without invalidating existing users.
"""

from __future__ import annotations

import hashlib
import hmac
import os

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
