"""What every adapter shares: HTTP plumbing, timeouts, error mapping and model listing.

An adapter is small capabilities on one object -- identity and default model,
model listing, chat (plain and streamed), health check and authentication
state -- see ``capabilities.py``. Subclasses supply only the wire protocol:
how to build a request, how to read a reply, a stream decoder and an error
classifier. Everything that touches the network lives here once, so every
provider gets the same timeouts, error mapping and early-close behaviour.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any, ClassVar

import httpx
import orjson

from .. import embeddings, errors, fields, media
from ..embeddings import EmbeddingRequest, EmbeddingResponse
from ..http_client import body_reader, pooled_client, send
from ..ratelimit import parse_rate_limit_headers, parse_retry_after
from ..types import (
    AuthState,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    HealthStatus,
    ModelInfo,
    Usage,
)
from .config import (
    LISTING_DEADLINE_SECONDS,
    POOL_WAIT_SECONDS,
    Deadlines,
    ProviderConfig,
    secret_hint,
)
from .model_families import family_takes_media
from .streaming import ChatStream, ReadDeadline, StreamDecoder, StreamReader

# httpx parses (and checks character by character) every URL string it is given, ~5 % of
# an upstream call's CPU; an httpx.URL is taken as it is. A handful of distinct URLs per
# provider, so the table stays small; it is emptied if it ever grows past its size.
_PARSED_URLS: dict[str, httpx.URL] = {}
_PARSED_URLS_SIZE = 4096


def _parsed_url(url: str) -> httpx.URL:
    parsed = _PARSED_URLS.get(url)
    if parsed is None:
        if len(_PARSED_URLS) >= _PARSED_URLS_SIZE:
            _PARSED_URLS.clear()
        parsed = _PARSED_URLS[url] = httpx.URL(url)
    return parsed


def _json_body(value: Any) -> bytes:
    """A request body as httpx's ``json=`` writes it (compact, UTF-8, no NaN), by orjson;
    json for what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()


def _json_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "content-type": "application/json"}


# the configuration and stream types live in their own modules; importers of this one
# keep finding them here
__all__ = [
    "BaseAdapter",
    "ChatStream",
    "Deadlines",
    "ProviderConfig",
    "StreamDecoder",
    "StreamReader",
    "catalog_model",
    "estimate_usage",
    "secret_hint",
]


