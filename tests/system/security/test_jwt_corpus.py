"""Forged, stale and misdirected tokens: every one is a 401 on REST and GraphQL and a 4403 on the
websocket, and none reaches a resolver (nothing is stored, nothing is queued)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from huey import RedisHuey
from websockets.exceptions import ConnectionClosed

from tests.fixtures import images
from tests.fixtures.jwks import TEST_KID, JwksServer, RsaTestKey, TokenFactory, ec_jwk
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.gql.helpers import RESTORE, graphql_upload
from tests.gql.ws import GraphQLSocket


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with(secret: bytes, sub: str, server: JwksServer) -> str:
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": TEST_KID}).encode())
    claims = TokenFactory(server).issue(sub=sub).split(".")[1]
    signing_input = f"{header}.{claims}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def public_der(server: JwksServer) -> bytes:
    key = serialization.load_pem_public_key(server.default_key.public_pem.encode())
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Attack:
    name: str
    token: Callable[[TokenFactory, JwksServer, str], str | None]


ATTACKS = [
    Attack("no token", lambda t, s, sub: None),
    Attack("garbage", lambda t, s, sub: "not.a.jwt"),
    Attack("alg none", lambda t, s, sub: t.issue(sub=sub, alg="none")),
    Attack(
        "HS256 signed with the RSA public key (PEM)",
        lambda t, s, sub: t.issue(sub=sub, alg="HS256", key=s.default_key.public_pem),
    ),
    Attack("HS256 signed with the RSA public key (DER)", lambda t, s, sub: hs256_with(public_der(s), sub, s)),
    Attack("expired", lambda t, s, sub: t.issue(sub=sub, exp_in=-120)),
    Attack("not yet valid", lambda t, s, sub: t.issue(sub=sub, nbf_in=3600)),
    Attack("wrong audience", lambda t, s, sub: t.issue(sub=sub, aud="https://another-api.example")),
    Attack("wrong issuer", lambda t, s, sub: t.issue(sub=sub, iss="https://evil.example/")),
    Attack("unknown kid", lambda t, s, sub: t.issue(sub=sub, kid="no-such-key", key=s.default_key)),
    Attack(
        "kid of another key type",
        lambda t, s, sub: (s.publish_jwk(ec_jwk("ec-key")), t.issue(sub=sub, kid="ec-key", key=s.default_key))[1],
    ),
    Attack("missing sub", lambda t, s, sub: t.issue(sub=None, omit=("sub",))),
    Attack("missing exp", lambda t, s, sub: t.issue(sub=sub, omit=("exp",))),
    Attack("missing aud", lambda t, s, sub: t.issue(sub=sub, omit=("aud",))),
    Attack("tampered payload", lambda t, s, sub: t.tamper(t.issue(sub="someone-else"), sub=sub)),
    Attack(
        "signed by an unpublished key",
        lambda t, s, sub: t.issue(sub=sub, key=RsaTestKey.generate(TEST_KID)),
    ),
]


def test_the_corpus_covers_the_listed_attacks() -> None:
    assert len(ATTACKS) >= 15


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
async def test_rest_refuses_the_token_before_any_work(
    attack: Attack,
    api: ApiServer,
    tokens: TokenFactory,
    jwks_server: JwksServer,
    s3_server: S3ServerHandle,
    queued: RedisHuey,
) -> None:
    s3_server.reset()
    token = attack.token(tokens, jwks_server, f"victim-{uuid.uuid4().hex[:6]}")
    async with api.client(token) as client:
        upload = await client.post(RESTORE, files={"file": ("a.jpg", images.jpeg_bytes(), "image/jpeg")})
        read = await client.get(f"/api/v1/restoration/jobs/{uuid.uuid4()}")
    for response in (upload, read):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert s3_server.keys() == []
    assert queued.pending_count() == 0


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
async def test_graphql_refuses_the_token_before_any_work(
    attack: Attack,
    api: ApiServer,
    tokens: TokenFactory,
    jwks_server: JwksServer,
    s3_server: S3ServerHandle,
) -> None:
    s3_server.reset()
    token = attack.token(tokens, jwks_server, "victim")
    async with api.client(token) as client:
        mutation = await graphql_upload(client, images.jpeg_bytes())
        query = await client.post("/graphql", json={"query": "{ jobs { edges { cursor } } }"})
    assert mutation.status_code == 401
    assert query.status_code == 401
    assert s3_server.keys() == []


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
async def test_websocket_refuses_the_token_in_connection_init(
    attack: Attack, api: ApiServer, tokens: TokenFactory, jwks_server: JwksServer
) -> None:
    token = attack.token(tokens, jwks_server, "victim")
    socket = await GraphQLSocket.open(api.url)
    await socket.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"} if token else {}})
    with pytest.raises(ConnectionClosed):
        await socket.receive()
    assert socket.connection.close_code == 4403


async def test_a_token_in_the_query_string_is_not_accepted(api: ApiServer, tokens: TokenFactory) -> None:
    token = tokens.issue(sub="alice")
    async with api.client() as anonymous:
        rest = await anonymous.get(f"/api/v1/restoration/jobs/{uuid.uuid4()}", params={"access_token": token})
        gql = await anonymous.get("/graphql", params={"query": "{ jobs { edges { cursor } } }", "token": token})
    assert rest.status_code == 401
    assert gql.status_code == 401


async def test_a_flood_of_unknown_kids_costs_at_most_one_jwks_fetch(
    api: ApiServer, tokens: TokenFactory, jwks_server: JwksServer
) -> None:
    before = jwks_server.request_count
    async with api.client() as anonymous:
        for n in range(50):
            forged = tokens.issue(sub="x", kid=f"unknown-{n}", key=jwks_server.default_key)
            response = await anonymous.get(
                f"/api/v1/restoration/jobs/{uuid.uuid4()}", headers={"Authorization": f"Bearer {forged}"}
            )
            assert response.status_code == 401
    assert jwks_server.request_count - before <= 1
