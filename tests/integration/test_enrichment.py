"""The enrichment activity against the local provider, both over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.enrichment import EnrichmentActivities
from devstack.enrichment_provider import create_provider_app
from tests.support.servers import free_port, run_asgi_server
from workflows.contracts import CompanyProfile, EnrichmentRequest


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    with run_asgi_server(create_provider_app(rate_per_second=1000, burst=1000)) as base_url:
        yield base_url


async def enrich(
    base_url: str, domain: str, *, api_key: str | None = None, timeout_seconds: float = 2.0
) -> CompanyProfile:
    enrichment = EnrichmentActivities(base_url, api_key=api_key, timeout_seconds=timeout_seconds)
    try:
        return await ActivityEnvironment().run(enrichment.enrich_company, EnrichmentRequest(domain))
    finally:
        await enrichment.aclose()


async def enrichment_error(
    base_url: str, domain: str, *, api_key: str | None = None, timeout_seconds: float = 2.0
) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await enrich(base_url, domain, api_key=api_key, timeout_seconds=timeout_seconds)
    return caught.value


def stub_provider(
    status: int, body: str = "", *, headers: Mapping[str, str] | None = None, delay: float = 0
) -> Starlette:
    """A provider that answers every company lookup the same way."""

    async def lookup(_request: Request) -> Response:
        await asyncio.sleep(delay)
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    return Starlette(routes=[Route("/v1/companies/{domain}", lookup)])


async def test_known_domain_returns_full_deterministic_profile(provider_url: str) -> None:
    first = await enrich(provider_url, "  Acme-Corp.IO ")
    again = await enrich(provider_url, "acme-corp.io")
    with run_asgi_server(create_provider_app()) as other_instance_url:
        from_other_instance = await enrich(other_instance_url, "acme-corp.io")

    assert first.domain == "acme-corp.io"
    assert first.name == "Acme Corp"
    assert first.industry and first.size_band and first.country
    assert first.employees is not None and first.employees >= 1
    assert len(first.country) == 2 and first.country.isupper()
    assert first.complete is True
    assert first == again == from_other_instance


@pytest.mark.parametrize("domain", ["gmail.com", "proton.me", "mail.yahoo.com", "shop.test"])
async def test_domain_without_company_data_is_not_found_and_not_retried(
    provider_url: str, domain: str
) -> None:
    error = await enrichment_error(provider_url, domain)

    assert error.type == "CompanyNotFound"
    assert error.non_retryable
    assert error.message == f"no company data for {domain}"


@pytest.mark.parametrize("domain", ["", "not a domain", "jane@acme.io", "localhost", "10.0.0.1"])
async def test_invalid_domain_is_rejected_before_any_request(domain: str) -> None:
    error = await enrichment_error(f"http://127.0.0.1:{free_port()}", domain)

    assert error.type == "InvalidInput"
    assert error.non_retryable


async def test_rate_limited_lookup_retries_after_the_delay_the_provider_sent() -> None:
    with run_asgi_server(create_provider_app(rate_per_second=0.25, burst=1)) as base_url:
        await enrich(base_url, "acme-corp.io")
        async with httpx.AsyncClient(base_url=base_url) as client:
            sent = await client.get("/v1/companies/acme-corp.io")
        error = await enrichment_error(base_url, "acme-corp.io")

    assert sent.status_code == 429
    assert error.type == "RateLimited"
    assert not error.non_retryable
    assert error.next_retry_delay == timedelta(seconds=int(sent.headers["Retry-After"]))


@pytest.mark.parametrize(
    ("retry_after", "expected_delay"),
    [({}, timedelta(seconds=1)), ({"Retry-After": "86400"}, timedelta(seconds=300))],
)
async def test_rate_limit_delay_defaults_to_one_second_and_is_capped(
    retry_after: dict[str, str], expected_delay: timedelta
) -> None:
    with run_asgi_server(stub_provider(429, headers=retry_after)) as base_url:
        error = await enrichment_error(base_url, "acme-corp.io")

    assert error.type == "RateLimited"
    assert error.next_retry_delay == expected_delay


async def test_server_error_is_retryable_unavailability() -> None:
    with run_asgi_server(stub_provider(500, '{"oops": true}')) as base_url:
        error = await enrichment_error(base_url, "acme-corp.io")

    assert error.type == "EnrichmentUnavailable"
    assert not error.non_retryable
    assert "500" in error.message


async def test_slow_provider_times_out_as_retryable_unavailability() -> None:
    with run_asgi_server(stub_provider(200, "{}", delay=1.0)) as base_url:
        error = await enrichment_error(base_url, "acme-corp.io", timeout_seconds=0.2)

    assert error.type == "EnrichmentUnavailable"
    assert not error.non_retryable


async def test_unreachable_provider_is_retryable_unavailability() -> None:
    error = await enrichment_error(f"http://127.0.0.1:{free_port()}", "acme-corp.io")

    assert error.type == "EnrichmentUnavailable"
    assert not error.non_retryable


@pytest.mark.parametrize("body", ["<html>maintenance</html>", "[]", '{"name": 42}'])
async def test_malformed_profile_is_rejected_without_retry(body: str) -> None:
    with run_asgi_server(stub_provider(200, body)) as base_url:
        error = await enrichment_error(base_url, "acme-corp.io")

    assert error.type == "EnrichmentRejected"
    assert error.non_retryable


async def test_api_key_is_required_when_configured() -> None:
    with run_asgi_server(create_provider_app(api_key="s3cret")) as base_url:
        profile = await enrich(base_url, "acme-corp.io", api_key="s3cret")
        wrong_key = await enrichment_error(base_url, "acme-corp.io", api_key="guess")
        no_key = await enrichment_error(base_url, "acme-corp.io")

    assert profile.complete
    for error in (wrong_key, no_key):
        assert error.type == "EnrichmentRejected"
        assert error.non_retryable
        assert "401" in error.message
        assert "guess" not in error.message


async def test_provider_answers_429_problem_with_retry_after_then_recovers() -> None:
    with run_asgi_server(create_provider_app(rate_per_second=2, burst=1)) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            allowed = await client.get("/v1/companies/acme-corp.io")
            limited = await client.get("/v1/companies/acme-corp.io")
            await asyncio.sleep(int(limited.headers["Retry-After"]))
            after_waiting = await client.get("/v1/companies/acme-corp.io")

    assert allowed.status_code == 200
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert limited.json()["status"] == 429
    assert limited.json()["type"] == "/problems/rate-limited"
    assert after_waiting.status_code == 200
    assert after_waiting.json() == allowed.json()


async def test_provider_limits_each_api_key_separately() -> None:
    with run_asgi_server(create_provider_app(rate_per_second=0.1, burst=1)) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            first_key = await client.get("/v1/companies/a.io", headers={"X-Api-Key": "one"})
            first_key_again = await client.get("/v1/companies/a.io", headers={"X-Api-Key": "one"})
            second_key = await client.get(
                "/v1/companies/a.io", headers={"Authorization": "Bearer two"}
            )

    assert [first_key.status_code, first_key_again.status_code, second_key.status_code] == [
        200,
        429,
        200,
    ]


async def test_provider_answers_problems_for_unknown_and_invalid_domains(
    provider_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        free_mail = await client.get("/v1/companies/gmail.com")
        invalid = await client.get("/v1/companies/not_a_domain")
        health = await client.get("/healthz")

    assert free_mail.status_code == 404
    assert free_mail.headers["Content-Type"] == "application/problem+json"
    assert free_mail.json()["type"] == "/problems/company-not-found"
    assert invalid.status_code == 400
    assert invalid.headers["Content-Type"] == "application/problem+json"
    assert health.status_code == 200


async def test_a_provider_under_a_path_is_looked_up_below_it() -> None:
    mounted = Starlette(routes=[Mount("/enrichment/", app=create_provider_app())])
    with run_asgi_server(mounted) as base_url:
        profile = await enrich(f"{base_url}/enrichment/", "acme-corp.io")

    assert profile.name == "Acme Corp"


@pytest.mark.parametrize("base_url", ["", "enrichment.local:8081", "ftp://enrichment.local/"])
def test_a_provider_url_that_is_not_http_is_refused_at_start(base_url: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        EnrichmentActivities(base_url)