class BaseAdapter:
    provider_type: ClassVar[str]
    default_base_url: ClassVar[str]
    default_model_id: ClassVar[str]
    default_deadlines: ClassVar[Deadlines] = Deadlines()
    # which header parser in ratelimit/headers.py reads this provider's limits
    rate_limit_style: ClassVar[str] = "none"
    # offered when the provider's model list cannot be fetched
    static_models: ClassVar[tuple[ModelInfo, ...]] = ()
    # the registry's provider type, set by create_adapter (see rules_type)
    _rules_type: str | None = None

    def __init__(
        self,
        config: ProviderConfig | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        limiter: Any = None,
    ) -> None:
        self.config = config or ProviderConfig()
        self.base_url = (self.config.base_url or self.default_base_url).rstrip("/")
        deadlines = self.config.deadlines or self.default_deadlines
        if self.config.timeout:
            deadlines = replace(deadlines, total=self.config.timeout)
        self.deadlines = deadlines
        # One pooled client per provider is shared by callers that pass it in;
        # otherwise the adapter owns its own (the same aiohttp-backed kind) and closes
        # it in aclose().
        self._owns_client = client is None
        self._client = client or pooled_client(timeout=self._timeout())
        # Client-side limiter for providers that send no rate-limit headers (TokenBucket).
        self._limiter = limiter

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config.name or self.provider_type} {self.base_url}>"

    # -- identity ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name or self.provider_type

    @property
    def default_model(self) -> str:
        return self.config.default_model or self.default_model_id

    # -- authentication state ---------------------------------------------------------
    def auth_state(self) -> AuthState:
        if self.config.access_token:
            return AuthState(
                method="oauth",
                configured=True,
                hint=secret_hint(self.config.access_token),
                expires_at=self.config.access_token_expires_at,
            )
        if self.config.api_key:
            return AuthState(
                method="api_key", configured=True, hint=secret_hint(self.config.api_key)
            )
        return AuthState(method="none", configured=False)

    def auth_headers(self) -> dict[str, str]:
        """Bearer by default; providers with their own header override this."""
        token = self.config.access_token or self.config.api_key
        return {"Authorization": f"Bearer {token}"} if token else {}

    def request_headers(self) -> dict[str, str]:
        return {**self.config.extra_headers, **self.auth_headers()}

    # -- request fields: kit/fields.py rules them ---------------------------------------
    @property
    def rules_type(self) -> str:
        """The provider type whose column of the field table applies: the registry's type
        (``create_adapter`` sets it, so an OpenAI-compatible endpoint is not taken for
        OpenAI itself), else the adapter's own."""
        return self._rules_type or self.provider_type

    def check_fields(self, request: ChatRequest) -> None:
        """Refuse, before anything is sent, every field this provider cannot honour."""
        fields.check(
            request,
            self.rules_type,
            self.name,
            extra=self.refuse_value if self.refined_fields else None,
            refined=self.refined_fields,
        )

    # the fields (kit names) whose values ``refuse_value`` judges; only they are shown it
    refined_fields: tuple[str, ...] = ()

    def refuse_value(self, row: fields.FieldRule, value: Any) -> str | None:
        """Why this provider cannot take ``value`` of a field its rule allows (None: it
        can). Subclasses refine, naming the fields in ``refined_fields``: Anthropic takes
        json_schema but not json_object."""
        return None

    # -- the wire protocol: what subclasses supply ----------------------------------
    def chat_url(
        self, request: ChatRequest, *, stream: bool
    ) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def chat_body(
        self, request: ChatRequest, *, stream: bool
    ) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def parse_chat(
        self, body: dict[str, Any], request: ChatRequest
    ) -> ChatResponse:  # pragma: no cover
        raise NotImplementedError

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:  # pragma: no cover - interface
        raise NotImplementedError

    def classify_error(
        self, status: int, body: Any, headers: httpx.Headers | dict[str, str]
    ) -> errors.ProviderError:
        """Map a failed reply to a typed error; subclasses refine from their error body."""
        cls = errors.class_for_status(status)
        return cls(
            self.scrub(_body_message(body) or f"HTTP {status}"),
            provider=self.name,
            status_code=status,
        )

    def models_url(self) -> str:
        return f"{self.base_url}/models"

    def model_from_listing(self, model_id: str, **listed: Any) -> ModelInfo:
        """A model from the provider's list, completed from the static catalogue
        (prices, limits) wherever the provider's own list is silent."""
        known = next((m for m in self.static_models if m.id == model_id), None)
        values = {f: getattr(known, f) for f in _CATALOGUE_FIELDS} if known else {}
        values.update({k: v for k, v in listed.items() if v is not None})
        values.setdefault("name", model_id)
        if values.get("supports_vision") is None:  # the provider's list did not say
            values["supports_vision"] = self.takes_media(model_id)
        return ModelInfo(id=model_id, provider=self.provider_type, **values)

    @classmethod
    def takes_media(cls, model_id: str) -> bool | None:
        """Whether ``model_id`` takes image, document or audio input: the static
        catalogue's word where it lists the model, else its family's
        (``model_families``), else None -- unknown, and a request is tried."""
        known = next((m for m in cls.static_models if m.id == model_id), None)
        if known is not None and known.supports_vision is not None:
            return known.supports_vision
        return family_takes_media(model_id)

    def parse_models(self, body: Any) -> list[ModelInfo]:  # pragma: no cover - interface
        raise NotImplementedError

    # -- chat --------------------------------------------------------------------
    async def prepare_request(self, request: ChatRequest) -> ChatRequest:
        """The request as this provider can take it, before ``chat_body``: the async
        step of translation (a provider that cannot fetch media URLs gets the bytes,
        kit/media.py). Default: refuse media for a model known to be text-only
        (``takes_media``: by the catalogue or the model's family, so a model found only
        by discovery is judged too); subclasses call this first."""
        if any(m.parts for m in request.messages) and self.takes_media(request.model) is False:
            raise errors.InvalidRequestError(
                f"model {request.model!r} of {self.name} does not take image, document "
                "or audio input",
                provider=self.name,
                code="model_not_multimodal",
                status_code=400,
            )
        return request

    def request_deadline(self) -> float:
        """A new request's absolute deadline (``time.monotonic()`` clock)."""
        return time.monotonic() + self.deadlines.total

    async def _begin(
        self, request: ChatRequest, deadline: float | None
    ) -> tuple[ChatRequest, float]:
        """What every chat call does before it sends, whole or streamed: refuse the fields
        this provider cannot honour, take the request's deadline, wait for the pacing, and
        make the request one this provider can take (``prepare_request``)."""
        self.check_fields(request)
        deadline = self.request_deadline() if deadline is None else deadline
        await self._throttle(deadline)
        return await self.prepare_request(request), deadline

    async def chat(self, request: ChatRequest, *, deadline: float | None = None) -> ChatResponse:
        """One whole reply. ``deadline`` (``time.monotonic()`` clock) is the request's
        budget when the caller retries or fails over; default: ``deadlines.total`` from now."""
        request, deadline = await self._begin(request, deadline)
        response = await self._send(
            "POST",
            self.chat_url(request, stream=False),
            json=self.chat_body(request, stream=False),
            deadline=deadline,
        )
        body = self._json(response)
        result = self.parse_chat(body, request)
        result.rate_limit = self._rate_limit(response)
        if not result.usage.prompt_tokens and not result.usage.completion_tokens:
            result.usage = estimate_usage(
                request,
                len(result.text) + sum(len(c.name) + len(c.arguments) for c in result.tool_calls),
            )
        return result

    # -- embeddings ------------------------------------------------------------------
    def embeddings_wire(self) -> embeddings.EmbeddingsWire:
        """This provider type's embeddings wire (``kit/embeddings.py``); raises the kit's
        ``InvalidRequestError`` (code ``embeddings_not_supported``) for one that has none.
        Gemini's Code Assist route (OAuth + project) has no embeddings method."""
        code_assist = bool(getattr(self, "uses_cloudcode", False))
        return embeddings.wire_for(self.provider_type, self.name, code_assist=code_assist)

    async def embed(
        self, request: EmbeddingRequest, *, deadline: float | None = None
    ) -> EmbeddingResponse:
        """One vector per input, through the same send path (and error classes) as chat.
        Bad input is refused before anything is sent; ``deadline`` as in ``chat``."""
        wire = self.embeddings_wire()
        embeddings.validate(request, wire, self.name)
        deadline = self.request_deadline() if deadline is None else deadline
        await self._throttle(deadline)
        try:
            response = await self._send(
                "POST",
                wire.url(self.base_url, request.model),
                json=wire.body(request),
                deadline=deadline,
            )
        except errors.PermissionDeniedError as exc:
            # OpenAI refuses a chat model on /embeddings with a bare 403 ("not allowed to
            # generate embeddings from this model"): a fact about that model, which must
            # never count towards disabling the credential.
            if exc.scope == "model":
                exc.model_specific = True
            raise
        result = wire.parse(self._json(response), request, self.name)
        result.rate_limit = self._rate_limit(response)
        return result

    def stream(self, request: ChatRequest, *, deadline: float | None = None) -> ChatStream:
        return ChatStream(self, request, deadline)

    def stream_reader(self, request: ChatRequest) -> StreamReader:
        return StreamReader(self.stream_decoder(request))

    async def _stream_chunks(
        self, request: ChatRequest, stream: ChatStream, deadline: float | None
    ) -> AsyncGenerator[ChatChunk, None]:
        """The stream under its deadlines: response headers and the first body byte within
        ``first_byte``, each later read within ``idle``, all of it within the total budget.
        Each wait is bounded on its own (never across a ``yield``), so a slow consumer is
        not mistaken for a slow provider."""
        request, deadline = await self._begin(request, deadline)
        url = self.chat_url(request, stream=True)
        body = self.chat_body(request, stream=True)
        reader = self.stream_reader(request)
        limits = self.deadlines
        response: httpx.Response | None = None
        waits: ReadDeadline | None = None
        try:
            started = time.monotonic()
            wait, phase = _bounded(limits.first_byte, deadline, "headers")
            try:
                async with asyncio.timeout(wait):
                    response = await send(
                        self._client,
                        "POST",
                        _parsed_url(url),
                        content=_json_body(body),
                        headers=_json_headers(self.request_headers()),
                        timeout=self._timeout(wait),
                        stream=True,
                    )
                    stream.rate_limit = self._rate_limit(response)
                    if response.status_code >= 400:
                        await response.aread()
                        raise self._error_from(response)
            except TimeoutError as exc:
                raise self._timed_out(phase, wait) from exc
            incoming = body_reader(response)
            wait, phase = _bounded(
                started + limits.first_byte - time.monotonic(), deadline, "first_byte"
            )
            while True:
                # Bytes that have already arrived, or the body's end, are taken without a
                # wait (and without the cost of a deadline around one); only an actual
                # wait is bounded.
                raw = incoming.buffered() if wait > 0 else b""
                if not raw:
                    if incoming.ended():
                        break
                    if waits is None:
                        waits = ReadDeadline()
                    try:
                        raw = await waits.read(incoming.read, wait)
                    except TimeoutError as exc:
                        raise self._timed_out(phase, wait) from exc
                    if not raw:
                        break
                for chunk in reader.feed(raw):
                    yield chunk
                wait, phase = _bounded(limits.idle, deadline, "idle")
            for chunk in reader.close():
                yield chunk
        except httpx.PoolTimeout as exc:
            raise _congested(self.name) from exc
        except httpx.ConnectTimeout as exc:
            raise self._timed_out("connect", limits.connect) from exc
        except httpx.TimeoutException as exc:
            raise self._timed_out("first_byte", limits.first_byte) from exc
        except httpx.TransportError as exc:
            raise errors.NetworkError(
                f"{self.name}: connection failed ({type(exc).__name__})", provider=self.name
            ) from exc
        finally:
            if waits is not None:
                waits.close()
            if response is not None:
                await response.aclose()
        if not reader.saw_usage:
            yield ChatChunk(usage=estimate_usage(request, reader.completion_chars))

    # -- models and health --------------------------------------------------------
    async def fetch_models(self) -> list[ModelInfo]:
        """The provider's own list; raises a ProviderError when it cannot be had."""
        response = await self._send("GET", self.models_url(), deadline=self._listing_deadline())
        return self.parse_models(self._json(response))

    async def list_models(self) -> list[ModelInfo]:
        """Fetched and normalised, or the static fallback list when the fetch fails."""
        try:
            fetched = await self.fetch_models()
        except errors.ProviderError:
            return [_as_static(m) for m in self.static_models]
        return fetched or [_as_static(m) for m in self.static_models]

    async def health_check(self) -> HealthStatus:
        started = time.perf_counter()
        try:
            await self.fetch_models()
        except errors.ProviderError as exc:
            return HealthStatus(
                healthy=False,
                latency_ms=(time.perf_counter() - started) * 1000,
                error_type=exc.type,
                detail=exc.message,
            )
        return HealthStatus(healthy=True, latency_ms=(time.perf_counter() - started) * 1000)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- plumbing --------------------------------------------------------------------
    def _timeout(self, wait: float | None = None) -> httpx.Timeout:
        """httpx's own limits: connect and pool waits; reads are bounded by the deadlines
        around each wait (asyncio), which also cover the time to the response headers."""
        wait = self.deadlines.first_byte if wait is None else wait
        return httpx.Timeout(
            connect=min(self.deadlines.connect, wait),
            read=None,
            write=wait,
            # at most half the budget waiting on aipk's own pool, so congestion is told
            # apart from the deadline around the whole wait (which would fire at ``wait``)
            pool=min(POOL_WAIT_SECONDS, wait / 2),
        )

    def _listing_deadline(self) -> float:
        return time.monotonic() + min(LISTING_DEADLINE_SECONDS, self.deadlines.total)

    def _timed_out(self, phase: errors.TimeoutPhase, seconds: float) -> errors.TimeoutError:
        if phase == "total":
            message = f"{self.name}: the request's total deadline passed (waited {seconds:.3g}s)"
        else:
            what = {
                "connect": "no connection",
                "headers": "no response headers",
                "first_byte": "no reply",
                "idle": "no new chunk",
            }.get(phase, "no reply")
            deadline = phase.replace("_", "-")
            message = f"{self.name}: {what} within {seconds:.3g}s ({deadline} deadline)"
        return errors.TimeoutError(message, provider=self.name, phase=phase)

    async def _throttle(self, deadline: float) -> None:
        if self._limiter is not None:
            await self._limiter.acquire(1, max_wait=max(0.0, deadline - time.monotonic()))

    async def _send(
        self, method: str, url: str, *, json: Any = None, deadline: float | None = None
    ) -> httpx.Response:
        """One whole request and reply within ``first_byte`` (bounded by ``deadline``)."""
        deadline = self.request_deadline() if deadline is None else deadline
        wait, phase = _bounded(self.deadlines.first_byte, deadline, "first_byte")
        try:
            async with asyncio.timeout(wait):
                headers = self.request_headers()
                response = await send(
                    self._client,
                    method,
                    _parsed_url(url),
                    content=None if json is None else _json_body(json),
                    headers=headers if json is None else _json_headers(headers),
                    timeout=self._timeout(wait),
                    stream=False,
                )
        except TimeoutError as exc:
            raise self._timed_out(phase, wait) from exc
        except httpx.PoolTimeout as exc:
            raise _congested(self.name) from exc
        except httpx.ConnectTimeout as exc:
            raise self._timed_out("connect", self.deadlines.connect) from exc
        except httpx.TimeoutException as exc:
            raise self._timed_out(phase, wait) from exc
        except httpx.TransportError as exc:
            raise errors.NetworkError(
                f"{self.name}: connection failed ({type(exc).__name__})", provider=self.name
            ) from exc
        if response.status_code >= 400:
            raise self._error_from(response)
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            pass  # json's reading: what it accepts beyond orjson (NaN), and its errors
        try:
            return response.json()
        except ValueError as exc:
            raise errors.ProtocolError(
                f"{self.name}: reply is not JSON", provider=self.name
            ) from exc

    def _error_from(self, response: httpx.Response) -> errors.ProviderError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:500]
        error = self.classify_error(response.status_code, body, response.headers)
        error.status_code = error.status_code or response.status_code
        if error.retry_after is None:
            error.retry_after = parse_retry_after(response.headers)
        return error

    def _rate_limit(self, response: httpx.Response) -> Any:
        return parse_rate_limit_headers(self.rate_limit_style, response.headers)

    def scrub(self, message: str) -> str:
        """Remove our own secrets from provider text before it travels further."""
        for secret in self.config.secrets():
            if secret in message:
                message = message.replace(secret, secret_hint(secret))
        return message

    def decode_json(self, data: str) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # json's reading: what it accepts beyond orjson (NaN), and its errors
        try:
            return json.loads(data)
        except ValueError as exc:
            raise errors.ProtocolError(
                f"{self.name}: malformed stream chunk", provider=self.name
            ) from exc


