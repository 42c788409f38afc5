from django.urls import path

from tenants_app import console_views

urlpatterns = [
    path("tenants/", console_views.tenant_list, name="tenants"),
    path("tenants/<slug:slug>/", console_views.tenant_overview, name="tenant"),
    path("tenants/<slug:slug>/members/", console_views.tenant_members, name="tenant_members"),
    path(
        "tenants/<slug:slug>/members/<str:username>/role/",
        console_views.tenant_member_role,
        name="tenant_member_role",
    ),
    path(
        "tenants/<slug:slug>/members/<str:username>/remove/",
        console_views.tenant_member_remove,
        name="tenant_member_remove",
    ),
    path("tenants/<slug:slug>/keys/", console_views.tenant_keys, name="tenant_keys"),
    path(
        "tenants/<slug:slug>/keys/<int:key_id>/",
        console_views.tenant_key_edit,
        name="tenant_key_edit",
    ),
    path(
        "tenants/<slug:slug>/keys/<int:key_id>/revoke/",
        console_views.tenant_key_revoke,
        name="tenant_key_revoke",
    ),
    path("tenants/<slug:slug>/routes/", console_views.tenant_routes, name="tenant_routes"),
    path(
        "tenants/<slug:slug>/routes/<str:alias>/",
        console_views.tenant_route_edit,
        name="tenant_route_edit",
    ),
    path(
        "tenants/<slug:slug>/routes/<str:alias>/delete/",
        console_views.tenant_route_delete,
        name="tenant_route_delete",
    ),
    path("tenants/<slug:slug>/usage/", console_views.tenant_usage, name="tenant_usage"),
    path("tenants/<slug:slug>/invoices/", console_views.tenant_invoices, name="tenant_invoices"),
]
