"""The kit is framework-free: importing every module of it loads no Django."""

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[3]

CODE = """
import importlib, pkgutil, sys
import providers_app.kit as kit
names = [m.name for m in pkgutil.walk_packages(kit.__path__, kit.__name__ + ".")]
for name in names:
    importlib.import_module(name)
print(len(names), any(m == "django" or m.startswith("django.") for m in sys.modules))
"""


def test_it_imports_every_kit_module_without_django():
    result = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, cwd=PROJECT
    )
    count, django_loaded = result.stdout.split()
    assert int(count) > 20  # the packages were walked, not just the top level
    assert django_loaded == "False"
