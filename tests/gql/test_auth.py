"""Bearer tokens are RS256 JWTs for our audience and issuer, checked against a cached JWKS."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from jose import jws

from gql.auth import (
    ISSUED_AT_SKEW,
    MAX_JWKS_BYTES,
    AuthError,
    AuthUnavailable,
    JwksCache,
    JwtVerifier,
    Principal,
    bearer_token,
)
from tests.fixtures.jwks import TEST_AUDIENCE, TEST_ISSUER, TEST_KID, JwksServer, TokenFactory, ec_jwk

MIN_REFETCH_INTERVAL = 60.0
MAX_AGE = 600.0


class FakeClock:
    """A monotonic clock that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def jwks(jwks_server: JwksServer, tokens: TokenFactory, http: httpx.AsyncClient, clock: FakeClock) -> JwksCache:
    # Depends on `tokens` so the shared server is reset before this cache first fetches.
    return JwksCache(
        jwks_url=jwks_server.url,
        http=http,
        min_refetch_interval=MIN_REFETCH_INTERVAL,
        max_age=MAX_AGE,
        clock=clock,
    )


@pytest.fixture
def verifier(jwks: JwksCache) -> JwtVerifier:
    return JwtVerifier(jwks=jwks, audience=TEST_AUDIENCE, issuer=TEST_ISSUER)


async def rejection(verifier: JwtVerifier, token: str) -> str:
    """The AuthError message `verify` raises for this token."""
    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)
    return str(caught.value)


# --- the Authorization header ---------------------------------------------------------------


def test_bearer_scheme_is_matched_case_insensitively() -> None:
    assert bearer_token("bEaReR abc.def.ghi") == "abc.def.ghi"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_absent_authorization_header_is_a_missing_bearer_token(header: str | None) -> None:
    with pytest.raises(AuthError, match="missing bearer token"):
        bearer_token(header)


def test_other_authorization_scheme_is_a_missing_bearer_token() -> None:
    with pytest.raises(AuthError, match="missing bearer token"):
        bearer_token("Basic dXNlcjpwYXNzd29yZA==")


@pytest.mark.parametrize("header", ["Bearer", "Bearer a.b.c d.e.f", "Bearer <script>"])
def test_bearer_header_without_exactly_one_token_is_malformed(header: str) -> None:
    with pytest.raises(AuthError, match="malformed Authorization header"):
        bearer_token(header)


# --- accepted tokens ------------------------------------------------------------------------


