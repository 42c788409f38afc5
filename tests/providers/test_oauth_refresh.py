"""Token refresh: on demand, coalesced under concurrency, rotation, failures, the Celery task.

Credentials are connected through the real flow (oauth_start → simulator authorize
→ oauth_callback), so the simulator knows their refresh tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import timedelta

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aipk_site.infra import change_events
from providers_app.kit.oauth import OAuthError
from providers_app.kit.types import ChatRequest, Message
from providers_app.models import OAuthCredential, OAuthFlow
from providers_app.services import chat
from providers_app.services.chat import CREDENTIALS_TOPIC, provider_chat
from providers_app.services.oauth import (
    OAuthCredentialUnusable,
    ensure_fresh_token,
    oauth_credential_refresh_now,
)
from providers_app.tasks.oauth import refresh_expiring_tokens
from tenants_app.models import AuditEvent

REFRESH = "refresh_token"


def _ask() -> ChatRequest:
    return ChatRequest(model="gpt-4o-mini", messages=[Message(role="user", content="Hello")])


def _tokens_sent(simulator) -> list[str]:
    """The last four characters of the token each chat request carried, in order."""
    return [
        r["headers"]["authorization"][-4:]
        for r in httpx.get(simulator.url + "/_sim/requests").json()
        if r["path"].endswith("/chat/completions")
    ]


def _refresh_calls(simulator, credential: OAuthCredential) -> int:
    calls = httpx.get(
        simulator.url + "/_sim/oauth/calls", params={"client_id": credential.client_id}
    ).json()
    return calls.get(REFRESH, 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_thread")
async def test_it_leaves_a_fresh_token_alone(connect, simulator):
    credential = await sync_to_async(connect)()
    same = await ensure_fresh_token(credential.pk)
    assert same.access_token == credential.access_token
    assert _refresh_calls(simulator, credential) == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_thread")
async def test_it_refreshes_a_token_expiring_within_the_buffer(connect, simulator):
    credential = await sync_to_async(connect)(expires_in=1)
    assert credential.expires_at - timezone.now() < timedelta(seconds=5)

    fresh = await ensure_fresh_token(credential.pk)

    assert fresh.access_token != credential.access_token
    assert fresh.refresh_token != credential.refresh_token  # rotated: the new one replaces it
    assert fresh.last4 == fresh.access_token[-4:]
    assert fresh.expires_at - timezone.now() > timedelta(minutes=59)
    assert fresh.refresh_count == 1 and fresh.last_refresh_at is not None
    stored = await OAuthCredential.objects.aget(pk=credential.pk)
    assert (stored.access_token, stored.refresh_token) == (fresh.access_token, fresh.refresh_token)
    assert _refresh_calls(simulator, credential) == 1
    # an adapter request with the new token works
    async with httpx.AsyncClient() as http:
        reply = await http.get(
            credential.provider.base_url + "/models",
            headers={"Authorization": f"Bearer {fresh.access_token}"},
        )
    assert reply.status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_thread")
async def test_it_refreshes_exactly_once_under_20_concurrent_callers(connect, simulator):
    credential = await sync_to_async(connect)(expires_in=1)

    results = await asyncio.gather(*(ensure_fresh_token(credential.pk) for _ in range(20)))

    assert _refresh_calls(simulator, credential) == 1
    tokens = {r.access_token for r in results}
    assert len(tokens) == 1 and credential.access_token not in tokens
    stored = await OAuthCredential.objects.aget(pk=credential.pk)
    assert stored.access_token in tokens and stored.refresh_count == 1


@pytest.mark.django_db(transaction=True)
def test_it_refreshes_once_for_callers_on_separate_event_loops(connect, simulator):
    """Like separate workers: 4 threads, each with its own event loop, share only the cache lock."""
    credential = connect(expires_in=1)

    def worker(results: list) -> None:
        async def five():
            return await asyncio.gather(*(ensure_fresh_token(credential.pk) for _ in range(5)))

        results.extend(asyncio.run(five()))

    results: list[OAuthCredential] = []
    threads = [threading.Thread(target=worker, args=(results,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    asyncio.run(sync_to_async(connections.close_all)())  # the ORM worker thread's connection

    assert len(results) == 20
    assert len({r.access_token for r in results}) == 1
    assert _refresh_calls(simulator, credential) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_thread")
async def test_it_keeps_the_refresh_token_when_the_reply_has_none(connect, simulator):
    credential = await sync_to_async(connect)(token_query="?rotate=0", provider_type="gemini")
    first = await ensure_fresh_token(credential.pk, force=True)
    second = await ensure_fresh_token(credential.pk, force=True)
    assert first.refresh_token == second.refresh_token == credential.refresh_token
    assert len({credential.access_token, first.access_token, second.access_token}) == 3
    assert second.refresh_count == 2 and _refresh_calls(simulator, credential) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_thread")
async def test_it_marks_a_credential_needs_reauth_when_its_refresh_token_was_rotated_away(
    connect, simulator
):
    credential = await sync_to_async(connect)(expires_in=1)
    old_refresh_token = credential.refresh_token
    await ensure_fresh_token(credential.pk)  # rotates: the old refresh token is now spent
    # another copy of the credential (a restored backup, a second install) still has the old one
    stale = await OAuthCredential.objects.aget(pk=credential.pk)
    stale.refresh_token = old_refresh_token
    stale.expires_at = timezone.now()
    await stale.asave(update_fields=["refresh_token", "expires_at"])

    with pytest.raises(OAuthError) as raised:
        await ensure_fresh_token(credential.pk)

    assert raised.value.error == "invalid_grant" and raised.value.permanent
    stored = await OAuthCredential.objects.aget(pk=credential.pk)
    assert stored.state == OAuthCredential.State.NEEDS_REAUTH
    assert stored.last_refresh_error.startswith("invalid_grant")
    event = await AuditEvent.objects.aget(
        action="oauth_credential.needs_reauth", object_id=str(credential.pk)
    )
    assert event.changes == {"state": ["active", "needs_reauth"], "error": "invalid_grant"}
    # from now on the pool is told at once, without asking the server
    with pytest.raises(OAuthCredentialUnusable):
        await ensure_fresh_token(credential.pk)
    assert _refresh_calls(simulator, credential) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_thread")
async def test_it_does_not_give_up_on_a_transient_failure(connect, simulator):
    credential = await sync_to_async(connect)(expires_in=1)
    provider = credential.provider
    provider.oauth_token_url = "http://127.0.0.1:9/oauth/token"  # nothing listens there
    await provider.asave(update_fields=["oauth_token_url"])
    with pytest.raises(OAuthError) as raised:
        await ensure_fresh_token(credential.pk)
    assert raised.value.retryable and not raised.value.permanent
    stored = await OAuthCredential.objects.aget(pk=credential.pk)
    assert stored.state == OAuthCredential.State.ACTIVE
    assert stored.last_refresh_error == "temporarily_unavailable"


@pytest.mark.django_db
def test_it_refreshes_only_credentials_inside_the_buffer(connect, simulator, settings):
    settings.OAUTH_REFRESH_BUFFER_SECONDS = 300
    inside = connect(expires_in=200)
    outside = connect(expires_in=400)
    broken = connect(expires_in=1)
    OAuthCredential.objects.filter(pk=broken.pk).update(state=OAuthCredential.State.NEEDS_REAUTH)

    summary = refresh_expiring_tokens()  # called directly: with REDIS_URL Celery is not eager

    assert summary == {"refreshed": [inside.pk], "failed": []}
    assert OAuthCredential.objects.get(pk=inside.pk).access_token != inside.access_token
    assert OAuthCredential.objects.get(pk=outside.pk).access_token == outside.access_token
    assert [_refresh_calls(simulator, c) for c in (inside, outside, broken)] == [1, 0, 0]


@pytest.mark.django_db
def test_it_reports_failed_refreshes_and_carries_on(connect, simulator):
    good = connect(expires_in=1)
    bad = connect(expires_in=1)
    OAuthCredential.objects.filter(pk=bad.pk).update(refresh_token="sim-rt-never-issued")
    summary = refresh_expiring_tokens()
    assert summary == {"refreshed": [good.pk], "failed": [bad.pk]}
    assert OAuthCredential.objects.get(pk=bad.pk).state == OAuthCredential.State.NEEDS_REAUTH


@pytest.mark.django_db
def test_it_never_shows_a_secret_in_logs_audit_or_reprs(connect, simulator, caplog):
    caplog.set_level(logging.DEBUG)
    credential = connect(expires_in=1)
    async_to_sync(ensure_fresh_token)(credential.pk)
    fresh = OAuthCredential.objects.get(pk=credential.pk)
    OAuthCredential.objects.filter(pk=credential.pk).update(refresh_token=credential.refresh_token)
    with pytest.raises(OAuthError):
        async_to_sync(ensure_fresh_token)(credential.pk, force=True)
    flow = OAuthFlow.objects.get(oauth_credential=credential)

    secrets_seen = [
        credential.access_token,
        credential.refresh_token,
        fresh.access_token,
        fresh.refresh_token,
        flow.code_verifier,
    ]
    audit = " ".join(f"{e.changes} {e.object_repr}" for e in AuditEvent.objects.all())
    shown = " ".join([caplog.text, audit, repr(fresh), str(fresh), repr(flow)])
    assert "oauth token refreshed" in caplog.text and "oauth token refresh failed" in caplog.text
    for secret in secrets_seen:
        assert secret and secret not in shown


@pytest.mark.django_db(transaction=True)
def test_it_sends_a_token_that_is_not_expiring_from_memory_without_a_query(connect, simulator):
    credential = connect()  # an hour to go, far outside the refresh buffer
    provider = credential.provider
    async_to_sync(provider_chat)(provider, _ask())  # loads this process's snapshot

    # async_to_sync runs the ORM's thread-sensitive calls on this thread: its connection
    # sees every query the request path makes
    with CaptureQueriesContext(connection) as queries:
        reply = async_to_sync(provider_chat)(provider, _ask())

    assert reply.text == "Simulated reply to: Hello"
    assert [q["sql"] for q in queries.captured_queries] == []
    assert _refresh_calls(simulator, credential) == 0


@pytest.mark.django_db(transaction=True)
def test_it_sends_the_token_another_process_refreshed_once_that_change_event_arrives(
    connect, simulator
):
    credential = connect()
    provider = credential.provider
    async_to_sync(provider_chat)(provider, _ask())  # the snapshot holds the first token

    # Another process (the console's "Refresh now" there, or the refresh job) refreshes:
    # its save publishes the change; this process hears it only when Redis delivers it.
    sent: list[dict] = []
    change_events.unsubscribe(CREDENTIALS_TOPIC, chat._on_credentials_changed)
    change_events.subscribe(CREDENTIALS_TOPIC, sent.append)
    try:
        refreshed = async_to_sync(oauth_credential_refresh_now)(credential_id=credential.pk)
    finally:
        change_events.unsubscribe(CREDENTIALS_TOPIC, sent.append)
        change_events.subscribe(CREDENTIALS_TOPIC, chat._on_credentials_changed)
    assert sent and sent[-1] == {"provider_id": provider.pk}
    simulator.clear_requests()

    async_to_sync(provider_chat)(provider, _ask())  # not arrived yet: the snapshot's token
    message = {"origin": "another-process", "topic": CREDENTIALS_TOPIC, "payload": sent[-1]}
    change_events._receive(json.dumps(message))  # what the listener does when it arrives
    async_to_sync(provider_chat)(provider, _ask())

    assert _tokens_sent(simulator) == [credential.last4, refreshed.last4]
    assert credential.last4 != refreshed.last4


@pytest.mark.django_db(transaction=True)
def test_it_takes_the_refresh_jobs_token_from_the_database_when_no_event_arrives(
    connect, simulator, settings
):
    settings.OAUTH_REFRESH_BUFFER_SECONDS = 60
    credential = connect(expires_in=200)
    provider = credential.provider
    async_to_sync(provider_chat)(provider, _ask())  # 200 s to go: sent from memory

    # The refresh job, elsewhere, refreshes what expires within its 300 s buffer; its
    # change event never reaches this process (Redis away).
    settings.OAUTH_REFRESH_BUFFER_SECONDS = 300
    change_events.unsubscribe(CREDENTIALS_TOPIC, chat._on_credentials_changed)
    try:
        assert refresh_expiring_tokens() == {"refreshed": [credential.pk], "failed": []}
    finally:
        change_events.subscribe(CREDENTIALS_TOPIC, chat._on_credentials_changed)
    refreshed = OAuthCredential.objects.get(pk=credential.pk)
    simulator.clear_requests()

    # this process's copy is expiring: the refresh path finds the job's token in the
    # database (no second refresh) and drops the copy, so the next request reads it anew
    async_to_sync(provider_chat)(provider, _ask())
    async_to_sync(provider_chat)(provider, _ask())  # reloads the snapshot
    with CaptureQueriesContext(connection) as queries:
        async_to_sync(provider_chat)(provider, _ask())

    assert _tokens_sent(simulator) == [refreshed.last4] * 3
    assert _refresh_calls(simulator, credential) == 1
    assert [q["sql"] for q in queries.captured_queries] == []
