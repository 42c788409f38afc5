"""`manage.py run_embedded`: the development server (daphne's runserver) plus, in
embedded mode, the scheduled jobs in the same process (aipk_site/embedded_jobs.py).
`make run` uses it. Takes every option `runserver` takes. SIGTERM drains requests in
flight and flushes usage rows before the process exits (aipk_site/gateway/shutdown.py)."""

from typing import Any

from daphne.management.commands.runserver import Command as RunserverCommand

from aipk_site.daphne_server import DaphneServer
from aipk_site.embedded_jobs import embedded_scheduling_applies, start_embedded_scheduler
from aipk_site.gateway.shutdown import install_signal_handler


class Command(RunserverCommand):  # type: ignore[misc]  # daphne ships no types
    help = "Run the server and, in embedded mode, the scheduled jobs (Celery beat) with it."

    def run(self, **options: Any) -> None:
        # SIGTERM drains requests in flight and flushes usage rows first
        # (aipk_site/gateway/shutdown.py). Installed here, in the main thread: with the
        # autoreloader the server runs in another thread, where no signal handler can
        # be set; without it, the server's first request installs it again in front of
        # Twisted's own.
        install_signal_handler()
        super().run(**options)

    # websocket messages up to WS_MAX_MESSAGE_BYTES, a 1009 close beyond (docs/WEBSOCKET.md)
    server_cls = DaphneServer

    def inner_run(self, *args: Any, **options: Any) -> None:
        # inner_run runs in the serving process (the autoreloader's child), so the
        # jobs share its local-memory cache; a reload restarts them with the server
        if start_embedded_scheduler() is not None:
            self.stdout.write("Scheduled jobs: running in this process (embedded mode).\n")
        elif not embedded_scheduling_applies():
            self.stdout.write(
                "Scheduled jobs: expected from a Celery worker and beat "
                "(celery -A aipk_site worker / celery -A aipk_site beat -S django).\n"
            )
        super().inner_run(*args, **options)
