"""Root URLconf: the admin and the django-ninja API (OpenAPI docs at /api/docs).

Each app's `api.py` Router is mounted here with `api.add_router(...)` as it arrives.
"""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from aipk_site.api import api
from providers_app.api import router as providers_router
from providers_app.oauth_views import oauth_callback_view

api.add_router("/providers", providers_router)

urlpatterns = [
    # Until the console exists, the API docs are the front door.
    path("", RedirectView.as_view(url="/api/docs", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("", include("providers_app.metrics_views")),  # /metrics, /metrics.json
    path("oauth/callback/<slug:provider>/", oauth_callback_view, name="oauth-callback"),
]
