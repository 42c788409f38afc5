"""Sign-in throttling (django-axes): repeated wrong passwords lock the username from that
address out, the right password included, until the cool-off has passed."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
LOGIN_URLS = ["/console/login/", "/admin/login/"]


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    # the default hasher's cost is there to slow attackers down; here it only slows the test
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(
        "alice", password=PASSWORD, is_staff=True, is_superuser=True
    )


def sign_in(client, url: str, username: str, password: str):
    return client.post(url, {"username": username, "password": password, "next": "/console/"})


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_it_throttles_with_a_failure_limit_and_a_cool_off_by_default():
    assert django_settings.AXES_FAILURE_LIMIT == 10
    assert django_settings.AXES_COOLOFF_TIME == timedelta(minutes=15)
    assert django_settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


@pytest.mark.parametrize("url", LOGIN_URLS)
def test_it_refuses_the_right_password_after_forty_wrong_ones(client, alice, url):
    statuses = [sign_in(client, url, "alice", f"wrong-{n}").status_code for n in range(40)]

    response = sign_in(client, url, "alice", PASSWORD)

    print(f"{url}: 40 wrong -> {sorted(set(statuses))}, then the right one {response.status_code}")
    assert response.status_code == 429
    assert not signed_in(client)
    assert b"Too many failed sign-in attempts" in response.content
    assert statuses[: django_settings.AXES_FAILURE_LIMIT - 1] == [200] * (
        django_settings.AXES_FAILURE_LIMIT - 1
    )
    assert statuses[-1] == 429


def test_it_lets_the_account_in_again_after_the_cool_off(client, alice, settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=2)
    for n in range(40):
        sign_in(client, "/console/login/", "alice", f"wrong-{n}")
    assert sign_in(client, "/console/login/", "alice", PASSWORD).status_code == 429

    time.sleep(2.5)
    response = sign_in(client, "/console/login/", "alice", PASSWORD)

    assert response.status_code == 302
    assert signed_in(client)


def test_it_locks_out_only_that_username_from_that_address(client, alice, django_user_model):
    django_user_model.objects.create_user("bob", password=PASSWORD)
    for n in range(12):
        sign_in(client, "/console/login/", "alice", f"wrong-{n}")

    assert sign_in(client, "/console/login/", "bob", PASSWORD).status_code == 302
    elsewhere = client.post(
        "/console/login/",
        {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR="198.51.100.7",
    )
    assert elsewhere.status_code == 302


def test_it_forgets_failures_after_a_successful_sign_in(client, alice):
    for n in range(django_settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "/console/login/", "alice", f"wrong-{n}")
    assert sign_in(client, "/console/login/", "alice", PASSWORD).status_code == 302
    client.logout()

    for n in range(django_settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "/console/login/", "alice", f"again-{n}")
    assert sign_in(client, "/console/login/", "alice", PASSWORD).status_code == 302


def test_a_signed_in_session_still_opens_the_management_api(client, alice):
    assert sign_in(client, "/console/login/", "alice", PASSWORD).status_code == 302

    response = client.get("/api/tenants/")

    assert response.status_code == 200
