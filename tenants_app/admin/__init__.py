"""The Django admin for tenants and what they own, one module per concept: tenants (and
members), keys (virtual keys, admin tokens), routes, pricing, records (usage, invoices,
audit log).

Every write goes through the tenants_app services, so it is validated and audited
exactly like the same change made through the management API; the shared machinery is
aipk_site/infra/admin.py.
"""

# Django's autodiscovery imports this package: importing the modules registers them.
from tenants_app.admin import alerts, keys, pricing, records, routes, tenants  # noqa: F401
