"""Per-provider and per-credential request metrics, in Prometheus and as JSON.

Recording is an in-memory (or, in multiprocess mode, an mmap) counter
increment: no database write, no network round trip, safe to call from async
code. That is why the figures live in prometheus-client's metrics and nowhere
else -- the JSON view reads the very same samples.

Several worker processes: when the environment variable
``PROMETHEUS_MULTIPROC_DIR`` is set *before the process starts* (prometheus-
client decides at import time), every process writes its samples to files in
that directory and a read merges all of them (``MultiProcessCollector``). The
directory must be emptied before the server and workers start. Without it
(embedded mode, one process) the default registry is used. docs/MONITORING.md
has the operator's side.

Average latency is sum / count of the duration histogram. p95 is estimated
from the histogram's buckets by linear interpolation inside the bucket that
holds the 95th percentile -- what Prometheus' ``histogram_quantile`` does --
so it is exact across processes and costs nothing extra per request, at the
price of bucket resolution (see LATENCY_BUCKETS).

Labels never carry a secret: a provider's name, a credential as
``key:<id>`` / ``oauth:<id>``, a model id, a status, an error type.

Labels are bounded. Prometheus keeps one series per label combination for as
long as the process lives, so a label fed from what a client sends (a model id
it made up) grows /metrics and memory without end: 2,000 random model ids took
/metrics from 4 KB to 7.5 MB. So a model id becomes a label only when it is
*known* -- a provider's default model, a discovered model, a route candidate,
a priced model -- and a route alias only when a route has it; anything else is
counted under ``other``. The known sets are a snapshot (``KnownLabels``) read
from the database off the request path: loaded on first use, reloaded
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
import math
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import connections, transaction
from django.utils.module_loading import import_string
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from providers_app.models import ApiKey, DiscoveredModel, OAuthCredential, Provider

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
_GATEWAY_METRICS = (
    GATEWAY_REQUESTS,
    GATEWAY_ERRORS,
    GATEWAY_REFUSALS,
    GATEWAY_CACHE_HITS,
    GATEWAY_CACHE_SAVED,
    GATEWAY_TOKENS,
    GATEWAY_COST,
    GATEWAY_DURATION,
    GATEWAY_TTFT,
    ACTIVE_STREAMS,
    WS_CONNECTIONS,
)
_GATEWAY_PREFIXES = ("aipk_gateway_", "aipk_websocket_")
_OWN_METRICS = (REQUESTS, ERRORS, TOKENS, DURATION, REFRESHES, *_GATEWAY_METRICS)
_OWN_PREFIXES = ("aipk_provider_", "aipk_credential_", *_GATEWAY_PREFIXES)

# One INFO line per gateway request when settings.GATEWAY_REQUEST_LOG is on.
_request_log = logging.getLogger("aipk.gateway.requests")


# -- bounded labels: what may become a label value ---------------------------------------


@dataclass(frozen=True)
class KnownLabels:
    """The values a label may take: configured providers, their known models, route aliases.

    A label source (``settings.METRICS_KNOWN_LABELS``) returns one; providers_app's own
    (``provider_known_labels``) knows providers, default and discovered models, and the
    project's adds route aliases, route candidates and priced models."""

    providers: frozenset[str] = frozenset()
    models: frozenset[tuple[str, str]] = frozenset()  # (provider name, model id)
    aliases: frozenset[str] = frozenset()

    def __or__(self, other: KnownLabels) -> KnownLabels:
        return KnownLabels(
            providers=self.providers | other.providers,
            models=self.models | other.models,
            aliases=self.aliases | other.aliases,
        )


def provider_known_labels() -> KnownLabels:
    """Providers, each one's default model and its discovered models (two queries)."""
    providers = list(Provider.objects.values_list("name", "default_model"))
    models = {(name, model) for name, model in providers if model}
    models.update(DiscoveredModel.objects.values_list("provider__name", "model_id"))
    return KnownLabels(providers=frozenset(name for name, _ in providers), models=frozenset(models))


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
            source = getattr(
                settings,
                "METRICS_KNOWN_LABELS",
                "aipk_site.infra.metrics.provider_known_labels",
            )
            # a savepoint: a failed read must not break a transaction the caller is in
            with transaction.atomic():
                labels: KnownLabels = import_string(source)()
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
            self._loading = True
            self._loader = threading.Thread(
                target=self._load_in_thread, name="aipk-metric-labels", daemon=True
            )
            self._loader.start()

    def wait(self, timeout: float) -> None:
        """Wait for a background reload to finish (tests: before the database is emptied,
        which a read still running in that thread would otherwise lock or deadlock)."""
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


@checks.register(checks.Tags.security, deploy=True)
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


# -- recording (the request path calls these) -----------------------------------------


