"""Bearer-token authentication: Auth0-issued RS256 JWTs checked against a cached JWKS.

The API calls `bearer_token(header)` and then `await JwtVerifier.verify(token)` to get the
caller's `Principal`; `JwksCache` fetches the issuer's signing keys with an injected
`httpx.AsyncClient`. Settings are never read here: the composition root passes plain values.

Exceptions (mapped to HTTP and GraphQL codes in one place, outside this module):

    Exception
    ├── AuthError         missing, malformed, expired or otherwise unacceptable token → 401.
    │                     Its message is a short reason safe to show a client; never the token.
    └── AuthUnavailable   the JWKS cannot be fetched and no usable key is cached → 503.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx
from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import ExpiredSignatureError, JOSEError, JWKError, JWTClaimsError, JWTError

__all__ = ["AuthError", "AuthUnavailable", "JwksCache", "JwtVerifier", "Principal", "bearer_token"]

logger = logging.getLogger(__name__)

ALGORITHM = "RS256"
# Auth0 access tokens are ~1 KiB; anything far larger is abuse, refused before any parsing.
MAX_TOKEN_BYTES = 8 * 1024
# RFC 6750 b64token syntax; rejects control characters and spaces before jose sees them.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# python-jose reports every claim failure as the same exception type; its message tells which.
_CLAIM_REASONS = (
    ("audience", "invalid audience"),
    ("issuer", "invalid issuer"),
    ("not yet valid", "token not yet valid"),
)
_MISSING_CLAIM = re.compile(r'missing required key "(\w+)"')


class AuthError(Exception):
    """The request's credentials are missing or unacceptable (HTTP 401)."""


class AuthUnavailable(Exception):
    """The signing keys cannot be fetched and none usable is cached (HTTP 503)."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: `user_id` is the token's `sub`; `claims` the verified payload."""

    user_id: str
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def bearer_token(authorization: str | None) -> str:
    """Return the token of an `Authorization: Bearer <token>` header value, or raise AuthError."""
    parts = (authorization or "").split()
    if not parts or parts[0].lower() != "bearer":
        raise AuthError("missing bearer token")
    if len(parts) != 2 or not _B64TOKEN.fullmatch(parts[1]):
        raise AuthError("malformed Authorization header")
    return parts[1]


class JwksCache:
    """The issuer's signing keys by `kid`, fetched lazily and refreshed with rate limits.

    The first use fetches the JWKS (failure → AuthUnavailable). Keys older than `max_age` are
    refreshed, and an unknown `kid` triggers a refetch, but at most one fetch is attempted per
    `min_refetch_interval`, so a flood of forged kids cannot hammer the issuer. Concurrent
    callers share one fetch. When a refresh fails the previous keys stay in service.
    """

    def __init__(
        self,
        *,
        jwks_url: str,
        http: httpx.AsyncClient,
        min_refetch_interval: float = 60.0,
        max_age: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = jwks_url
        self._http = http
        self._min_interval = min_refetch_interval
        self._max_age = max_age
        self._clock = clock
        self._lock = asyncio.Lock()
        # kid → usable key, or the reason the published key cannot verify our tokens.
        self._keys: dict[str, Key | str] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._attempts = 0  # lets waiters on the lock see that a fetch happened meanwhile
        self._last_failed = False

    async def get(self, kid: str) -> Key:
        """Return the RS256 key published under `kid`, fetching the JWKS when needed."""
        seen = self._attempts
        if self._fetched_at is None:
            await self._fetch(seen=seen, rate_limited=False)
            if self._fetched_at is None:
                raise AuthUnavailable("signing keys unavailable")
        elif self._clock() - self._fetched_at >= self._max_age:
            await self._fetch(seen=seen, rate_limited=True)
        if kid not in self._keys:
            await self._fetch(seen=seen, rate_limited=True)
        entry = self._keys.get(kid)
        if entry is None:
            if self._last_failed:
                raise AuthUnavailable("signing keys unavailable")
            raise AuthError("unknown signing key")
        if isinstance(entry, str):
            raise AuthError(entry)
        return entry

    async def _fetch(self, *, seen: int, rate_limited: bool) -> None:
        async with self._lock:
            if self._attempts != seen:
                return  # another caller fetched while we waited; use its result
            now = self._clock()
            if rate_limited and self._attempted_at is not None and now - self._attempted_at < self._min_interval:
                return
            self._attempted_at = now
            try:
                response = await self._http.get(self._url)
                response.raise_for_status()
                keys = _parse_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                self._last_failed = True
                logger.warning("auth.jwks.fetch_failed", extra={"url": self._url, "error": repr(exc)})
            else:
                self._keys, self._fetched_at, self._last_failed = keys, now, False
                logger.info("auth.jwks.fetched", extra={"url": self._url, "kids": sorted(keys)})
            finally:
                # Counted only once the outcome is known: callers that arrived during the fetch
                # read the old count and, once they get the lock, reuse this outcome.
                self._attempts += 1


def _parse_jwks(document: Any) -> dict[str, Key | str]:
    """Map each published kid to a constructed RS256 key or to why it is unusable."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("JWKS document has no 'keys' list")
    keys: dict[str, Key | str] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue  # a key we cannot address can never be selected
        if entry.get("kty") != "RSA":
            keys[entry["kid"]] = "wrong signing key type"
        elif entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM:
            keys[entry["kid"]] = "signing key not meant for RS256 signatures"
        else:
            try:
                keys[entry["kid"]] = jwk.construct(entry, ALGORITHM)
            except (JWKError, ValueError, TypeError):
                keys[entry["kid"]] = "invalid signing key"
    return keys


class JwtVerifier:
    """Verifies RS256 access tokens for one audience and issuer."""

    def __init__(self, *, jwks: JwksCache, audience: str, issuer: str, leeway: int = 0) -> None:
        self._jwks = jwks
        self._audience = audience
        self._issuer = issuer
        self._options = {
            "verify_signature": True,
            "require_exp": True,
            "require_aud": True,
            "require_iss": True,
            "require_sub": True,
            "leeway": leeway,
        }

    async def verify(self, token: str) -> Principal:
        """Return the token's Principal; raise AuthError (401) or AuthUnavailable (503)."""
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise AuthError("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError as exc:
            raise AuthError("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise AuthError("unsupported token algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token has no key id")
        key = await self._jwks.get(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options=self._options,
            )
        except ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except JWTClaimsError as exc:
            raise AuthError(_claims_reason(str(exc))) from exc
        except JWTError as exc:
            raise AuthError(_jwt_reason(str(exc))) from exc
        except (JOSEError, TypeError, ValueError, OverflowError) as exc:
            # jose calls int() on exp/nbf/iat without catching TypeError/OverflowError.
            raise AuthError("invalid token claims") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthError("token has no subject")
        return Principal(user_id=sub, claims=MappingProxyType(claims))


def _claims_reason(message: str) -> str:
    lowered = message.lower()
    return next((reason for needle, reason in _CLAIM_REASONS if needle in lowered), "invalid token claims")


def _jwt_reason(message: str) -> str:
    if missing := _MISSING_CLAIM.search(message):
        return f"token has no {missing.group(1)} claim"
    if "signature verification failed" in message.lower():
        return "invalid signature"
    return "invalid token"
