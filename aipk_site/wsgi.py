"""WSGI entry point, for tooling only: aipk is served over ASGI (websockets, streaming)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aipk_site.settings")

application = get_wsgi_application()
