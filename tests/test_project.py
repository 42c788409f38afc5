"""The project skeleton: checks pass, the API docs answer, ASGI routes both
protocols, and the configured database, cache, channel layer and Celery broker
are the ones actually in use (SQLite + local memory in embedded mode,
PostgreSQL + Redis when DATABASE_URL / REDIS_URL are set).
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from channels.layers import get_channel_layer
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.core.cache import caches
from django.db import connection

from aipk_site import celery_app

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")


def manage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_it_passes_manage_py_check():
    proc = manage("check", "--fail-level", "WARNING")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues" in proc.stdout


def test_it_has_no_model_changes_without_migrations():
    proc = manage("makemigrations", "--check", "--dry-run")

    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_it_serves_the_openapi_docs(client):
    response = client.get("/api/docs")

    assert response.status_code == 200
    assert b"openapi.json" in response.content


def test_it_sends_visitors_of_the_root_to_the_console(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/console/"


def test_it_serves_the_openapi_schema(client):
    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    info = response.json()["info"]
    assert info["title"] == "aipk"
    assert info["version"] == "1"


@pytest.mark.django_db
def test_it_serves_the_admin_login(client):
    response = client.get("/admin/login/")

    assert response.status_code == 200


def _asgi_app():
    from aipk_site.asgi import application

    return application


async def test_it_routes_http_through_the_asgi_application():
    communicator = HttpCommunicator(
        _asgi_app(), "GET", "/api/openapi.json", headers=[(b"host", b"localhost")]
    )

    response = await communicator.get_response(timeout=10)

    assert response["status"] == 200
    assert b'"title": "aipk"' in response["body"] or b'"title":"aipk"' in response["body"]


async def test_it_rejects_an_unknown_websocket_path():
    communicator = WebsocketCommunicator(
        _asgi_app(),
        "/ws/nowhere/",
        # a browser's handshake: the page's origin is the socket's own (Host) origin
        headers=[(b"host", b"localhost"), (b"origin", b"http://localhost")],
    )

    # URLRouter refuses the handshake: the server never accepts the socket.
    with pytest.raises(ValueError, match="No route found"):
        await communicator.connect()


async def test_it_rejects_a_websocket_from_a_foreign_origin():
    communicator = WebsocketCommunicator(
        _asgi_app(), "/ws/chat/", headers=[(b"origin", b"http://evil.example")]
    )

    connected, _ = await communicator.connect()

    assert connected is False


@pytest.mark.django_db
def test_it_uses_the_configured_database():
    with connection.cursor() as cursor:
        if DATABASE_URL.startswith(("postgres://", "postgresql://")):
            assert connection.vendor == "postgresql"
            cursor.execute("SELECT version()")
            assert cursor.fetchone()[0].startswith("PostgreSQL")
        else:
            assert not DATABASE_URL, "only SQLite and PostgreSQL are supported"
            assert connection.vendor == "sqlite"
            cursor.execute("SELECT sqlite_version()")
            assert cursor.fetchone()[0].startswith("3.")


def test_it_uses_the_configured_cache():
    cache = caches["default"]
    key = f"test-project-{uuid.uuid4().hex}"
    cache.set(key, {"hello": "world"}, timeout=60)
    try:
        assert cache.get(key) == {"hello": "world"}
        if REDIS_URL:
            import redis
            from django.core.cache.backends.redis import RedisCache

            assert isinstance(cache, RedisCache)
            raw = redis.Redis.from_url(REDIS_URL)
            try:
                # The value is really stored in Redis, under Django's full key.
                assert raw.exists(cache.make_key(key)) == 1
                assert 0 < raw.ttl(cache.make_key(key)) <= 60
            finally:
                raw.close()
        else:
            from django.core.cache.backends.locmem import LocMemCache

            assert isinstance(cache, LocMemCache)
    finally:
        cache.delete(key)


async def test_it_uses_the_configured_channel_layer():
    layer = get_channel_layer()
    try:
        if REDIS_URL:
            from channels_redis.core import RedisChannelLayer

            assert isinstance(layer, RedisChannelLayer)
        else:
            from channels.layers import InMemoryChannelLayer

            assert isinstance(layer, InMemoryChannelLayer)

        name = await layer.new_channel()
        await layer.send(name, {"type": "test.message", "text": "ping"})

        assert await layer.receive(name) == {"type": "test.message", "text": "ping"}
    finally:
        if hasattr(layer, "close_pools"):
            await layer.close_pools()


def test_it_uses_the_configured_celery_broker():
    if REDIS_URL:
        assert celery_app.conf.task_always_eager is False
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=2)
            assert conn.connected
    else:
        assert celery_app.conf.task_always_eager is True

        @celery_app.task(name="tests.add")
        def add(a: int, b: int) -> int:
            return a + b

        assert add.delay(2, 3).get(timeout=5) == 5
