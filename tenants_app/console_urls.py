from django.urls import path

from tenants_app.console import (
    configuration,
    invoices,
    keys,
    members,
    routes,
    tenants,
    tokens,
    usage,
)

urlpatterns = [
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
]
