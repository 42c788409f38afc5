"""What /metrics and /metrics.json read: every process's samples, as Prometheus text or JSON.

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
price of bucket resolution (see ``metrics.LATENCY_BUCKETS``).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from aipk_site.infra.metrics import (
    ACTIVE_STREAMS,
    DURATION,
    ERRORS,
    GATEWAY_CACHE_HITS,
    GATEWAY_CACHE_SAVED,
    GATEWAY_COST,
    GATEWAY_DURATION,
    GATEWAY_ERRORS,
    GATEWAY_REFUSALS,
    GATEWAY_REQUESTS,
    GATEWAY_TOKENS,
    GATEWAY_TTFT,
    NO_CREDENTIAL,
    REFRESHES,
    REQUESTS,
    TOKENS,
    UNKNOWN,
    WS_CONNECTIONS,
)

_OWN_METRICS = (
    REQUESTS,
    ERRORS,
    TOKENS,
    DURATION,
    REFRESHES,
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
_OWN_PREFIXES = ("aipk_provider_", "aipk_credential_", *_GATEWAY_PREFIXES)


def multiprocess_dir() -> str | None:
    return (
        os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        or os.environ.get("prometheus_multiproc_dir")
        or None
    )


def metrics_registry() -> CollectorRegistry:
    """What /metrics exports: every process's files in multiprocess mode, else this process."""
    path = multiprocess_dir()
    return _merged_registry(path) if path else REGISTRY


def _merged_registry(path: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]  # unannotated
    return registry


def prometheus_text() -> bytes:
    return generate_latest(metrics_registry())


def _own_families() -> Iterable[Metric]:
    path = multiprocess_dir()
    if path:
        families: Iterable[Metric] = _merged_registry(path).collect()
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
