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
import contextlib
import json
import logging
import math
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
# One deadline for a whole JWKS fetch (connect, headers, body): logins wait on the first fetch
# and on unknown kids, so a slow issuer must cost them seconds, not minutes.
JWKS_FETCH_DEADLINE = 5.0
# Auth0's JWKS holds two or three keys (~3 KiB); a document far larger is not a key set.
MAX_JWKS_BYTES = 256 * 1024
# Claims every access token must carry; their values are checked by JwtVerifier itself.
REQUIRED_CLAIMS = ("exp", "aud", "iss", "sub")
# An `iat` this far ahead of our clock is the issuer's clock running ahead, not a forged token:
# refusing it would lock users out whenever the clocks drift by a second.
ISSUED_AT_SKEW = 60
# jose verifies the signature (and the algorithm) only; see JwtVerifier.
_SIGNATURE_ONLY = {
    "verify_signature": True,
    "verify_aud": False,
    "verify_iat": False,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "verify_at_hash": False,
}


class AuthError(Exception):
    """The request's credentials are missing or unacceptable (HTTP 401)."""


class AuthUnavailable(Exception):
    """The signing keys cannot be fetched and none usable is cached (HTTP 503)."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: `user_id` is the token's `sub`; `claims` the verified payload."""

    user_id: str
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def expires_at(self) -> float:
        """The token's `exp` (seconds since the epoch); a principal without one never expires."""
        exp = self.claims.get("exp")
        return _numeric_date(exp) if exp is not None else math.inf


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
    refreshed in the background while the cached ones keep serving, so a slow issuer never holds
    a token whose kid we know. An unknown `kid` waits for a refetch, but at most one fetch is
    attempted per `min_refetch_interval`, so a flood of forged kids cannot hammer the issuer.
    Concurrent callers share one fetch; when a refresh fails the previous keys stay in service.
    A fetch has one overall deadline (`fetch_deadline`: connect, headers and body together; a
    per-read timeout alone lets an endpoint trickling a byte at a time hold logins for minutes)
    and reads at most `max_document_bytes`.
    """

    def __init__(
        self,
        *,
        jwks_url: str,
        http: httpx.AsyncClient,
        min_refetch_interval: float = 60.0,
        max_age: float = 600.0,
        fetch_deadline: float = JWKS_FETCH_DEADLINE,
        max_document_bytes: int = MAX_JWKS_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = jwks_url
        self._http = http
        self._min_interval = min_refetch_interval
        self._max_age = max_age
        self._deadline = fetch_deadline
        self._max_bytes = max_document_bytes
        self._clock = clock
        self._lock = asyncio.Lock()
        # kid → usable key, or the reason the published key cannot verify our tokens.
        self._keys: dict[str, Key | str] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._attempts = 0  # lets waiters on the lock see that a fetch happened meanwhile
        self._last_failed = False
        self._refresh: asyncio.Task[None] | None = None  # the background refresh in flight

    async def get(self, kid: str) -> Key:
        """Return the RS256 key published under `kid`, fetching the JWKS when needed."""
        seen = self._attempts
        if self._fetched_at is None:
            await self._fetch(seen=seen, rate_limited=False)
            if self._fetched_at is None:
                raise AuthUnavailable("signing keys unavailable")
        elif kid in self._keys:
            if self._clock() - self._fetched_at >= self._max_age:
                self._refresh_in_background()
        else:
            await self._fetch(seen=seen, rate_limited=True)
        entry = self._keys.get(kid)
        if entry is None:
            if self._last_failed:
                raise AuthUnavailable("signing keys unavailable")
            raise AuthError("unknown signing key")
        if isinstance(entry, str):
            raise AuthError(entry)
        return entry

    async def wait_idle(self) -> None:
        """Return once no background refresh is in flight (its outcome is then in the cache)."""
        while self._refresh is not None and not self._refresh.done():
            await asyncio.shield(self._refresh)

    async def aclose(self) -> None:
        """Cancel a background refresh in flight (before the HTTP client is closed)."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh

    def _refresh_in_background(self) -> None:
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._fetch(seen=self._attempts, rate_limited=True))

    async def _fetch(self, *, seen: int, rate_limited: bool) -> None:
        async with self._lock:
            if self._attempts != seen:
                return  # another caller fetched while we waited; use its result
            now = self._clock()
            if rate_limited and self._attempted_at is not None and now - self._attempted_at < self._min_interval:
                return
            self._attempted_at = now
            try:
                async with asyncio.timeout(self._deadline):
                    keys = _parse_jwks(await self._download())
            except (httpx.HTTPError, ValueError, TimeoutError) as exc:
                self._last_failed = True
                logger.warning("auth.jwks.fetch_failed", extra={"url": self._url, "error": repr(exc)})
            else:
                self._keys, self._fetched_at, self._last_failed = keys, now, False
                logger.info("auth.jwks.fetched", extra={"url": self._url, "kids": sorted(keys)})
            finally:
                # Counted only once the outcome is known: callers that arrived during the fetch
                # read the old count and, once they get the lock, reuse this outcome.
                self._attempts += 1

    async def _download(self) -> Any:
        """The JWKS document, read as a stream and abandoned past `max_document_bytes`."""
        async with self._http.stream("GET", self._url) as response:
            response.raise_for_status()
            announced = response.headers.get("content-length", "")
            if announced.isascii() and announced.isdigit() and int(announced) > self._max_bytes:
                raise ValueError(f"JWKS document of {announced} bytes exceeds {self._max_bytes}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max_bytes:
                    raise ValueError(f"JWKS document exceeds {self._max_bytes} bytes")
        try:
            return json.loads(body)
        except RecursionError:
            raise ValueError("JWKS document nested too deeply") from None


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
    """Verifies RS256 access tokens for one audience and issuer.

    jose checks the signature and the algorithm (RS256 only); every claim we rely on is checked
    here, with its type, so each refusal has its own reason and a malformed claim is a 401.
    jose's own claim checks stay off: they report every claim failure with one exception class
    and let a TypeError escape from a non-numeric `exp`.
    """

    def __init__(
        self,
        *,
        jwks: JwksCache,
        audience: str,
        issuer: str,
        leeway: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jwks = jwks
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._clock = clock

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
        claims = _signed_claims(token, key)
        self._check_claims(claims)
        return Principal(user_id=claims["sub"], claims=MappingProxyType(claims))

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        for name in REQUIRED_CLAIMS:
            if name not in claims:
                raise AuthError(f"token has no {name} claim")
        now = self._clock()
        exp = _numeric_date(claims["exp"])
        if exp <= now - self._leeway:
            raise AuthError("token expired")
        if "nbf" in claims and _numeric_date(claims["nbf"]) > now + self._leeway:
            raise AuthError("token not yet valid")
        if "iat" in claims and _numeric_date(claims["iat"]) > now + self._leeway + ISSUED_AT_SKEW:
            raise AuthError("token not yet valid")
        if self._audience not in _audiences(claims["aud"]):
            raise AuthError("invalid audience")
        if claims["iss"] != self._issuer:
            raise AuthError("invalid issuer")
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise AuthError("token has no subject")


def _signed_claims(token: str, key: Key) -> dict[str, Any]:
    """The token's claims once jose has verified its RS256 signature with `key`."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options=_SIGNATURE_ONLY)
    except ExpiredSignatureError as exc:  # not raised with the claim checks off; mapped all the same
        raise AuthError("token expired") from exc
    except JWTClaimsError as exc:
        raise AuthError("invalid token claims") from exc
    except JWTError as exc:
        # The header parsed and named RS256: either the signature does not match, or the signed
        # payload is not a JSON object (which parsing it without verification tells apart).
        try:
            jwt.get_unverified_claims(token)
        except JWTError:
            raise AuthError("invalid token") from exc
        raise AuthError("invalid signature") from exc
    except JOSEError as exc:
        raise AuthError("invalid token") from exc
    if not isinstance(claims, dict):
        raise AuthError("invalid token")
    return claims


def _numeric_date(value: object) -> float:
    """A NumericDate claim (RFC 7519 §2): a finite JSON number; anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AuthError("invalid token claims")
    return float(value)


def _audiences(value: object) -> tuple[str, ...]:
    """The `aud` claim: one string or a list of strings (RFC 7519 §4.1.3)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise AuthError("invalid token claims")
