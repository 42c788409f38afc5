"""Cerebras: OpenAI-compatible, with per-day request and per-minute token windows
in its rate-limit headers (the "cerebras" header style)."""

from __future__ import annotations

from ..adapters.cerebras import CerebrasAdapter
from .profile import ProviderProfile

PROFILE = ProviderProfile(provider_type="cerebras", label="Cerebras", adapter=CerebrasAdapter)
