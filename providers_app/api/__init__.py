"""The management API of providers_app: provider accounts (``providers``) and their API
keys (``credentials``), staff only. Operations are thin: parse, call a service, render.
Secrets go in, never out: a key is shown as its label and last four characters.

The routers carry no authentication of their own (providers_app may not import
tenants_app, where it is defined): aipk_site/api.py mounts them with the API's one
authentication, a console session or an admin token. Documented in docs/PROVIDERS.md.
"""
