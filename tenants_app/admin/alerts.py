"""Alert channels and their deliveries. A channel's target and signing secret never
appear on a page: the target is shown as scheme, host and last four characters, the
secret by its last four (and once, in a message, when a webhook channel is added).
Deliveries are the system's record of what was sent: read only."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from aipk_site.infra.admin import ReadOnlyAdmin, ServiceAdmin, ServiceModelForm, request_ip
from tenants_app.models import AlertChannel, AlertDelivery
from tenants_app.services.alerts import (
    alert_channel_create,
    alert_channel_delete,
    alert_channel_update,
    target_display,
)

CHANGEABLE = ("name", "events", "enabled")


class AlertChannelAddForm(ServiceModelForm):
    target = forms.CharField(
        max_length=1000, help_text="an http(s) URL, or comma-separated email addresses"
    )

    class Meta:
        model = AlertChannel
        fields = ["tenant", "name", "kind", "target", "events", "enabled"]

    def save_through_service(self, original):
        data = self.cleaned_data
        channel, secret = alert_channel_create(
            tenant=data["tenant"],
            name=data["name"],
            kind=data["kind"],
            target=data["target"],
            events=data["events"] or [],
            enabled=data["enabled"],
            actor=self.actor,
            ip_address=self.ip_address,
        )
        self.new_secret = secret  # shown once by AlertChannelAdmin.save_model
        return channel


class AlertChannelChangeForm(ServiceModelForm):
    class Meta:
        model = AlertChannel
        fields = list(CHANGEABLE)

    def save_through_service(self, original):
        return alert_channel_update(
            channel=original,
            actor=self.actor,
            ip_address=self.ip_address,
            **self.changed_values(CHANGEABLE),
        )


@admin.register(AlertChannel)
class AlertChannelAdmin(ServiceAdmin):
    form = AlertChannelChangeForm
    add_form = AlertChannelAddForm
    list_display = ("name", "tenant", "kind", "shown_target", "enabled", "created_at")
    list_filter = ("kind", "enabled", ("tenant", admin.EmptyFieldListFilter))
    search_fields = ("name", "tenant__slug")
    list_select_related = ("tenant",)
    readonly_fields = ("tenant", "kind", "shown_target", "secret_last4", "created_at")
    fields = ("tenant", "kind", "shown_target", "secret_last4", *CHANGEABLE, "created_at")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request, obj=None):
        if obj is None:
            return AlertChannelAddForm.Meta.fields
        return self.fields

    @admin.display(description="target")
    def shown_target(self, obj):
        return target_display(obj)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        secret = getattr(form, "new_secret", None)
        if secret:
            self.message_user(
                request,
                format_html(
                    "The signing secret of “{}” is <code>{}</code> — copy it now: "
                    "it will not be shown again.",
                    obj,
                    secret,
                ),
                messages.WARNING,
            )

    def delete_one(self, request, obj):
        alert_channel_delete(channel=obj, actor=request.user, ip_address=request_ip(request))


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "channel", "tenant", "status", "attempts", "subject")
    list_filter = ("kind", "status")
    search_fields = ("subject", "dedup_key")
    list_select_related = ("channel", "tenant")
    date_hierarchy = "created_at"
