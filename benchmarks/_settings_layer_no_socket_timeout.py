"""aipk's settings with one change, for ``bench_websocket_load.py
--layer-no-socket-timeout``: the channels-redis layer's connections get
``socket_timeout=None``.

Why: redis-py 8 made ``socket_timeout`` default to 5 s. channels-redis 4.3.0
receives with a blocking ``BZPOPMIN`` whose server-side timeout is also 5 s, so
a read that the busy event loop gets to a little late raises
``redis.exceptions.TimeoutError`` inside the consumer, and daphne closes that
socket with 1011 (django/channels_redis#422, redis/redis-py#4091). This module
lets the benchmark measure the Redis mode with and without that fix; the fix
itself belongs in ``aipk_site/settings.py``.
"""

from aipk_site.settings import *  # noqa: F403
from aipk_site.settings import CHANNEL_LAYERS, REDIS_URL

if REDIS_URL:
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [{"address": REDIS_URL, "socket_timeout": None}]
