"""The management API of tenants_app: one module per resource, each with one ninja
``Router`` and the schemas only it uses (shared ones in ``schemas``). Operations stay
thin: check who may act (tenants_app.auth), call a service or selector, render. Secrets
go out exactly once, in the answer that creates them; hashes never.

The routers carry no authentication of their own: aipk_site/api.py mounts every router
of the API with the same one (a console session or an admin token). Documented in
docs/API.md.
"""
