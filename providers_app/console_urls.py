"""/console/providers/… and /console/credentials/… (staff only), in the ``console`` namespace."""

from django.urls import path

from providers_app import console_views as views

urlpatterns = [
    path("providers/", views.provider_list, name="providers"),
    path("providers/add/", views.provider_add_choose_type, name="provider_add_choose"),
    path("providers/add/<str:provider_type>/", views.provider_add, name="provider_add"),
    path("providers/<int:pk>/", views.provider_detail, name="provider"),
    path("providers/<int:pk>/edit/", views.provider_edit, name="provider_edit"),
    path("providers/<int:pk>/test/", views.provider_test_connection, name="provider_test"),
    path(
        "providers/<int:pk>/refresh-models/",
        views.provider_refresh_models,
        name="provider_refresh_models",
    ),
    path("credentials/", views.credential_list, name="credentials"),
    path("credentials/keys/add/", views.api_key_add_view, name="api_key_add"),
    path("credentials/keys/<int:pk>/test/", views.api_key_test, name="api_key_test"),
    path("credentials/keys/<int:pk>/state/", views.api_key_state, name="api_key_state"),
    path("credentials/keys/<int:pk>/rotate/", views.api_key_rotate_view, name="api_key_rotate"),
    path(
        "credentials/oauth/connect/<int:provider_pk>/",
        views.oauth_connect,
        name="oauth_connect",
    ),
    path(
        "credentials/oauth/device/<int:provider_pk>/",
        views.oauth_device_start,
        name="oauth_device_start",
    ),
    path("credentials/oauth/flows/<int:flow_pk>/", views.oauth_device, name="oauth_device"),
    path(
        "credentials/oauth/flows/<int:flow_pk>/poll/",
        views.oauth_device_poll,
        name="oauth_device_poll",
    ),
    path("credentials/oauth/<int:pk>/refresh/", views.oauth_refresh, name="oauth_refresh"),
    path("credentials/oauth/<int:pk>/disconnect/", views.oauth_disconnect, name="oauth_disconnect"),
]
