"""What both apps' admins share: forms whose save is a service call, audited plain saves
and deletes, read-only registrations, and the one mapping of the error family to the admin.

A change made in the admin is audited like the same change made through the API. Where a
service exists, the form calls it -- while the form validates, after Django's own field
and model checks, inside a savepoint -- so a refusal (any ``AipkError``) becomes a form
error naming the field and leaves nothing behind, and the admin has nothing left to save.
Where no service exists, the same hook saves the row and writes an audit event itself
(``audited_save``), never with a secret in it. A refusal outside a form (a delete, an
action) becomes an admin message (``message_error``, ``report_error``).

Nothing here knows a tenant or a provider: both apps' admins build on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from aipk_site.infra.audit import audit_record, audit_value
from aipk_site.infra.client_ip import client_ip
from aipk_site.infra.errors import AipkError
from aipk_site.infra.forms import ServiceErrorsMixin, field_messages


def request_ip(request: HttpRequest | None) -> str | None:
    return client_ip(request) if request is not None else None


# --------------------------------------------------------------------------- errors


def message_error(modeladmin: admin.ModelAdmin, request: HttpRequest, error: AipkError) -> None:
    """A service's refusal as error messages, one per input it names."""
    for item in field_messages(error):
        modeladmin.message_user(request, item.alone, messages.ERROR)


def report(
    modeladmin: admin.ModelAdmin, request: HttpRequest, obj: Any, ok: bool, text: str
) -> None:
    """One message per object an action touched; ``text`` must hold no secret."""
    level = messages.SUCCESS if ok else messages.ERROR
    modeladmin.message_user(request, f"{obj}: {text}", level)


def report_error(
    modeladmin: admin.ModelAdmin, request: HttpRequest, obj: Any, error: AipkError
) -> None:
    """An action's refusal for one object, as ``report`` words it."""
    for item in field_messages(error):
        report(modeladmin, request, obj, False, item.alone)


# --------------------------------------------------------------------------- forms


class ServiceModelForm(ServiceErrorsMixin, forms.ModelForm):  # type: ignore[misc]  # Django is untyped
    """A ModelForm whose save is ``save_through_service``, run while the form validates.

    ``request`` is set per request by ServiceAdmin.get_form (each call builds a new form
    class). ``original`` is the row as stored, re-read before the form touched it, so
    services compare against what really changed. A service's parameter that the form
    calls by another name is mapped in ``param_fields``.
    """

    request: HttpRequest | None = None
    instance: models.Model  # set by ModelForm.__init__, replaced by the saved row

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
        except AipkError as error:
            self.add_service_error(error)
            return
        self.instance = saved
        self.saved = True


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
        changes[name] = {"from": audit_value(before), "to": audit_value(after)}
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


# --------------------------------------------------------------------------- model admins


class ServiceAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped
    """Saves happen in the form (see ServiceModelForm); deletes go through ``delete_one``."""

    add_form: type[ServiceModelForm] | None = None
    add_fieldsets: Any = None

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None and self.add_form is not None:
            kwargs["form"] = self.add_form
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request = request
        return form

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None and self.add_fieldsets is not None:
            return self.add_fieldsets
        return super().get_fieldsets(request, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # The form's service call has saved (and audited) it already.
        if not getattr(form, "saved", False):
            raise RuntimeError(f"{type(form).__name__} did not save through its service")

    def save_related(
        self, request: HttpRequest, form: Any, formsets: Iterable[Any], change: bool
    ) -> None:
        # Many-to-many values went through the service too; only inlines remain.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_one(self, request: HttpRequest, obj: Any) -> None:
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_one(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Iterable[Any]) -> None:
        for obj in queryset:
            self.delete_one(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """Rows whose admin never deletes them on their own (usage, health history,
        virtual keys, ...) still go with what owns them, as the delete service says."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        owned = {
            str(model._meta.verbose_name)
            for model, model_admin in self.admin_site._registry.items()
            if getattr(model_admin, "deleted_only_with_owner", False)
        }
        return deleted, counts, {p for p in perms_needed if str(p) not in owned}, protected

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        """A service refusing a delete (e.g. a tenant's last owner) is a message, not a 500."""
        try:
            response: HttpResponse = super().delete_view(request, object_id, extra_context)
        except AipkError as error:
            message_error(self, request, error)
            return HttpResponseRedirect(request.path.rsplit("/delete/", 1)[0] + "/change/")
        return response


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[misc]  # Django is untyped
    """Rows written by the system (usage, audit, health): to look at, never to edit,
    and deleted only with the tenant or provider they belong to."""

    deleted_only_with_owner = True

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
