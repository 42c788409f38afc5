"""Django's ModelBackend with one switch: LOCAL_PASSWORDS_ENABLED=false refuses every
password, whatever form or script asks, so single sign-on is the only way in. Sessions
started by SSO still resolve their user through ``get_user``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend


class LocalPasswordBackend(ModelBackend):
    def authenticate(self, request: Any, username: Any = None, password: Any = None, **kwargs: Any):
        if not settings.LOCAL_PASSWORDS_ENABLED:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
