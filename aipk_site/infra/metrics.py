"""Per-provider and per-credential request metrics, in Prometheus and as JSON.

Recording is an in-memory (or, in multiprocess mode, an mmap) counter
increment: no database write, no network round trip, safe to call from async
code. That is why the figures live in prometheus-client's metrics and nowhere
else -- the JSON view reads the very same samples.

Several worker processes (``PROMETHEUS_MULTIPROC_DIR``) and how the figures
are read back -- merged across processes, average and p95 -- are in
metrics_export.py, which /metrics and /metrics.json use.

Labels never carry a secret: a provider's name, a credential as
``key:<id>`` / ``oauth:<id>``, a model id, a status, an error type.

Labels are bounded. Prometheus keeps one series per label combination for as
long as the process lives, so a label fed from what a client sends (a model id
it made up) grows /metrics and memory without end: 2,000 random model ids took
/metrics from 4 KB to 7.5 MB. So a model id becomes a label only when it is
*known* -- a provider's default model, a discovered model, a route candidate,
a priced model -- and a route alias only when a route has it; anything else is
counted under ``other``. The known sets are a snapshot (``KnownLabels``) that
the function named by ``settings.METRICS_KNOWN_LABELS`` reads from the
database (aipk_site/metric_labels.py joins both apps' values), off the request
path: loaded on first use, reloaded
``METRICS_LABELS_REFRESH_SECONDS`` after the last load or at once after a
change in this process (``metric_labels_forget``), and while a reload runs the
old snapshot keeps answering, so recording never waits for the database. As a
last guard every label holds at most ``METRICS_MAX_LABEL_VALUES`` distinct
values per process; values past that are counted under ``other`` too.

The gateway's own series (``aipk_gateway_*``, one observation per client
request, recorded by ``record_gateway_request`` from the gateway's single
accounting point) keep their label sets bounded: endpoint, route alias (or
"direct" / "unknown" -- never the model string a client sent), provider name,
status, and error or refusal codes that aipk itself chose.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import connections, transaction
from django.utils.module_loading import import_string
from prometheus_client import Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

# Seconds. Fine below 2 s (most chat calls), coarse above (long streams).
# fmt: off
LATENCY_BUCKETS = (
    0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5,
    2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
)
# fmt: on
STATUSES = ("success", "error", "cancelled")
NO_CREDENTIAL = "none"
OTHER = "other"  # a label value outside the known sets
_LABEL_TOKEN = re.compile(r"^[a-z0-9_]{1,48}$")
_CREDENTIAL_LABEL = re.compile(r"(key|oauth):\d+")

REQUESTS = Counter(
    "aipk_provider_requests",
    "Requests sent to a provider, by outcome.",
    ["provider", "credential", "model", "status"],
)
ERRORS = Counter(
    "aipk_provider_errors",
    "Failed provider requests, by error type.",
    ["provider", "credential", "model", "error_type"],
)
TOKENS = Counter(
    "aipk_provider_tokens",
    "Tokens reported (or estimated) by providers.",
    ["provider", "credential", "model", "kind"],
)
DURATION = Histogram(
    "aipk_provider_request_duration_seconds",
    "Duration of provider requests (a stream: until its last chunk).",
    ["provider", "credential", "model"],
    buckets=LATENCY_BUCKETS,
)
REFRESHES = Counter(
    "aipk_credential_token_refreshes",
    "OAuth token refreshes, by outcome.",
    ["provider", "credential", "outcome"],
)

# -- the gateway: one observation per client request ------------------------------------

# Seconds to the first token: most answers start well under 2 s.
TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
GATEWAY_STATUSES = ("success", "error", "refused", "cancelled")
DIRECT_ALIAS = "direct"  # a "<provider>/<model id>" request, no route alias
UNKNOWN = "unknown"  # not resolved (e.g. refused before routing): never the client's string
NO_PROVIDER = "none"
_ENDPOINT = re.compile(r"^[a-z0-9_.]{1,32}$")
_ALIAS_MAX = 100

GATEWAY_REQUESTS = Counter(
    "aipk_gateway_requests",
    "Gateway requests, by endpoint, route alias, provider and outcome.",
    ["endpoint", "alias", "provider", "status"],
)
GATEWAY_ERRORS = Counter(
    "aipk_gateway_errors",
    "Gateway requests that ended in an error, by error type.",
    ["endpoint", "provider", "error_type"],
)
GATEWAY_REFUSALS = Counter(
    "aipk_gateway_refusals",
    "Gateway requests refused before any provider was called, by limit or refusal code.",
    ["endpoint", "code"],
)
GATEWAY_CACHE_HITS = Counter(
    "aipk_gateway_cache_hits",
    "Gateway requests answered from the response cache.",
    ["endpoint", "alias"],
)
GATEWAY_CACHE_SAVED = Counter(
    "aipk_gateway_cache_saved_usd",
    "What the cache hits would have cost at provider prices (USD).",
    ["alias"],
)
GATEWAY_TOKENS = Counter(
    "aipk_gateway_tokens",
    "Tokens processed by providers for gateway requests (cache hits excluded).",
    ["provider", "alias", "kind"],
)
GATEWAY_COST = Counter(
    "aipk_gateway_cost_usd",
    "Cost of gateway requests at provider prices (USD).",
    ["provider", "alias"],
)
GATEWAY_DURATION = Histogram(
    "aipk_gateway_request_duration_seconds",
    "Gateway requests sent to a provider, until the reply's last byte (refusals and cache "
    "hits excluded).",
    ["endpoint", "provider"],
    buckets=LATENCY_BUCKETS,
)
GATEWAY_TTFT = Histogram(
    "aipk_gateway_ttft_seconds",
    "Time to the first token of gateway requests sent to a provider.",
    ["endpoint", "provider"],
    buckets=TTFT_BUCKETS,
)
ACTIVE_STREAMS = Gauge(
    "aipk_gateway_active_streams",
    "Gateway streams being relayed right now.",
    ["endpoint"],
    multiprocess_mode="livesum",
)
WS_CONNECTIONS = Gauge(
    "aipk_websocket_connections",
    "Open websocket connections.",
    multiprocess_mode="livesum",
)

# One INFO line per gateway request when settings.GATEWAY_REQUEST_LOG is on.
_request_log = logging.getLogger("aipk.gateway.requests")


# -- bounded labels: what may become a label value ---------------------------------------


@dataclass(frozen=True)
class KnownLabels:
    """The values a label may take: configured providers, their known models, route aliases.

    A label source (``settings.METRICS_KNOWN_LABELS``) returns one; providers_app's own
    (``services.provider_metrics.provider_known_labels``) knows providers, default and
    discovered models, and the project's adds route aliases, route candidates and priced
    models."""

    providers: frozenset[str] = frozenset()
    models: frozenset[tuple[str, str]] = frozenset()  # (provider name, model id)
    aliases: frozenset[str] = frozenset()

    def __or__(self, other: KnownLabels) -> KnownLabels:
        return KnownLabels(
            providers=self.providers | other.providers,
            models=self.models | other.models,
            aliases=self.aliases | other.aliases,
        )


class _LabelSnapshot:
    """The known labels of this process, reloaded off the request path.

    Recording only ever reads ``labels``. When the snapshot is stale, a caller on
    an event loop starts one background thread to reload it (and keeps using the
    old one meanwhile); a caller in a plain thread, where a query is allowed,
    reloads it in place."""

    RETRY_SECONDS = 5.0  # after a failed load (database away), before the next try

    def __init__(self) -> None:
        self.labels = KnownLabels()
        self._expires_at = 0.0
        self._generation = 0
        self._loading = False
        self._loader: threading.Thread | None = None
        self._lock = threading.Lock()

    def current(self) -> KnownLabels:
        if time.monotonic() >= self._expires_at:
            self._reload_soon()
        return self.labels

    def forget(self) -> None:
        with self._lock:
            self._generation += 1
            self._expires_at = 0.0

    def load(self) -> KnownLabels:
        """Read the known labels now (a sync context: it queries the database)."""
        with self._lock:
            generation = self._generation
        try:
            source: Callable[[], KnownLabels] = import_string(
                getattr(settings, "METRICS_KNOWN_LABELS", "aipk_site.infra.metrics.KnownLabels")
            )
            # a savepoint: a failed read must not break a transaction the caller is in
            with transaction.atomic():
                labels = source()
        except Exception:
            logger.warning("metrics: could not load the known label values", exc_info=True)
            with self._lock:
                self._expires_at = time.monotonic() + self.RETRY_SECONDS
            return self.labels
        ttl = float(getattr(settings, "METRICS_LABELS_REFRESH_SECONDS", 60.0))
        with self._lock:
            self.labels = labels
            # a change seen while loading leaves the snapshot stale, so it is read again
            if generation == self._generation:
                self._expires_at = time.monotonic() + ttl
        return labels

    def _reload_soon(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.load()  # no event loop in this thread: a query cannot block one
            return
        with self._lock:
            if self._loading:
                return
            loader = threading.Thread(
                target=self._load_in_thread, name="aipk-metric-labels", daemon=True
            )
            try:
                loader.start()
            except RuntimeError:  # no thread to be had (a process at its limit): next time
                logger.warning("metrics: could not start the label reload", exc_info=True)
                self._expires_at = time.monotonic() + self.RETRY_SECONDS
                return
            self._loading = True
            self._loader = loader

    def wait(self, timeout: float) -> None:
        """Wait for a background reload to finish (tests: before the database is emptied,
        which a read still running in that thread would otherwise lock or deadlock). Only
        a started thread is ever published, so a waiter never joins one before its start."""
        with self._lock:
            loader = self._loader
        if loader is not None:
            loader.join(timeout)

    def _load_in_thread(self) -> None:
        try:
            self.load()
        finally:
            connections.close_all()  # this thread's connections only
            with self._lock:
                self._loading = False


_snapshot = _LabelSnapshot()
_seen: dict[str, set[str]] = defaultdict(set)


def known_labels() -> KnownLabels:
    """This process's known label values; never queries the database on an event loop."""
    return _snapshot.current()


