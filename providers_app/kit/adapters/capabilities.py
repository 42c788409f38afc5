"""The kit's interface, split into small capabilities.

Callers depend on the narrowest one they need (the health checker only on
``HealthChecking``, the model catalogue only on ``ModelListing``), so a
provider that lacks a capability can still serve the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..types import AuthState, ChatRequest, ChatResponse, HealthStatus, ModelInfo

if TYPE_CHECKING:
    from .base import ChatStream


@runtime_checkable
class Identity(Protocol):
    provider_type: str

    @property
    def name(self) -> str: ...

    @property
    def default_model(self) -> str: ...


@runtime_checkable
class ModelListing(Protocol):
    async def list_models(self) -> list[ModelInfo]: ...


@runtime_checkable
class Chatting(Protocol):
    async def chat(
        self, request: ChatRequest, *, deadline: float | None = None
    ) -> ChatResponse: ...

    def stream(self, request: ChatRequest, *, deadline: float | None = None) -> ChatStream: ...


@runtime_checkable
class HealthChecking(Protocol):
    async def health_check(self) -> HealthStatus: ...


@runtime_checkable
class Authenticated(Protocol):
    def auth_state(self) -> AuthState: ...


class Provider(Identity, ModelListing, Chatting, HealthChecking, Authenticated, Protocol):
    """Everything at once: what every adapter in ``adapters/`` implements."""
