"""/console/ URLs. Every name lives in the ``console`` namespace; each app adds
its own pages through its ``console_urls`` module."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from aipk_site.console import audit_views, playground_views, sso_views, views

app_name = "console"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", sso_views.ConsoleLoginView.as_view(), name="login"),
    path("sso/login/", sso_views.sso_begin, name="sso-login"),
    path("sso/callback/", sso_views.sso_callback, name="sso-callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("playground/", playground_views.playground, name="playground"),
    path("audit/", audit_views.audit_log, name="audit"),
    path("", include("providers_app.console_urls")),
    path("", include("tenants_app.console_urls")),
]