_CATALOGUE_FIELDS = (
    "name",
    "context_window",
    "max_output_tokens",
    "input_price_per_million",
    "output_price_per_million",
)


def catalog_model(
    provider: str,
    model_id: str,
    name: str,
    *,
    context: int,
    output: int | None = None,
    price_in: float | None = None,
    price_out: float | None = None,
    vision: bool | None = None,
) -> ModelInfo:
    """An entry of an adapter's static catalogue (USD per million tokens; ``vision``:
    whether the model takes media, None when the catalogue does not say)."""
    return ModelInfo(
        id=model_id,
        name=name,
        provider=provider,
        context_window=context,
        max_output_tokens=output,
        input_price_per_million=price_in,
        output_price_per_million=price_out,
        supports_vision=vision,
    )


def _body_message(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(message := error.get("message"), str):
            return message
        if isinstance(message := body.get("message"), str):
            return message
    if isinstance(body, str):
        return body[:300]
    return ""


def _as_static(model: ModelInfo) -> ModelInfo:
    return ModelInfo(**{**{f: getattr(model, f) for f in model.__slots__}, "source": "static"})


def _bounded(
    seconds: float, deadline: float, phase: errors.TimeoutPhase
) -> tuple[float, errors.TimeoutPhase]:
    """The wait allowed for one step: its own limit, or what is left of the request's
    budget when that is shorter (then a timeout is the ``total`` deadline's)."""
    left = deadline - time.monotonic()
    if left <= seconds:
        return max(0.0, left), "total"
    return max(0.0, seconds), phase


def _congested(provider: str) -> errors.LocalCongestionError:
    return errors.LocalCongestionError(
        f"{provider}: no free connection in aipk's pool in time", provider=provider
    )


def estimate_usage(request: ChatRequest, completion_chars: int) -> Usage:
    """Rough token count (4 characters a token) for providers that report none.

    Flagged ``estimated`` so billing can tell a guess from a provider's figure.
    """
    prompt_chars = sum(len(m.content or "") for m in request.messages)
    media_allowance = sum(media.media_tokens(p) for m in request.messages for p in m.media())
    return Usage(
        prompt_tokens=max(1, prompt_chars // 4) + media_allowance,
        completion_tokens=max(1, completion_chars // 4) if completion_chars else 0,
        estimated=True,
    )
