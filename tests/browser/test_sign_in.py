"""Signing in outside the dev identity: Auth0 Universal Login with PKCE, or a clear message when
the page has no Auth0 application. Auth0 itself is played by Playwright routes: the browser never
leaves loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import DevServer, start_dev, stop_dev

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

AUTH0_DOMAIN = "tenant.auth0.test"
AUTH0_AUDIENCE = "https://restoration.test/api"
CLIENT_ID = "the-spa-client-id"
LOGIN_PAGE = "<!doctype html><title>Auth0 Universal Login</title><h1>Log in</h1>"
# What Auth0 answers in the hidden frame when nobody is signed in (response_mode=web_message).
NOT_SIGNED_IN_FRAME = """<!doctype html><script>
parent.postMessage({type: "authorization_response",
                    response: {error: "login_required", error_description: "Login required"}}, "*");
</script>"""


def auth0_env(**extra: str) -> dict[str, str]:
    return {"AUTH0_DOMAIN": AUTH0_DOMAIN, "AUTH0_AUDIENCE": AUTH0_AUDIENCE, **extra}


@pytest.fixture
def without_client_id(tmp_path: Path) -> Iterator[DevServer]:
    server = start_dev(tmp_path, env=auth0_env())
    yield server
    stop_dev(server)


@pytest.fixture
def with_client_id(tmp_path: Path) -> Iterator[DevServer]:
    server = start_dev(tmp_path, env=auth0_env(AUTH0_CLIENT_ID=CLIENT_ID))
    yield server
    stop_dev(server)


def test_without_auth0_client_id_the_page_says_sign_in_is_not_set_up(page: Page, without_client_id: DevServer) -> None:
    page.goto(without_client_id.url + "/")
    expect(page.locator("#notice")).to_contain_text("AUTH0_CLIENT_ID is unset")
    expect(page.locator("#who")).to_have_text("Not signed in")
    expect(page.locator("#submit")).to_be_hidden()


def test_sign_in_goes_to_auth0_universal_login_with_pkce(page: Page, with_client_id: DevServer) -> None:
    authorizations: list[str] = []

    def auth0(route: Route) -> None:
        authorizations.append(route.request.url)
        silent = "prompt=none" in route.request.url
        route.fulfill(content_type="text/html", body=NOT_SIGNED_IN_FRAME if silent else LOGIN_PAGE)

    page.route(re.compile(rf"^https://{re.escape(AUTH0_DOMAIN)}/"), auth0)
    page.goto(with_client_id.url + "/")
    expect(page.locator("#sign-in")).to_be_visible()
    page.click("#sign-in")
    expect(page).to_have_title("Auth0 Universal Login")
    login = urlsplit(authorizations[-1])
    query = parse_qs(login.query)
    assert login.path == "/authorize"
    assert query["client_id"] == [CLIENT_ID]
    assert query["audience"] == [AUTH0_AUDIENCE]
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43
    assert query["redirect_uri"] == [with_client_id.url + "/"]
