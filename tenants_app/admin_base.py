"""What both apps' admins share: forms whose save is a service call, audited
plain saves and deletes, and read-only registrations.

A change made in the admin is audited like the same change made through the
API. Where a service exists, the form calls it -- while the form validates,
after Django's own field and model checks, inside a savepoint -- so a refusal
(``InvalidRequest``, ``CredentialError``, ``ProviderSettingsError``) becomes a
form error naming the field and leaves nothing behind, and the admin has
nothing left to save. Where no service exists, the same hook saves the row and
writes an audit event itself (``audited_save``), never with a secret in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.http import HttpRequest, HttpResponseRedirect

from aipk_site.infra.audit import audit_record
from aipk_site.infra.client_ip import client_ip
from aipk_site.infra.errors import InvalidRequest
from providers_app.services.credentials import CredentialError
from providers_app.services.provider_settings import ProviderSettingsError

SERVICE_ERRORS = (InvalidRequest, CredentialError, ProviderSettingsError)


def request_ip(request: HttpRequest | None) -> str | None:
    return client_ip(request) if request is not None else None


def service_error_items(exc: Exception) -> list[tuple[str | None, str]]:
    """(field, message) pairs from a service refusal; field None when it names none."""
    if isinstance(exc, ProviderSettingsError):
        return list(exc.errors.items())
    if isinstance(exc, CredentialError):
        return [(exc.field, str(exc).split(": ", 1)[-1])]
    if isinstance(exc, InvalidRequest):
        return [(exc.param, exc.message)]
    return [(None, str(exc))]


class ServiceModelForm(forms.ModelForm):
    """A ModelForm whose save is ``save_through_service``, run while the form validates.

    ``request`` is set per request by ServiceAdmin.get_form (each call builds a
    new form class). ``original`` is the row as stored, re-read before the form
    touched it, so services compare against what really changed.
    """

    request: HttpRequest | None = None
    instance: models.Model  # set by ModelForm.__init__, replaced by the saved row
    # service "param" → form field, where the two names differ
    service_field_names: dict[str, str] = {}

    saved = False

    @property
    def actor(self) -> Any:
        return getattr(self.request, "user", None)

    @property
    def ip_address(self) -> str | None:
        return request_ip(self.request)

    def changed_values(self, names: Iterable[str]) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in names if name in self.changed_data}

    def save_through_service(self, original: models.Model | None) -> models.Model:
        raise NotImplementedError

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        original = None
        if self.instance.pk is not None:
            original = type(self.instance)._default_manager.get(pk=self.instance.pk)
        try:
            with transaction.atomic():
                saved = self.save_through_service(original)
        except SERVICE_ERRORS as exc:
            for field, message in service_error_items(exc):
                self._add_service_error(field, message)
            return
        self.instance = saved
        self.saved = True

    def _add_service_error(self, field: str | None, message: str) -> None:
        field = self.service_field_names.get(field or "", field)
        # "candidates.0.provider", "settings.organization": the error is about that form field
        base = (field or "").split(".")[0]
        if base in self.fields:
            self.add_error(base, message if base == field else f"{field}: {message}")
        else:
            self.add_error(None, f"{field}: {message}" if field else message)


def audited_save(
    obj: models.Model,
    *,
    action: str,
    form: ServiceModelForm,
    fields: Iterable[str],
    tenant: Any = None,
) -> models.Model:
    """A plain save of ``fields`` (no service owns them), audited with their old and new
    values, under ``tenant`` or else the row's tenant (after the change, or before it
    when the change made the row shared). Only call it with fields that hold no secret."""
    fields = [f for f in fields if f in form.changed_data]
    if not fields:
        return obj
    tenant_before = getattr(obj, "tenant", None)
    changes = {}
    for name in fields:
        before, after = getattr(obj, name), form.cleaned_data[name]
        changes[name] = {"from": _plain(before), "to": _plain(after)}
        setattr(obj, name, after)
    obj.save(update_fields=fields)
    audit_record(
        action=action,
        obj=obj,
        actor=form.actor,
        ip_address=form.ip_address,
        tenant=tenant or getattr(obj, "tenant", None) or tenant_before,
        changes=changes,
    )
    return obj


def _plain(value: Any) -> Any:
    if isinstance(value, models.Model):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    return str(value)


def audited_delete(
    request: HttpRequest, obj: models.Model, *, action: str, tenant: Any = None, **changes: Any
) -> None:
    """Delete a row no service owns, leaving an audit event that outlives it."""
    object_id, object_repr = str(obj.pk), str(obj)
    obj.delete()
    audit_record(
        action=action,
        object_type=obj._meta.label,
        object_id=object_id,
        actor=request.user,
        ip_address=request_ip(request),
        tenant=tenant,
        changes={"repr": object_repr, **changes},
    )


class ServiceAdmin(admin.ModelAdmin):
    """Saves happen in the form (see ServiceModelForm); deletes go through ``delete_one``."""

    add_form: type[ServiceModelForm] | None = None
    add_fieldsets: Any = None

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None and self.add_form is not None:
            kwargs["form"] = self.add_form
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request = request
        return form

    def get_fieldsets(self, request, obj=None):
        if obj is None and self.add_fieldsets is not None:
            return self.add_fieldsets
        return super().get_fieldsets(request, obj)

    def save_model(self, request, obj, form, change):
        # The form's service call has saved (and audited) it already.
        if not getattr(form, "saved", False):
            raise RuntimeError(f"{type(form).__name__} did not save through its service")

    def save_related(self, request, form, formsets, change):
        # Many-to-many values went through the service too; only inlines remain.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_one(self, request: HttpRequest, obj: models.Model) -> None:
        raise NotImplementedError

    def delete_model(self, request, obj):
        self.delete_one(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_one(request, obj)

    def get_deleted_objects(self, objs, request):
        """Rows whose admin never deletes them on their own (usage, health history,
        virtual keys, ...) still go with what owns them, as the delete service says."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        owned = {
            str(model._meta.verbose_name)
            for model, model_admin in self.admin_site._registry.items()
            if getattr(model_admin, "deleted_only_with_owner", False)
        }
        return deleted, counts, {p for p in perms_needed if str(p) not in owned}, protected

    def delete_view(self, request, object_id, extra_context=None):
        """A service refusing a delete (e.g. a tenant's last owner) is a message, not a 500."""
        try:
            return super().delete_view(request, object_id, extra_context)
        except SERVICE_ERRORS as exc:
            for _field, message in service_error_items(exc):
                self.message_user(request, message, messages.ERROR)
            return HttpResponseRedirect(request.path.rsplit("/delete/", 1)[0] + "/change/")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the system (usage, audit, health): to look at, never to edit,
    and deleted only with the tenant or provider they belong to."""

    deleted_only_with_owner = True

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def report(
    modeladmin: admin.ModelAdmin, request: HttpRequest, obj: Any, ok: bool, text: str
) -> None:
    """One message per object an action touched; ``text`` must hold no secret."""
    level = messages.SUCCESS if ok else messages.ERROR
    modeladmin.message_user(request, f"{obj}: {text}", level)
