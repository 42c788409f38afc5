"""Prices as people write them: ``0.075``, ``15`` -- not the column's ``15.000000``."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def rate(value: Decimal | None) -> str:
    if value is None:
        return ""
    # "f": normalize() alone would write 10 as 1E+1
    return format(Decimal(value).normalize(), "f")
