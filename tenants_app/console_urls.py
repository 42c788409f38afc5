from django.urls import path

from tenants_app.console import (
    alerts,
    configuration,
    invoices,
    keys,
    members,
    requests,
    routes,
    tenants,
    tokens,
    usage,
)

urlpatterns = [
    path("requests/", requests.request_list, name="requests"),
    path("requests/live/", requests.request_live, name="requests_live"),
    path("requests/<str:request_id>/", requests.request_detail, name="request_detail"),
    path("tenants/", tenants.tenant_list, name="tenants"),
    path("tenants/<slug:slug>/", tenants.tenant_overview, name="tenant"),
    path("tenants/<slug:slug>/members/", members.tenant_members, name="tenant_members"),
    path(
        "tenants/<slug:slug>/members/<str:username>/role/",
        members.tenant_member_role,
        name="tenant_member_role",
    ),
    path(
        "tenants/<slug:slug>/members/<str:username>/remove/",
        members.tenant_member_remove,
        name="tenant_member_remove",
    ),
    path("tenants/<slug:slug>/keys/", keys.tenant_keys, name="tenant_keys"),
    path("tenants/<slug:slug>/keys/<int:key_id>/", keys.tenant_key_edit, name="tenant_key_edit"),
    path(
        "tenants/<slug:slug>/keys/<int:key_id>/revoke/",
        keys.tenant_key_revoke,
        name="tenant_key_revoke",
    ),
    path("tenants/<slug:slug>/routes/", routes.tenant_routes, name="tenant_routes"),
    path(
        "tenants/<slug:slug>/routes/<str:alias>/",
        routes.tenant_route_edit,
        name="tenant_route_edit",
    ),
    path(
        "tenants/<slug:slug>/routes/<str:alias>/delete/",
        routes.tenant_route_delete,
        name="tenant_route_delete",
    ),
    path("tenants/<slug:slug>/usage/", usage.tenant_usage, name="tenant_usage"),
    path("tenants/<slug:slug>/invoices/", invoices.tenant_invoices, name="tenant_invoices"),
    path("tokens/", tokens.admin_tokens, name="admin_tokens"),
    path(
        "tokens/<int:token_id>/revoke/",
        tokens.admin_token_revoke_view,
        name="admin_token_revoke",
    ),
    # the organisation's configuration: global routes, prices, the model catalogue
    path("routes/", configuration.global_routes, name="global_routes"),
    path("routes/<str:alias>/", configuration.global_route_edit, name="global_route_edit"),
    path(
        "routes/<str:alias>/delete/",
        configuration.global_route_delete,
        name="global_route_delete",
    ),
    path("pricing/", configuration.pricing, name="pricing"),
    path("pricing/<int:pricing_id>/", configuration.pricing_edit, name="pricing_edit"),
    path("models/", configuration.model_catalogue, name="models"),
    # alert channels: the organisation's (staff) and a tenant's (owners, admins)
    path("alerts/", alerts.alerts, name="alerts"),
    path("alerts/<int:channel_id>/", alerts.alert_channel, name="alert_channel"),
    path("alerts/<int:channel_id>/row/", alerts.alert_channel_row, name="alert_channel_row"),
    path(
        "alerts/<int:channel_id>/enable/",
        alerts.alert_channel_enable,
        name="alert_channel_enable",
    ),
    path(
        "alerts/<int:channel_id>/delete/",
        alerts.alert_channel_delete_view,
        name="alert_channel_delete",
    ),
    path(
        "alerts/<int:channel_id>/test/", alerts.alert_channel_test_view, name="alert_channel_test"
    ),
    path("tenants/<slug:slug>/alerts/", alerts.tenant_alerts, name="tenant_alerts"),
    path(
        "tenants/<slug:slug>/alerts/<int:channel_id>/",
        alerts.tenant_alert_channel,
        name="tenant_alert_channel",
    ),
    path(
        "tenants/<slug:slug>/alerts/<int:channel_id>/row/",
        alerts.tenant_alert_channel_row,
        name="tenant_alert_channel_row",
    ),
    path(
        "tenants/<slug:slug>/alerts/<int:channel_id>/enable/",
        alerts.tenant_alert_channel_enable,
        name="tenant_alert_channel_enable",
    ),
    path(
        "tenants/<slug:slug>/alerts/<int:channel_id>/delete/",
        alerts.tenant_alert_channel_delete,
        name="tenant_alert_channel_delete",
    ),
    path(
        "tenants/<slug:slug>/alerts/<int:channel_id>/test/",
        alerts.tenant_alert_channel_test,
        name="tenant_alert_channel_test",
    ),
]
