from django.apps import AppConfig


class GatewayConfig(AppConfig):  # type: ignore[misc]  # Django ships no types
    """The data plane (aipk_site/gateway/__init__.py). No models: an app only so that
    its cache-invalidation receivers are connected when Django starts."""

    name = "aipk_site.gateway"
    label = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        from aipk_site.gateway import receivers  # noqa: F401  (connects the cache invalidation)
