"""`manage.py seed_demo` creates an admin with a printed password and demo providers: with
DEBUG off (production) it refuses to run unless given --force."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from providers_app.models import Provider
from tenants_app.models import Tenant

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_it_refuses_to_seed_with_debug_off(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError) as refused:
        call_command("seed_demo", "--quiet", stdout=io.StringIO())

    print(refused.value)
    assert "DEBUG is off" in str(refused.value) and "--force" in str(refused.value)
    assert Provider.objects.count() == 0
    assert not get_user_model().objects.filter(is_superuser=True).exists()
    assert not Tenant.objects.exists()


@pytest.mark.django_db
def test_it_seeds_with_debug_off_when_forced(settings):
    settings.DEBUG = False

    call_command("seed_demo", "--quiet", "--force", stdout=io.StringIO())

    assert Provider.objects.filter(name="openai").exists()
    assert Tenant.objects.filter(slug="demo").exists()


def test_it_exits_non_zero_from_the_command_line_with_debug_off(tmp_path):
    env = {
        **os.environ,
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FERNET_KEYS": secrets.token_urlsafe(32),
        # a database of its own: a missing guard must not seed the project's
        "DATABASE_URL": f"sqlite:///{tmp_path / 'guard.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "DEBUG is off" in result.stderr
