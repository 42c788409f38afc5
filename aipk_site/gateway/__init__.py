"""The gateway: aipk's data plane, the answer to "where is the gateway?".

Everything a /v1 request or a websocket chat turn passes through lives here: the
HTTP edge (``edge.py``, ``handler.py``), the OpenAI and Anthropic formats
(``formats/``), virtual-key authentication (``key_auth.py``), admission
(``admission.py``), routing (``routing.py``), the response cache, redaction, the
usage ledger (``usage.py``), the websocket chat service (``chat_socket.py``,
``consumers.py``) and graceful shutdown (``shutdown.py``).

It sits on the floor below ``aipk_site``'s wiring and above both apps: it reads
tenants_app's models and calls providers_app's services and kit, and neither app
imports it. Management changes reach its per-process caches through the signals
tenants_app sends (``receivers.py``). It is a Django app (``apps.py``) only so
that those receivers are connected at start-up; it has no models.
"""