def credential_label(credential: ApiKey | OAuthCredential | str | None) -> str:
    """A credential as "key:12" / "oauth:3": identifies it without revealing anything about it."""
    if credential is None or credential == "":
        return NO_CREDENTIAL
    if isinstance(credential, ApiKey):
        return f"key:{credential.pk}"
    if isinstance(credential, OAuthCredential):
        return f"oauth:{credential.pk}"
    text = str(credential)
    if re.fullmatch(r"(key|oauth):\d+", text):
        return text
    # Anything else could be a secret handed over by mistake: never export it.
    raise ValueError(
        'credential_id must be "key:<id>", "oauth:<id>", an ApiKey or an OAuthCredential'
    )


def _provider_label(provider: Provider | str) -> str:
    # a provider's name comes from its row, which an admin configured: a bounded set
    return _capped("provider", provider.name if isinstance(provider, Provider) else str(provider))


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


def record_request(
    *,
    provider: Provider | str,
    credential_id: ApiKey | OAuthCredential | str | None,
    model: str,
    status: str,
    latency_ms: float,
    error_type: str | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> None:
    """Count one upstream request. Cheap: in-process counters only."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    provider_label = _provider_label(provider)
    labels = (provider_label, credential_label(credential_id), _model_label(provider_label, model))
    REQUESTS.labels(*labels, status).inc()
    if status == "error":
        ERRORS.labels(*labels, _token(error_type, "unknown_error")).inc()
    if prompt_tokens:
        TOKENS.labels(*labels, "prompt").inc(max(0, prompt_tokens))
    if completion_tokens:
        TOKENS.labels(*labels, "completion").inc(max(0, completion_tokens))
    DURATION.labels(*labels).observe(max(0.0, latency_ms) / 1000.0)


def record_refresh(
    *, provider: Provider | str, credential_id: OAuthCredential | str, ok: bool
) -> None:
    REFRESHES.labels(
        _provider_label(provider), credential_label(credential_id), "success" if ok else "failure"
    ).inc()


def _endpoint_label(endpoint: str) -> str:
    return _capped("endpoint", endpoint) if _ENDPOINT.match(endpoint or "") else OTHER


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
    endpoint = _endpoint_label(endpoint)
    provider_label = _capped("provider", provider) if provider else NO_PROVIDER
    alias_label = _alias_label((alias or "")[:_ALIAS_MAX], provider)
    GATEWAY_REQUESTS.labels(endpoint, alias_label, provider_label, status).inc()
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
            GATEWAY_TOKENS.labels(provider_label, alias_label, "prompt").inc(max(0, prompt_tokens))
        if completion_tokens:
            GATEWAY_TOKENS.labels(provider_label, alias_label, "completion").inc(
                max(0, completion_tokens)
            )
        if cost_usd:
            GATEWAY_COST.labels(provider_label, alias_label).inc(max(0.0, float(cost_usd)))
        GATEWAY_DURATION.labels(endpoint, provider_label).observe(max(0.0, latency_ms) / 1000)
        if ttft_ms is not None:
            GATEWAY_TTFT.labels(endpoint, provider_label).observe(max(0.0, ttft_ms) / 1000)
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


# -- reading ----------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return (
        os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        or os.environ.get("prometheus_multiproc_dir")
        or None
    )


def metrics_registry() -> CollectorRegistry:
    """What /metrics exports: every process's files in multiprocess mode, else this process."""
    path = multiprocess_dir()
    if path:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        return registry
    return REGISTRY


def prometheus_text() -> bytes:
    return generate_latest(metrics_registry())


def _own_families() -> Iterable[Metric]:
    path = multiprocess_dir()
    if path:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        families: Iterable[Metric] = registry.collect()
    else:
        families = (family for metric in _OWN_METRICS for family in metric.collect())
    return (f for f in families if f.name.startswith(_OWN_PREFIXES))


@dataclass
class _Figures:
    requests: float = 0
    successes: float = 0
    cancelled: float = 0
    errors: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    prompt_tokens: float = 0
    completion_tokens: float = 0
    latency_sum: float = 0.0
    latency_count: float = 0
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    refreshes_ok: float = 0
    refreshes_failed: float = 0

    def as_dict(self) -> dict[str, Any]:
        average = self.latency_sum / self.latency_count * 1000 if self.latency_count else None
        p95 = histogram_quantile(0.95, self.buckets)
        return {
            "requests": int(self.requests),
            "successes": int(self.successes),
            "cancelled": int(self.cancelled),
            "errors": int(sum(self.errors.values())),
            "errors_by_type": {k: int(v) for k, v in sorted(self.errors.items())},
            "tokens": {
                "prompt": int(self.prompt_tokens),
                "completion": int(self.completion_tokens),
            },
            "latency_ms": {
                "average": None if average is None else round(average, 3),
                "p95": None if p95 is None else round(p95 * 1000, 3),
            },
            "refreshes": {"success": int(self.refreshes_ok), "failure": int(self.refreshes_failed)},
        }


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets {upper bound: count}."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]  # the +Inf bucket holds every observation
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the largest finite bucket: its bound is the best answer
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _apply(figures: _Figures, sample_name: str, labels: dict[str, str], value: float) -> None:
    if sample_name == "aipk_provider_requests_total":
        figures.requests += value
        if labels.get("status") == "success":
            figures.successes += value
        elif labels.get("status") == "cancelled":
            figures.cancelled += value
    elif sample_name == "aipk_provider_errors_total":
        figures.errors[labels.get("error_type", "unknown_error")] += value
    elif sample_name == "aipk_provider_tokens_total":
        if labels.get("kind") == "prompt":
            figures.prompt_tokens += value
        else:
            figures.completion_tokens += value
    elif sample_name == "aipk_provider_request_duration_seconds_sum":
        figures.latency_sum += value
    elif sample_name == "aipk_provider_request_duration_seconds_count":
        figures.latency_count += value
    elif sample_name == "aipk_provider_request_duration_seconds_bucket":
        figures.buckets[float(labels["le"])] += value
    elif sample_name == "aipk_credential_token_refreshes_total":
        if labels.get("outcome") == "success":
            figures.refreshes_ok += value
        else:
            figures.refreshes_failed += value


def metrics_summary() -> dict[str, Any]:
    """The JSON figures: per provider, and per credential inside each provider."""
    providers: dict[str, _Figures] = defaultdict(_Figures)
    credentials: dict[tuple[str, str], _Figures] = defaultdict(_Figures)
    gateway = _GatewayFigures()
    for family in _own_families():
        if family.name.startswith(_GATEWAY_PREFIXES):
            for sample in family.samples:
                gateway.apply(sample.name, sample.labels, sample.value)
            continue
        for sample in family.samples:
            provider = sample.labels.get("provider")
            if provider is None:
                continue
            _apply(providers[provider], sample.name, sample.labels, sample.value)
            credential = sample.labels.get("credential", NO_CREDENTIAL)
            _apply(credentials[(provider, credential)], sample.name, sample.labels, sample.value)
    result = []
    for name in sorted(providers):
        entry = {"provider": name, **providers[name].as_dict(), "credentials": []}
        for (provider, credential), figures in sorted(credentials.items()):
            if provider == name:
                entry["credentials"].append({"credential": credential, **figures.as_dict()})
        result.append(entry)
    return {
        "multiprocess": multiprocess_dir() is not None,
        "p95_method": "histogram buckets, linear interpolation",
        "providers": result,
        "gateway": gateway.as_dict(),
    }


@dataclass
class _GatewayFigures:
    by_status: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    by_endpoint: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    refusals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    errors: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    tokens: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cache_hits: float = 0
    cache_saved_usd: float = 0.0
    cost_usd: float = 0.0
    active_streams: float = 0
    websocket_connections: float = 0
    latency: _Figures = field(default_factory=_Figures)
    ttft: _Figures = field(default_factory=_Figures)

    def apply(self, name: str, labels: dict[str, str], value: float) -> None:
        if name == "aipk_gateway_requests_total":
            self.by_status[labels.get("status", UNKNOWN)] += value
            self.by_endpoint[labels.get("endpoint", UNKNOWN)] += value
        elif name == "aipk_gateway_refusals_total":
            self.refusals[labels.get("code", UNKNOWN)] += value
        elif name == "aipk_gateway_errors_total":
            self.errors[labels.get("error_type", "unknown_error")] += value
        elif name == "aipk_gateway_tokens_total":
            self.tokens[labels.get("kind", UNKNOWN)] += value
        elif name == "aipk_gateway_cache_hits_total":
            self.cache_hits += value
        elif name == "aipk_gateway_cache_saved_usd_total":
            self.cache_saved_usd += value
        elif name == "aipk_gateway_cost_usd_total":
            self.cost_usd += value
        elif name == "aipk_gateway_active_streams":
            self.active_streams += value
        elif name == "aipk_websocket_connections":
            self.websocket_connections += value
        elif name.startswith("aipk_gateway_request_duration_seconds"):
            _apply(self.latency, name.replace("gateway_", "provider_", 1), labels, value)
        elif name.startswith("aipk_gateway_ttft_seconds"):
            suffix = name[len("aipk_gateway_ttft_seconds") :]
            _apply(self.ttft, "aipk_provider_request_duration_seconds" + suffix, labels, value)

    def as_dict(self) -> dict[str, Any]:
        def counts(values: dict[str, float]) -> dict[str, int]:
            return {k: int(v) for k, v in sorted(values.items()) if v}

        return {
            "requests": int(sum(self.by_status.values())),
            "by_status": counts(self.by_status),
            "by_endpoint": counts(self.by_endpoint),
            "refusals_by_code": counts(self.refusals),
            "errors_by_type": counts(self.errors),
            "cache_hits": int(self.cache_hits),
            "tokens": {
                "prompt": int(self.tokens.get("prompt", 0)),
                "completion": int(self.tokens.get("completion", 0)),
            },
            "cost_usd": round(self.cost_usd, 8),
            "cache_saved_usd": round(self.cache_saved_usd, 8),
            "latency_ms": self.latency.as_dict()["latency_ms"],
            "ttft_ms": self.ttft.as_dict()["latency_ms"],
            "active_streams": int(self.active_streams),
            "websocket_connections": int(self.websocket_connections),
        }
