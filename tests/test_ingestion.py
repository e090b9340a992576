"""Retry behaviour of the ingestion client and token reuse, against the HTTPS emulator."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from azure.core.credentials import AccessToken

from hrconnector_core.chunking import Chunk, encode_rows
from hrconnector_core.credentials import TokenProvider, secret_credential
from hrconnector_core.errors import UploadError
from hrconnector_core.ingestion import IngestionClient, RetryPolicy, retry_after_seconds

from .conftest import APP_ID, FAST_RETRIES, SECRET, TENANT


def chunk(rows=(("a@x.com", "2024-01-01"),)) -> Chunk:
    data = encode_rows(["Email", "Date"], [list(r) for r in rows])
    return Chunk(0, 2, 1 + len(rows), len(rows), data)


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 30
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_backoff_is_jittered_and_capped():
    policy = RetryPolicy(base_delay=1, max_delay=8)
    rng = random.Random(1)
    waits = [policy.backoff(n, rng) for n in range(1, 8) for _ in range(50)]
    assert all(0 <= w <= 8 for w in waits)
    assert max(policy.backoff(1, rng) for _ in range(100)) <= 1
    assert len({round(w, 6) for w in waits}) > 300  # jitter: no two clients retry in lockstep


def test_persistent_503_gives_up_after_the_attempt_bound(emulator, job, make_client):
    emulator.state.set_faults(rate_503=1.0)
    policy = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02)
    with pytest.raises(UploadError) as err:
        make_client(job, policy=policy).upload(chunk())
    assert len(err.value.attempts) == 4 and err.value.status == 503 and not err.value.permanent
    assert "after 4 attempts" in str(err.value)
    assert job not in emulator.state.uploads


def test_the_total_time_bound_stops_retries_before_the_attempt_bound(emulator, job, cloud):
    """A virtual clock that only the client's waits move: the bound is exact and nothing sleeps."""
    emulator.state.set_faults(rate_429=1.0, retry_after_seconds=1)
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    tokens = TokenProvider(secret_credential(TENANT, APP_ID, SECRET, cloud), cloud.scope)
    policy = RetryPolicy(max_attempts=100, max_delay=5, max_total=2.5)
    client = IngestionClient(cloud, job, tokens, policy=policy, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(UploadError) as err:
        client.upload(chunk())
    # Attempts at t=0, 1, 2; a third wait would end at 3 s, past the 2.5 s bound.
    assert [a.status for a in err.value.attempts] == [429, 429, 429]
    assert waits == [1.0, 1.0] and now[0] == 2.0
    assert [a.wait_ms for a in err.value.attempts] == [1000, 1000, 0]  # Retry-After honoured


def test_a_429_then_success_uploads_once(emulator, job, make_client):
    emulator.state.set_faults(rate_429=0.5, retry_after_seconds=0, seed=3)
    client = make_client(job)
    results = [client.upload(chunk([(f"u{i}@x.com", "2024-01-01")])) for i in range(10)]
    assert len(emulator.state.uploads[job]) == 10
    assert any(len(r.attempts) > 1 for r in results)


def test_a_revoked_token_is_replaced_once(emulator, job, cloud):
    class Uncached:
        """A caller's TokenCredential that asks Entra every time (no MSAL cache in between)."""

        def get_token(self, *scopes, **kwargs):
            return secret_credential(TENANT, APP_ID, SECRET, cloud).get_token(*scopes, **kwargs)

    client = IngestionClient(cloud, job, TokenProvider(Uncached(), cloud.scope), policy=FAST_RETRIES)
    client.upload(chunk())
    emulator.state.revoke_tokens(APP_ID)  # the service no longer accepts the token we hold
    result = client.upload(chunk())
    assert [a.status for a in result.attempts] == [401, 200]
    assert client.token_fetches == 2
    assert len(emulator.state.uploads[job]) == 2


def test_a_token_refused_twice_stops_with_the_services_reason(emulator, job, make_client):
    client = make_client(job)
    client.upload(chunk())
    emulator.state.revoke_tokens(APP_ID)  # azure-identity's cache hands back the same, revoked token
    with pytest.raises(UploadError) as err:
        client.upload(chunk())
    assert err.value.permanent and [a.status for a in err.value.attempts] == [401, 401]
    assert "invalid_token" in str(err.value)


def test_an_invalid_token_twice_is_permanent(emulator, job, cloud):
    class Bogus:
        def get_token(self, *scopes, **kwargs):
            return AccessToken("not-a-token", 2**31)

    client = IngestionClient(cloud, job, TokenProvider(Bogus(), cloud.scope), policy=FAST_RETRIES)
    with pytest.raises(UploadError) as err:
        client.upload(chunk())
    assert err.value.status == 401 and err.value.permanent and len(err.value.attempts) == 2


def test_token_is_reused_until_near_expiry():
    now = [1000.0]

    class Counting:
        calls = 0

        def get_token(self, *scopes, **kwargs):
            Counting.calls += 1
            return AccessToken(f"t{Counting.calls}", int(now[0]) + 3600)

    provider = TokenProvider(Counting(), "api://x/.default", refresh_margin=300, clock=lambda: now[0])
    assert {provider.token() for _ in range(50)} == {"t1"}
    now[0] += 3300 - 1
    assert provider.token() == "t1"
    now[0] += 2
    assert provider.token() == "t2" and provider.fetches == 2
