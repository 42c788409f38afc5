from django.urls import path

from tenants_app import console_views

urlpatterns = [
    path("tenants/", console_views.tenant_list, name="tenants"),
    path("tenants/<slug:slug>/", console_views.tenant_detail, name="tenant"),
]
