"""Tenant management tests use the shared cast (tests/cast.py)."""

from tests.cast import *  # noqa: F403 -- the shared cast
