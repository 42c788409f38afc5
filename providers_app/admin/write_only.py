"""How every admin page in this app shows a secret: never. A secret is typed into a
password field that is not filled back in, and shown afterwards as its last four
characters."""

from __future__ import annotations

from django import forms

WRITE_ONLY = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})


def masked(last4: str) -> str:
    return f"…{last4}" if last4 else "—"
