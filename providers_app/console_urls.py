from django.urls import path

from providers_app import console_views

urlpatterns = [
    path("providers/", console_views.provider_list, name="providers"),
    path("credentials/", console_views.credential_list, name="credentials"),
]
