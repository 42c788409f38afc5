"""Console tests (Django's test client) share the tenant tests' cast (tests/cast.py):
``staff``, Acme's ``owner``, ``tenant_admin``, ``teammate`` and ``viewer``, and
``outsider`` (owner of Globex), with ``client_as(user)`` for a signed-in client."""

from tests.cast import *  # noqa: F403 -- the shared cast
