"""The console (/console/): Django templates + HTMX over the same services the
management API uses. Pages live with their app (providers_app/console_views/,
tenants_app/console/); this package holds the shell: the URLs, the navigation, the
dashboard, the playground and the audit log. Who may see a page is decided below it:
staff pages by aipk_site/infra/access.py, tenant pages by tenants_app/console/access.py."""