def metric_labels_wait(timeout: float = 10.0) -> None:
    """Block until a background reload of the known labels, if any, has finished."""
    _snapshot.wait(timeout)


def metric_labels_refresh() -> KnownLabels:
    """Reload the known label values now (sync code only: it queries the database)."""
    _snapshot.forget()
    return _snapshot.load()


def metric_labels_forget() -> None:
    """A provider, model, route or price changed: reload the known values on next use."""
    _snapshot.forget()


def _capped(label: str, value: str) -> str:
    """``value`` itself while ``label`` holds fewer than METRICS_MAX_LABEL_VALUES values."""
    seen = _seen[label]
    if value in seen:
        return value
    if len(seen) >= int(getattr(settings, "METRICS_MAX_LABEL_VALUES", 1000)):
        return OTHER
    seen.add(value)
    return value


# -- access: the optional bearer token of /metrics and /metrics.json -----------------------


def metrics_token() -> str:
    return str(getattr(settings, "METRICS_TOKEN", "") or "")


def metrics_authorized(authorization: str | None) -> bool:
    """Whether an Authorization header opens /metrics: always when no METRICS_TOKEN is set,
    else only "Bearer <METRICS_TOKEN>", compared in constant time."""
    token = metrics_token()
    if not token:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def check_metrics_token(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """`manage.py check --deploy` says so when /metrics is open to anyone who can reach it."""
    if metrics_token():
        return []
    return [
        checks.Warning(
            "METRICS_TOKEN is not set: /metrics and /metrics.json answer anyone who can reach "
            "them (request counts, providers, route aliases, costs).",
            hint="Set METRICS_TOKEN and give Prometheus the same value "
            "(authorization: credentials_file), or keep /metrics unreachable from outside.",
            id="aipk.W001",
        )
    ]


checks.register(check_metrics_token, checks.Tags.security, deploy=True)


# -- recording (the request path calls these) -----------------------------------------


def credential_label(credential: str | None) -> str:
    """A credential as "key:12" / "oauth:3": identifies it without revealing anything about it.

    providers_app/services/provider_metrics.py also takes the credential rows."""
    if credential is None or credential == "":
        return NO_CREDENTIAL
    text = str(credential)
    if _CREDENTIAL_LABEL.fullmatch(text):
        return text
    # Anything else could be a secret handed over by mistake: never export it.
    raise ValueError(
        'credential_id must be "key:<id>", "oauth:<id>", an ApiKey or an OAuthCredential'
    )


def _provider_label(provider: str) -> str:
    # a provider's name comes from its row, which an admin configured: a bounded set
    return _capped("provider", str(provider))


def _token(value: str | None, default: str, label: str = "error_type") -> str:
    value = (value or "").strip().lower()
    return _capped(label, value) if _LABEL_TOKEN.match(value) else default


def _model_label(provider: str, model: str) -> str:
    """The model id when it is a known model of ``provider``, else "other"."""
    if not model:
        return UNKNOWN
    if (provider, model) in known_labels().models:
        return _capped("model", model)
    return OTHER


def _alias_label(alias: str, provider: str | None) -> str:
    if not alias:
        return DIRECT_ALIAS if provider else UNKNOWN
    return _capped("alias", alias) if alias in known_labels().aliases else OTHER


class _LabelTable:
    """Label values worked out once per combination of what a caller passed, for the
    known labels they were worked out with (a reload of the known labels starts the
    table over). Checking and capping the values was about a third of recording a
    request, and a process sees a handful of combinations; clients choose model ids
    and aliases, so the table is bounded all the same."""

    MAX_ENTRIES = 4096

    def __init__(self, work_out: Callable[..., tuple[str, ...]]) -> None:
        self._work_out = work_out
        self._known: KnownLabels | None = None
        self._table: dict[tuple[Any, ...], tuple[str, ...]] = {}

    def get(self, *given: Any) -> tuple[str, ...]:
        known = known_labels()
        if known is not self._known:
            self._known, self._table = known, {}
        labels = self._table.get(given)
        if labels is None:
            labels = self._work_out(*given)
            if len(self._table) < self.MAX_ENTRIES:
                self._table[given] = labels
        return labels


def _work_out_request_labels(
    provider: str, credential_id: str | None, model: str
) -> tuple[str, str, str]:
    provider_label = _provider_label(provider)
    return (provider_label, credential_label(credential_id), _model_label(provider_label, model))


_request_labels = _LabelTable(_work_out_request_labels)


def record_request(
    *,
    provider: str,
    credential_id: str | None,
    model: str,
    status: str,
    latency_ms: float,
    error_type: str | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> None:
    """Count one upstream request. Cheap: in-process counters only.

    ``provider`` is the provider's name; provider_metrics.record_request takes the rows."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    labels = _request_labels.get(provider, credential_id, model)
    _child(REQUESTS, (*labels, status)).inc()
    if status == "error":
        ERRORS.labels(*labels, _token(error_type, "unknown_error")).inc()
    if prompt_tokens:
        _child(TOKENS, (*labels, "prompt")).inc(max(0, prompt_tokens))
    if completion_tokens:
        _child(TOKENS, (*labels, "completion")).inc(max(0, completion_tokens))
    _child(DURATION, labels).observe(max(0.0, latency_ms) / 1000.0)


# The label children the per-request record functions use, by metric and label values. ``.labels()``
# checks and copies its arguments and takes the metric's lock on every call; the values
# here are already checked and bounded strings, so a dict lookup finds the same child
# (prometheus-client keeps a child for the process's life too: never removed here).
_children: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _child(metric: Any, values: tuple[str, ...]) -> Any:
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def record_refresh(*, provider: str, credential_id: str | None, ok: bool) -> None:
    REFRESHES.labels(
        _provider_label(provider), credential_label(credential_id), "success" if ok else "failure"
    ).inc()


def _endpoint_label(endpoint: str) -> str:
    return _capped("endpoint", endpoint) if _ENDPOINT.match(endpoint or "") else OTHER


def _work_out_gateway_labels(
    endpoint: str, alias: str, provider: str | None
) -> tuple[str, str, str]:
    return (
        _endpoint_label(endpoint),
        _alias_label((alias or "")[:_ALIAS_MAX], provider),
        _capped("provider", provider) if provider else NO_PROVIDER,
    )


_gateway_labels = _LabelTable(_work_out_gateway_labels)


def record_gateway_request(
    *,
    endpoint: str,
    alias: str,
    provider: str | None,
    status: str,
    latency_ms: float,
    ttft_ms: float | None = None,
    error_type: str = "",
    cached: bool = False,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost_usd: float | Decimal = 0,
    cost_saved_usd: float | Decimal = 0,
) -> None:
    """Count one gateway request, once, whatever its outcome. In-process counters only.

    ``alias`` is the route alias the request resolved to, "" if it named
    "<provider>/<model>" or was refused before routing; ``provider`` the one that
    served it (None if none did). ``error_type`` is a kit error type or, for a
    refusal, the refusal code (``key_rpm``, ``model_not_found``, ...)."""
    status = str(status)
    if status not in GATEWAY_STATUSES:
        status = UNKNOWN
    endpoint, alias_label, provider_label = _gateway_labels.get(endpoint, alias, provider)
    _child(GATEWAY_REQUESTS, (endpoint, alias_label, provider_label, status)).inc()
    if status == "refused":
        GATEWAY_REFUSALS.labels(endpoint, _token(error_type, UNKNOWN, "code")).inc()
    elif status == "error":
        GATEWAY_ERRORS.labels(endpoint, provider_label, _token(error_type, "unknown_error")).inc()
    if cached:
        GATEWAY_CACHE_HITS.labels(endpoint, alias_label).inc()
        if cost_saved_usd:
            GATEWAY_CACHE_SAVED.labels(alias_label).inc(max(0.0, float(cost_saved_usd)))
    elif status != "refused" and provider:
        if prompt_tokens:
            _child(GATEWAY_TOKENS, (provider_label, alias_label, "prompt")).inc(
                max(0, prompt_tokens)
            )
        if completion_tokens:
            _child(GATEWAY_TOKENS, (provider_label, alias_label, "completion")).inc(
                max(0, completion_tokens)
            )
        if cost_usd:
            _child(GATEWAY_COST, (provider_label, alias_label)).inc(max(0.0, float(cost_usd)))
        _child(GATEWAY_DURATION, (endpoint, provider_label)).observe(max(0.0, latency_ms) / 1000)
        if ttft_ms is not None:
            _child(GATEWAY_TTFT, (endpoint, provider_label)).observe(max(0.0, ttft_ms) / 1000)
    if _request_log.isEnabledFor(logging.INFO):
        _request_log.info(
            "gateway request endpoint=%s status=%s",
            endpoint,
            status,
            extra={
                "endpoint": endpoint,
                "status": status,
                "alias": alias_label,
                "provider": provider_label,
                "error_type": error_type or None,
                "cached": cached,
                "latency_ms": round(latency_ms, 3),
                "ttft_ms": None if ttft_ms is None else round(ttft_ms, 3),
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "cost_usd": str(cost_usd),
            },
        )


def stream_started(endpoint: str) -> None:
    """A gateway stream began relaying: pair every call with ``stream_ended``."""
    ACTIVE_STREAMS.labels(_endpoint_label(endpoint)).inc()


def stream_ended(endpoint: str) -> None:
    ACTIVE_STREAMS.labels(_endpoint_label(endpoint)).dec()


def record_ws_connections(delta: int) -> None:
    """+1 when a websocket connection is accepted, -1 when it closes."""
    WS_CONNECTIONS.inc(delta)


# -- load shedding (aipk_site/gateway/overload.py) ---------------------------------------

GATEWAY_SHED = Counter(
    "aipk_gateway_shed_requests",
    "Gateway requests refused at once with 503 gateway_overloaded: the worker's event "
    "loop was behind (GATEWAY_MAX_QUEUE_DELAY_MS) or it was at GATEWAY_MAX_IN_FLIGHT.",
    # chat.completions, messages, models or messages.count_tokens: the edge's own
    # names, never client input
    ["endpoint"],
)
EVENT_LOOP_LAG = Gauge(
    "aipk_event_loop_lag_seconds",
    "How late the worker's event loop last ran a timer: the wait a new request's work "
    "queues behind; load shedding acts on it (GATEWAY_MAX_QUEUE_DELAY_MS).",
    # across workers: the worst one
    multiprocess_mode="livemax",
)
