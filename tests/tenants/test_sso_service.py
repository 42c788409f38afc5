"""The rules of tenants_app/services/sso.py that need no identity provider: reading the
groups claim, and the second of two first sign-ins of one subject."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tenants_app.models import SsoIdentity
from tenants_app.services.sso import (
    SsoGrants,
    _identity_create,
    sso_grants_from_groups,
    sso_groups,
)

PATTERN = r"^aipk:(?P<tenant>[-a-zA-Z0-9_]+):(?P<role>owner|admin|member|viewer)$"


def grants(groups: list[str]) -> SsoGrants:
    return sso_grants_from_groups(
        groups=groups,
        staff_groups=["ops"],
        superuser_groups=["root"],
        tenant_role_pattern=PATTERN,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["a", "b"], ["a", "b"]),
        ("a", ["a"]),
        (["a", 3, None, {"x": 1}], ["a"]),
        (None, []),
        ({"a": True}, []),
    ],
)
def test_it_reads_the_groups_claim_as_a_list_of_strings(value, expected):
    assert sso_groups({"groups": value}, "groups") == expected


def test_it_grants_nothing_without_matching_groups():
    assert grants(["engineering", "aipk:acme:janitor", "aipk::owner"]) == SsoGrants()


def test_it_makes_a_superuser_staff_too():
    assert grants(["root"]) == SsoGrants(staff=True, superuser=True)
    assert grants(["ops"]) == SsoGrants(staff=True, superuser=False)


def test_it_keeps_the_highest_role_per_tenant_in_any_order():
    result = grants(["aipk:acme:viewer", "aipk:acme:owner", "aipk:acme:member", "aipk:b:member"])
    assert result.roles == {"acme": "owner", "b": "member"}


@pytest.mark.django_db
def test_it_gives_the_second_of_two_first_sign_ins_the_account_the_first_made():
    first = _identity_create(issuer="https://idp", subject="s-1", claims={}, email="a@x.io")

    second = _identity_create(issuer="https://idp", subject="s-1", claims={}, email="a@x.io")

    assert second.pk == first.pk and second.user == first.user
    assert SsoIdentity.objects.count() == 1
    assert get_user_model().objects.count() == 1
