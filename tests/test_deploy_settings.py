"""Settings a deployment relies on: secrets read from files (NAME_FILE, as compose.yaml
and Kubernetes mount them) and DJANGO_SECRET_KEY_FALLBACKS for rotating the secret key.
Each case is a fresh child process: settings are read once, at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

SHOW = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'key': s.SECRET_KEY, 'fallbacks': s.SECRET_KEY_FALLBACKS, "
    "'fernet': s.FERNET_KEYS, 'db': s.DATABASES['default']['NAME']}))"
)


def settings_with(**env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    for name in ("DJANGO_SECRET_KEY", "FERNET_KEYS", "DATABASE_URL", "REDIS_URL"):
        base.pop(name, None)
    base.update(DJANGO_SETTINGS_MODULE="aipk_site.settings", DEBUG="false", **env)
    done = subprocess.run(
        [sys.executable, "-c", SHOW], cwd=PROJECT, env=base, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_it_reads_secrets_from_the_files_named_by_file_variables(tmp_path):
    (tmp_path / "key").write_text("key-from-a-file\n")  # as `echo`/`print` write it
    (tmp_path / "fernet").write_text("new-fernet,old-fernet\n")
    (tmp_path / "db").write_text(f"sqlite:///{tmp_path / 'aipk.sqlite3'}\n")

    seen = settings_with(
        DJANGO_SECRET_KEY_FILE=str(tmp_path / "key"),
        FERNET_KEYS_FILE=str(tmp_path / "fernet"),
        DATABASE_URL_FILE=str(tmp_path / "db"),
    )

    assert seen["key"] == "key-from-a-file"
    assert seen["fernet"] == ["new-fernet", "old-fernet"]
    assert seen["db"] == str(tmp_path / "aipk.sqlite3")


def test_a_file_variable_wins_over_the_plain_one(tmp_path):
    # django-environ's FileAwareEnv: NAME_FILE, when set, is read instead of NAME
    (tmp_path / "key").write_text("from-the-file")
    seen = settings_with(
        DJANGO_SECRET_KEY="from-the-variable",
        DJANGO_SECRET_KEY_FILE=str(tmp_path / "key"),
        FERNET_KEYS="f",
    )
    assert seen["key"] == "from-the-file"


def test_it_takes_the_previous_secret_keys_as_fallbacks():
    seen = settings_with(
        DJANGO_SECRET_KEY="new-key",
        DJANGO_SECRET_KEY_FALLBACKS="old-key, older-key",
        FERNET_KEYS="f",
    )
    assert seen["key"] == "new-key"
    assert seen["fallbacks"] == ["old-key", "older-key"]
    assert settings_with(DJANGO_SECRET_KEY="k", FERNET_KEYS="f")["fallbacks"] == []


def test_a_value_signed_with_the_previous_key_still_verifies_during_a_rotation():
    sign = (
        "import django; django.setup(); from django.core import signing; "
        "print(signing.dumps('session-ish'))"
    )
    check = (
        "import sys, django; django.setup(); from django.core import signing; "
        "print(signing.loads(sys.argv[1]))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    base.update(DJANGO_SETTINGS_MODULE="aipk_site.settings", DEBUG="false", FERNET_KEYS="f")

    def run(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=PROJECT,
            env={**base, **env},
            capture_output=True,
            text=True,
        )

    token = run(sign, DJANGO_SECRET_KEY="old-key").stdout.strip()
    rotated = run(check, token, DJANGO_SECRET_KEY="new-key", DJANGO_SECRET_KEY_FALLBACKS="old-key")
    assert rotated.stdout.strip() == "session-ish", rotated.stderr[-2000:]
    # once the fallback is dropped, the old signature is refused
    dropped = run(check, token, DJANGO_SECRET_KEY="new-key")
    assert dropped.returncode != 0 and "BadSignature" in dropped.stderr
