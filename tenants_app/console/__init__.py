"""The console's tenant pages (/console/tenants/): the list, and one tenant's tabs
(overview, members, keys, routes, usage, invoices), one module per tab.

Who may do what is decided exactly as in the management API (tenants_app/auth.py,
tenants_app/api/), with the same helpers and the same lookups (tenants_app/selectors.py);
writes go through the same services with the signed-in user and their address, so each
one is audited. The pages hide what a role may not do, and every POST checks it again.
"""
