"""The embedded identity provider of `restoration dev`: a local RSA key, its JWKS, and dev tokens.

The key is generated on first run and kept under `.data/`, so tokens survive restarts. The dev
server serves the JWKS itself, and the API verifies dev tokens exactly like Auth0's (RS256, `kid`,
audience and issuer checked): the same code path as production.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

DEV_AUDIENCE = "restoration-dev"
DEV_SUBJECT = "dev-user"
JWKS_PATH = "/.well-known/jwks.json"
# Long enough for a day of work without re-issuing.
DEV_TOKEN_TTL_SECONDS = 24 * 3600


def _b64(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class DevIdentity:
    def __init__(self, key_file: Path, *, issuer: str) -> None:
        self.issuer = issuer
        self.audience = DEV_AUDIENCE
        if key_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_file.parent.mkdir(parents=True, exist_ok=True)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{key_file} is not an RSA private key")
        self._private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        numbers = key.public_key().public_numbers()
        self.kid = hashlib.sha256(f"{numbers.n}:{numbers.e}".encode()).hexdigest()[:16]
        self.jwks: dict[str, Any] = {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.kid,
                    "n": _b64(numbers.n),
                    "e": _b64(numbers.e),
                }
            ]
        }

    def token(self, subject: str = DEV_SUBJECT, *, ttl_seconds: int = DEV_TOKEN_TTL_SECONDS) -> str:
        now = int(time.time())
        claims = {"sub": subject, "aud": self.audience, "iss": self.issuer, "iat": now, "exp": now + ttl_seconds}
        return jwt.encode(claims, self._private_pem, algorithm="RS256", headers={"kid": self.kid})
