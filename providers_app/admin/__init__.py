"""The Django admin for providers and the credentials aipk holds for them, one module
per concept: providers (and their discovered models), credentials (API keys), oauth
(accounts and flows), monitoring (health history and alerts).

Secrets are write-only here; a credential shows as its label and last four characters.
Writes go through the provider services (audited); the few plain fields without a
service (a key's label and tenant, a credential's account label) are saved and audited
by ``audited_save`` (aipk_site/infra/admin.py).
"""

# Django's autodiscovery imports this package: importing the modules registers them.
from providers_app.admin import credentials, monitoring, oauth, providers  # noqa: F401
