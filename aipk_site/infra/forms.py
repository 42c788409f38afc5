"""The one mapping of the error family to forms: a service's refusal is shown next to the
input it names, or above the form when the form has no such input.

Console pages and admin forms alike call a service after their own checks pass, and the
service -- not the form -- knows the rules (a taken slug, a tenant's last owner, a key
too short). Its ``AipkError`` names the input in ``param``; that is all a form needs to
put the message where a person looks for it. An error about several inputs at once
carries an ``errors`` mapping (input → message) instead, and each lands on its own
input (``ProviderSettingsError`` does; this layer cannot import it, so it goes by the
attribute).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from aipk_site.infra.errors import AipkError

if TYPE_CHECKING:
    from django import forms

ALL_FIELDS = "__all__"  # Django's key for an error about no single field


class FieldMessage(NamedTuple):
    """One refusal, worded for both places it may be shown."""

    param: str | None  # the input it is about; None: the request as a whole
    beside: str  # next to that input, whose label already names it
    alone: str  # on its own (above a form, in an admin message): names the input


def field_messages(error: AipkError) -> list[FieldMessage]:
    """What ``error`` says, input by input."""
    errors = getattr(error, "errors", None)
    if isinstance(errors, Mapping):
        return list(per_field(errors))
    param = error.param or None
    if param is None:
        return [FieldMessage(None, error.message, error.message)]
    # services word a message to stand alone; some start it with "<param>: "
    return [FieldMessage(param, error.message.removeprefix(f"{param}: "), error.message)]


def per_field(errors: Mapping[str, str | Sequence[str]]) -> Iterator[FieldMessage]:
    """Messages keyed by input (a service's ``errors``, a model ValidationError's
    ``message_dict``); ``__all__`` is about no single input."""
    for name, messages in errors.items():
        for message in [messages] if isinstance(messages, str) else messages:
            if name == ALL_FIELDS:
                yield FieldMessage(None, message, message)
            else:
                yield FieldMessage(name, message, f"{name}: {message}")


class ServiceErrorsMixin:
    """For a ``forms.Form`` or ``forms.ModelForm`` whose data a service then refuses."""

    if TYPE_CHECKING:  # provided by the form this is mixed into
        fields: dict[str, forms.Field]

        def add_error(self, field: str | None, error: Any) -> None: ...

    # service parameter → form field, where their names differ
    param_fields: ClassVar[dict[str, str]] = {}

    def add_service_error(self, error: AipkError) -> None:
        self.add_field_messages(field_messages(error))

    def add_service_errors(self, errors: Mapping[str, str | Sequence[str]]) -> None:
        """Messages keyed by input (see ``per_field``)."""
        self.add_field_messages(per_field(errors))

    def add_field_messages(self, items: Iterable[FieldMessage]) -> None:
        for item in items:
            field = self.field_for(item.param) if item.param else None
            if field is None:
                self.add_error(None, item.alone)
            elif "." in (item.param or ""):
                # "candidates.2.provider" on "candidates": the path says which part
                self.add_error(field, item.alone)
            else:
                self.add_error(field, item.beside)

    def field_for(self, param: str) -> str | None:
        """The form field a service parameter is shown on, or None when the form has none;
        "settings.organization" is about the "settings" field."""
        base = param.split(".")[0]
        name = self.param_fields.get(base, base)
        return name if name in self.fields else None
