"""Serving the web page: the document and its modules without a token, its configuration, its
security headers, and the dev token only where `restoration dev` hands it out."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import httpx
from fastapi import FastAPI
from graphql import parse, validate

from gql.schema import create_schema
from gql.web.router import INDEX, STATIC_DIR, WEB_DIR, WebConfig, add_web_page
from tests.fixtures.jwks import TEST_AUDIENCE
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from workflows.binding import Workflow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
IMPORT = re.compile(r"""(?:import|from)\s*\(?\s*["'](\./[^"']+)["']""")
# The page's GraphQL documents are template literals in its modules (no build step, no loader).
TEMPLATE = re.compile(r"`([^`]*)`", re.DOTALL)
OPERATION = re.compile(r"^\s*(query|mutation|subscription)\b")
FRAGMENT = re.compile(r"export const JOB_FRAGMENT = `([^`]*)`")


def page_operations() -> list[str]:
    """Every GraphQL operation the page's modules send, with the shared fragment filled in."""
    fragment = FRAGMENT.search((STATIC_DIR / "api.js").read_text())
    assert fragment, "api.js defines JOB_FRAGMENT"
    documents = []
    for source in STATIC_DIR.glob("*.js"):
        for literal in TEMPLATE.findall(source.read_text()):
            if OPERATION.match(literal):
                documents.append(literal.replace("${JOB_FRAGMENT}", fragment.group(1)))
    return documents


async def test_the_page_is_served_without_a_token_with_its_security_headers(
    api: ApiServer, s3_server: S3ServerHandle
) -> None:
    async with api.client() as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/web/app.js">' in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert s3_server.endpoint_url.rstrip("/") in policy.split("img-src", 1)[1].split(";", 1)[0]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_config_names_auth0_and_the_workflows_default_denoise(api: ApiServer, workflow: Workflow) -> None:
    async with api.client() as client:
        config = (await client.get("/web/config.json")).json()
    assert config["signIn"] == "auth0"
    assert config["auth0"] == {"domain": "auth.restoration.test", "clientId": None, "audience": TEST_AUDIENCE}
    assert config["defaultDenoise"] == workflow.default_denoise


async def test_no_dev_token_is_handed_out_outside_restoration_dev(api: ApiServer) -> None:
    async with api.client() as client:
        response = await client.post("/web/dev-token")
    assert response.status_code in (404, 405)
    assert "token" not in response.text


async def test_the_modules_are_served_as_javascript_never_sniffed(api: ApiServer) -> None:
    async with api.client() as client:
        response = await client.get("/web/app.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert response.headers["x-content-type-options"] == "nosniff"


def dev_page(token: str) -> FastAPI:
    app = FastAPI()
    config = WebConfig(
        dev_sign_in=True,
        auth0_domain=None,
        auth0_client_id=None,
        auth0_audience=None,
        default_denoise=0.5,
        max_upload_bytes=1000,
    )
    add_web_page(app, config, dev_token=lambda: token)
    return app


async def test_the_dev_token_is_handed_to_a_page_addressed_by_ip_or_localhost() -> None:
    transport = httpx.ASGITransport(app=dev_page("the-dev-token"))
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            response = await client.post("/web/dev-token")
        assert response.status_code == 200, base
        assert response.json() == {"token": "the-dev-token"}
        assert response.headers["cache-control"] == "no-store"


async def test_the_dev_token_is_refused_under_another_name_as_dns_rebinding_would_send() -> None:
    transport = httpx.ASGITransport(app=dev_page("the-dev-token"))
    async with httpx.AsyncClient(transport=transport, base_url="http://evil.example:8000") as client:
        response = await client.post("/web/dev-token")
    assert response.status_code == 403
    assert "the-dev-token" not in response.text


def test_every_module_the_page_imports_is_there() -> None:
    sources = [*STATIC_DIR.glob("*.js")]
    assert sources
    for source in sources:
        for target in IMPORT.findall(source.read_text()):
            assert (source.parent / target).is_file(), f"{source.name} imports missing {target}"


def shipped_by(patterns: list[str], relative: str) -> bool:
    # setuptools' package-data globs: `*` stays within one folder.
    return any(fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns)


def test_every_file_of_the_page_is_package_data() -> None:
    """An installed package (not only a checkout) serves the page."""
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["gql"]
    served = [INDEX, *(path for path in STATIC_DIR.rglob("*") if path.is_file())]
    for path in served:
        relative = path.relative_to(WEB_DIR.parent).as_posix()
        assert shipped_by(patterns, relative), relative


def test_every_operation_of_the_page_is_valid_against_the_schema() -> None:
    schema = create_schema()._schema
    documents = page_operations()
    called = {field for document in documents for field in re.findall(r"\b(\w+)\s*[({]", document)}
    assert {"jobs", "restoreImage", "createUpload", "restoreUpload", "cancelJob", "jobUpdated", "jobsUpdated"} <= called
    for document in documents:
        assert validate(schema, parse(document)) == [], document


def test_the_page_selects_every_field_of_a_job() -> None:
    """The reference client shows everything the contract says about a job (no field left behind)."""
    fragment = FRAGMENT.search((STATIC_DIR / "api.js").read_text())
    assert fragment
    body = fragment.group(1).split("{", 1)[1].rsplit("}", 1)[0]
    job_type = create_schema()._schema.get_type("RestorationJob")
    assert job_type is not None
    assert set(body.split()) == set(job_type.fields)  # type: ignore[attr-defined]
