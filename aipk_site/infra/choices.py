"""``TextChoices`` as mypy should see it.

Django ships no type hints and mypy runs here without django-stubs, so to mypy
``models.TextChoices`` is ``Any``: a member such as ``Role.OWNER = "owner"`` is a
plain ``str`` and ``OPENAI = "openai", "OpenAI"`` a tuple, so no member can be
passed where the enum is expected. At runtime a ``TextChoices`` class is a ``str``
enum whose members are instances of it; under type checking this module says so.
At runtime ``TextChoices`` *is* Django's class: nothing changes there.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, ClassVar

from django.db import models

if TYPE_CHECKING:

    class TextChoices(enum.StrEnum):
        """The part of Django's ``TextChoices`` API this project uses."""

        choices: ClassVar[list[tuple[str, str]]]
        labels: ClassVar[list[str]]
        values: ClassVar[list[str]]
        names: ClassVar[list[str]]

        @property
        def label(self) -> str: ...

else:
    TextChoices = models.TextChoices

__all__ = ["TextChoices"]
