"""Tenant management: tenants, members, virtual keys, routes, pricing, usage queries,
invoices and the audit log. The gateway that serves tenants' requests is
aipk_site/gateway; it reads these models, and nothing here imports it."""