async def test_valid_token_yields_principal_for_its_subject(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    principal = await verifier.verify(tokens.issue("auth0|abc123"))

    assert principal == Principal(user_id="auth0|abc123")
    assert principal.claims["aud"] == TEST_AUDIENCE


async def test_token_whose_audience_list_includes_ours_is_accepted(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    token = tokens.issue(aud=["https://auth.restoration.test/userinfo", TEST_AUDIENCE])

    assert (await verifier.verify(token)).user_id == "user-1"


async def test_leeway_accepts_a_token_that_expired_within_it(jwks: JwksCache, tokens: TokenFactory) -> None:
    verifier = JwtVerifier(jwks=jwks, audience=TEST_AUDIENCE, issuer=TEST_ISSUER, leeway=60)

    assert (await verifier.verify(tokens.issue(exp_in=-10))).user_id == "user-1"


# --- refused tokens -------------------------------------------------------------------------


async def test_garbage_token_is_malformed(verifier: JwtVerifier) -> None:
    assert await rejection(verifier, "not-a-jwt") == "malformed token"


async def test_unsigned_alg_none_token_is_refused(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    assert await rejection(verifier, tokens.issue(alg="none")) == "unsupported token algorithm"


async def test_hs256_token_signed_with_the_rsa_public_key_is_refused(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer
) -> None:
    token = tokens.issue(alg="HS256", key=jwks_server.default_key.public_pem)

    assert await rejection(verifier, token) == "unsupported token algorithm"


async def test_rs512_token_signed_with_the_published_key_is_refused(
    verifier: JwtVerifier, tokens: TokenFactory
) -> None:
    assert await rejection(verifier, tokens.issue(alg="RS512")) == "unsupported token algorithm"


async def test_token_without_key_id_is_refused(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    assert await rejection(verifier, tokens.issue(kid=None)) == "token has no key id"


async def test_expired_token_is_refused(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    assert await rejection(verifier, tokens.issue(exp_in=-10)) == "token expired"


async def test_token_not_yet_valid_is_refused(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    assert await rejection(verifier, tokens.issue(nbf_in=600)) == "token not yet valid"


async def test_token_for_another_audience_is_refused(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    token = tokens.issue(aud="https://other.test/api")

    assert await rejection(verifier, token) == "invalid audience"


async def test_token_from_another_issuer_is_refused(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    token = tokens.issue(iss="https://evil.test/")

    assert await rejection(verifier, token) == "invalid issuer"


@pytest.mark.parametrize("claim", ["sub", "exp", "aud", "iss"])
async def test_token_missing_a_required_claim_is_refused(
    verifier: JwtVerifier, tokens: TokenFactory, claim: str
) -> None:
    assert await rejection(verifier, tokens.issue(omit=(claim,))) == f"token has no {claim} claim"


async def test_token_with_empty_subject_is_refused(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    assert await rejection(verifier, tokens.issue(sub="")) == "token has no subject"


@pytest.mark.parametrize("exp", [[1], "soon", float("inf")], ids=["list", "text", "infinity"])
async def test_token_with_non_numeric_expiry_is_refused(
    verifier: JwtVerifier, tokens: TokenFactory, exp: object
) -> None:
    # python-jose lets TypeError/OverflowError from int(exp) escape; the verifier must still say 401.
    token = tokens.issue(extra_claims={"exp": exp})

    assert await rejection(verifier, token) == "invalid token claims"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [True, "1700000000", None], ids=["boolean", "numeric-text", "null"])
async def test_token_whose_time_claim_is_not_a_number_is_refused(
    verifier: JwtVerifier, tokens: TokenFactory, claim: str, value: object
) -> None:
    assert await rejection(verifier, tokens.issue(extra_claims={claim: value})) == "invalid token claims"


async def test_token_verified_at_the_instant_it_expires_is_refused(jwks: JwksCache, tokens: TokenFactory) -> None:
    expiry = int(time.time()) + 3600
    verifier = JwtVerifier(jwks=jwks, audience=TEST_AUDIENCE, issuer=TEST_ISSUER, clock=lambda: float(expiry))

    assert await rejection(verifier, tokens.issue(extra_claims={"exp": expiry})) == "token expired"


async def test_token_issued_in_the_future_is_refused(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    token = tokens.issue(extra_claims={"iat": int(time.time()) + ISSUED_AT_SKEW + 600})

    assert await rejection(verifier, token) == "token not yet valid"


async def test_token_issued_by_a_clock_slightly_ahead_of_ours_is_accepted(
    verifier: JwtVerifier, tokens: TokenFactory
) -> None:
    token = tokens.issue(extra_claims={"iat": int(time.time()) + ISSUED_AT_SKEW // 2})

    assert (await verifier.verify(token)).user_id == "user-1"


@pytest.mark.parametrize(
    "aud", [42, [TEST_AUDIENCE, 7], {"aud": TEST_AUDIENCE}], ids=["number", "mixed-list", "object"]
)
async def test_token_whose_audience_is_neither_a_string_nor_a_list_of_strings_is_refused(
    verifier: JwtVerifier, tokens: TokenFactory, aud: object
) -> None:
    assert await rejection(verifier, tokens.issue(extra_claims={"aud": aud})) == "invalid token claims"


@pytest.mark.parametrize("sub", [42, ["user-1"]], ids=["number", "list"])
async def test_token_whose_subject_is_not_a_string_is_refused(
    verifier: JwtVerifier, tokens: TokenFactory, sub: object
) -> None:
    assert await rejection(verifier, tokens.issue(extra_claims={"sub": sub})) == "token has no subject"


async def test_validly_signed_payload_that_is_not_a_json_object_is_refused(
    verifier: JwtVerifier, jwks_server: JwksServer
) -> None:
    token = jws.sign(b"[1, 2, 3]", jwks_server.default_key.private_pem, headers={"kid": TEST_KID}, algorithm="RS256")

    assert await rejection(verifier, token) == "invalid token"


async def test_tampered_payload_is_refused(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    token = tokens.tamper(tokens.issue("user-1"), sub="user-2")

    assert await rejection(verifier, token) == "invalid signature"


async def test_token_signed_by_an_unpublished_key_under_a_known_kid_is_refused(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer
) -> None:
    impostor = jwks_server.add_key("impostor")
    jwks_server.retire_key("impostor")

    assert await rejection(verifier, tokens.issue(key=impostor)) == "invalid signature"


async def test_oversized_token_is_refused_without_fetching_keys(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer
) -> None:
    token = tokens.issue(extra_claims={"padding": "x" * 9_000})

    assert await rejection(verifier, token) == "token too large"
    assert jwks_server.request_count == 0


async def test_auth_error_message_never_echoes_the_token(verifier: JwtVerifier, tokens: TokenFactory) -> None:
    token = tokens.issue(exp_in=-10)
    payload = token.split(".")[1]

    message = await rejection(verifier, token)

    assert payload not in message
    assert token not in message


# --- signing keys ---------------------------------------------------------------------------


async def test_kid_of_an_ec_key_is_refused_as_wrong_key_type(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer
) -> None:
    jwks_server.publish_jwk(ec_jwk("ec-key"))

    assert await rejection(verifier, tokens.issue(kid="ec-key")) == "wrong signing key type"


async def test_kid_of_a_symmetric_key_is_refused_as_wrong_key_type(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer
) -> None:
    secret = base64.urlsafe_b64encode(b"s" * 32).rstrip(b"=").decode()
    jwks_server.publish_jwk({"kty": "oct", "kid": "oct-key", "k": secret})

    assert await rejection(verifier, tokens.issue(kid="oct-key")) == "wrong signing key type"


async def test_concurrent_first_use_fetches_the_jwks_once(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer
) -> None:
    token = tokens.issue()

    principals = await asyncio.gather(*(verifier.verify(token) for _ in range(20)))

    assert {p.user_id for p in principals} == {"user-1"}
    assert jwks_server.request_count == 1


async def test_unknown_kid_triggers_exactly_one_refetch(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(tokens.issue())
    clock.advance(MIN_REFETCH_INTERVAL + 1)

    assert await rejection(verifier, tokens.issue(kid="forged-1")) == "unknown signing key"
    assert jwks_server.request_count == 2


async def test_flood_of_unknown_kids_within_the_interval_fetches_no_more(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(tokens.issue())
    clock.advance(MIN_REFETCH_INTERVAL + 1)
    forged = [tokens.issue(kid=f"forged-{i}") for i in range(50)]

    concurrent = await asyncio.gather(*(verifier.verify(t) for t in forged), return_exceptions=True)
    clock.advance(MIN_REFETCH_INTERVAL - 1)
    sequential = [await rejection(verifier, t) for t in forged]

    assert all(isinstance(outcome, AuthError) for outcome in concurrent)
    assert set(sequential) == {"unknown signing key"}
    assert jwks_server.request_count == 2


async def test_unknown_kid_may_refetch_again_after_the_interval(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(tokens.issue())
    clock.advance(MIN_REFETCH_INTERVAL + 1)
    await rejection(verifier, tokens.issue(kid="forged-1"))
    clock.advance(MIN_REFETCH_INTERVAL)

    await rejection(verifier, tokens.issue(kid="forged-2"))

    assert jwks_server.request_count == 3


async def test_token_signed_by_a_newly_published_key_is_accepted_after_refetch(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(tokens.issue())
    jwks_server.add_key("test-key-2")
    clock.advance(MIN_REFETCH_INTERVAL + 1)

    principal = await verifier.verify(tokens.issue("user-2", kid="test-key-2"))

    assert principal.user_id == "user-2"
    assert jwks_server.request_count == 2


async def test_keys_older_than_max_age_are_refreshed(
    verifier: JwtVerifier, jwks: JwksCache, tokens: TokenFactory, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(tokens.issue())
    clock.advance(MAX_AGE)

    await verifier.verify(tokens.issue())
    await jwks.wait_idle()

    assert jwks_server.request_count == 2


async def test_cached_keys_keep_serving_when_a_refresh_fails(
    verifier: JwtVerifier, jwks: JwksCache, tokens: TokenFactory, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(tokens.issue())
    jwks_server.fail_with(500)
    clock.advance(MAX_AGE)

    first = await verifier.verify(tokens.issue("user-2"))
    await jwks.wait_idle()
    second = await verifier.verify(tokens.issue("user-3"))
    await jwks.wait_idle()

    assert (first.user_id, second.user_id) == ("user-2", "user-3")
    assert jwks_server.request_count == 2  # the failed refresh is not retried within the interval


async def test_unknown_kid_while_the_jwks_fails_is_unavailable(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(tokens.issue())
    jwks_server.fail_with(503)
    clock.advance(MIN_REFETCH_INTERVAL + 1)

    with pytest.raises(AuthUnavailable):
        await verifier.verify(tokens.issue(kid="test-key-2"))


async def test_failing_jwks_at_first_use_is_unavailable_then_retried(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer
) -> None:
    jwks_server.fail_with(500)
    with pytest.raises(AuthUnavailable):
        await verifier.verify(tokens.issue())
    jwks_server.fail_with(None)

    assert (await verifier.verify(tokens.issue())).user_id == "user-1"


async def test_unreachable_jwks_at_first_use_is_unavailable(http: httpx.AsyncClient, tokens: TokenFactory) -> None:
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))  # bound but never listening: connections are refused
        host, port = closed_port.getsockname()
        jwks = JwksCache(jwks_url=f"http://{host}:{port}/.well-known/jwks.json", http=http)
        verifier = JwtVerifier(jwks=jwks, audience=TEST_AUDIENCE, issuer=TEST_ISSUER)

        with pytest.raises(AuthUnavailable):
            await verifier.verify(tokens.issue())


# --- a slow, huge or stalled JWKS endpoint --------------------------------------------------

# A short deadline keeps the test quick; production uses gql.auth.JWKS_FETCH_DEADLINE.
TEST_DEADLINE = 1.0


def cache_for(jwks_server: JwksServer, http: httpx.AsyncClient, clock: FakeClock, **options: float) -> JwksCache:
    return JwksCache(
        jwks_url=jwks_server.url,
        http=http,
        min_refetch_interval=MIN_REFETCH_INTERVAL,
        max_age=MAX_AGE,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )


async def test_a_jwks_endpoint_trickling_bytes_is_given_up_at_the_overall_deadline(
    jwks_server: JwksServer, tokens: TokenFactory, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    # A byte every 0.1 s never trips the client's 5 s read timeout; the document would take minutes.
    jwks_server.trickle(0.1)
    verifier = JwtVerifier(
        jwks=cache_for(jwks_server, http, clock, fetch_deadline=TEST_DEADLINE),
        audience=TEST_AUDIENCE,
        issuer=TEST_ISSUER,
    )
    started = time.monotonic()

    with pytest.raises(AuthUnavailable):
        await verifier.verify(tokens.issue())

    assert time.monotonic() - started < TEST_DEADLINE + 1


@pytest.mark.parametrize("announce_length", [True, False], ids=["content-length", "until-close"])
async def test_a_jwks_document_over_the_size_cap_is_refused(
    jwks_server: JwksServer, tokens: TokenFactory, http: httpx.AsyncClient, clock: FakeClock, announce_length: bool
) -> None:
    jwks_server.pad(MAX_JWKS_BYTES, announce_length=announce_length)
    verifier = JwtVerifier(jwks=cache_for(jwks_server, http, clock), audience=TEST_AUDIENCE, issuer=TEST_ISSUER)

    with pytest.raises(AuthUnavailable):
        await verifier.verify(tokens.issue())


async def test_a_jwks_document_under_the_size_cap_is_accepted(
    jwks_server: JwksServer, tokens: TokenFactory, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    jwks_server.pad(MAX_JWKS_BYTES // 2, announce_length=False)
    verifier = JwtVerifier(jwks=cache_for(jwks_server, http, clock), audience=TEST_AUDIENCE, issuer=TEST_ISSUER)

    assert (await verifier.verify(tokens.issue())).user_id == "user-1"


async def test_a_stalled_refresh_never_holds_a_token_whose_kid_is_cached(
    verifier: JwtVerifier, jwks: JwksCache, tokens: TokenFactory, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(tokens.issue())
    release = jwks_server.hold()
    clock.advance(MAX_AGE)
    try:
        async with asyncio.timeout(1):
            first = await verifier.verify(tokens.issue("user-2"))
        await asyncio.to_thread(jwks_server.held.wait, 5)  # the refresh did go out, and hangs
        async with asyncio.timeout(1):
            second = await verifier.verify(tokens.issue("user-3"))
    finally:
        release.set()
    await jwks.wait_idle()

    assert (first.user_id, second.user_id) == ("user-2", "user-3")
    assert jwks_server.request_count == 2


async def test_an_unknown_kid_waiting_for_a_fetch_never_holds_a_cached_kid(
    verifier: JwtVerifier, tokens: TokenFactory, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(tokens.issue())
    release = jwks_server.hold()
    clock.advance(MIN_REFETCH_INTERVAL + 1)
    unknown = asyncio.create_task(verifier.verify(tokens.issue(kid="forged-1")))
    try:
        await asyncio.to_thread(jwks_server.held.wait, 5)
        async with asyncio.timeout(1):
            known = await verifier.verify(tokens.issue("user-2"))
        assert not unknown.done()
    finally:
        release.set()

    assert known.user_id == "user-2"
    with pytest.raises(AuthError, match="unknown signing key"):
        await unknown
