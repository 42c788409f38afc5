"""Root URLconf: the admin and the django-ninja API (OpenAPI docs at /api/docs).

Each app's `api.py` Router is mounted here with `api.add_router(...)` as it arrives.
"""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView
from ninja import NinjaAPI

api = NinjaAPI(title="aipk", version="1")

urlpatterns = [
    # Until the console exists, the API docs are the front door.
    path("", RedirectView.as_view(url="/api/docs", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
