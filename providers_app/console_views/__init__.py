"""The console's Providers and Credentials pages (staff only).

Views stay thin: a form parses, a service decides, writes and audits, a
template renders. Views that wait on a provider (health checks, live key
tests, model discovery, device-code polls, token refreshes) are ``async def``
so that waiting never holds one of the server's threads; their ORM work and
template rendering (whose context processors query) go through
``sync_to_async``.

Nothing secret is ever put in a context: API keys and OAuth accounts show a
label and their last four characters, the OAuth client secret only whether
one is stored.
"""

from __future__ import annotations

from .common import KeyRow, OAuthOptions, key_row, key_rows, oauth_options
from .credentials import (
    api_key_add_view,
    api_key_rotate_view,
    api_key_state,
    api_key_test,
    credential_list,
)
from .oauth import (
    oauth_connect,
    oauth_device,
    oauth_device_poll,
    oauth_device_start,
    oauth_disconnect,
    oauth_refresh,
)
from .providers import (
    provider_add,
    provider_add_choose_type,
    provider_detail,
    provider_edit,
    provider_list,
    provider_refresh_models,
    provider_test_connection,
)

__all__ = [
    "KeyRow",
    "OAuthOptions",
    "api_key_add_view",
    "api_key_rotate_view",
    "api_key_state",
    "api_key_test",
    "credential_list",
    "key_row",
    "key_rows",
    "oauth_connect",
    "oauth_device",
    "oauth_device_poll",
    "oauth_device_start",
    "oauth_disconnect",
    "oauth_options",
    "oauth_refresh",
    "provider_add",
    "provider_add_choose_type",
    "provider_detail",
    "provider_edit",
    "provider_list",
    "provider_refresh_models",
    "provider_test_connection",
]
