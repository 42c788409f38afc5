"""The console (/console/): Django templates + HTMX over the same services the
management API uses. Pages live with their app (providers_app/console_views.py,
tenants_app/console_views.py); this package holds what they share: who may see
what, the navigation, charts and the dashboard."""
