from tests.fixtures.jwks import jwks_server, tokens  # noqa: F401
