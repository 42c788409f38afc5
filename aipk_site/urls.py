"""Root URLconf: the console, the admin, the management API (its routers are mounted
in aipk_site/api.py; OpenAPI docs at /api/docs) and the gateway."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from aipk_site.api import api
from aipk_site.console.sso_views import admin_login
from aipk_site.gateway.openapi import gateway_api
from aipk_site.operations_views import health, ready
from providers_app.oauth_views import oauth_callback_view

# JSON under /v1/ and /api/ for what Django refuses before a view runs (aipk_site/error_views.py)
handler400 = "aipk_site.error_views.bad_request"
handler500 = "aipk_site.error_views.server_error"

urlpatterns = [
    path("", RedirectView.as_view(url="/console/", permanent=False)),
    path("console/", include("aipk_site.console.urls")),
    # single sign-on: with LOCAL_PASSWORDS_ENABLED off the admin's password form refuses too
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("v1/", gateway_api.urls),  # the OpenAI/Anthropic-compatible gateway
    path("", include("providers_app.metrics_views")),  # /metrics, /metrics.json
    path("health", health, name="health"),
    path("ready", ready, name="ready"),
    path("oauth/callback/<slug:provider>/", oauth_callback_view, name="oauth-callback"),
    # --- favicon (issue 15): pages link static/favicon.svg; what asks /favicon.ico anyway
    # (the admin, API docs, a browser on its own) gets the PNG instead of a 404
    path("favicon.ico", RedirectView.as_view(url=static("favicon.png"), permanent=True)),
]
