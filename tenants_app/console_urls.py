from django.urls import path

from tenants_app.console import invoices, keys, members, requests, routes, tenants, usage

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
]
