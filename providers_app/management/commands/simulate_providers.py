"""``python manage.py simulate_providers --port 8100``: run the provider simulator.

A thin wrapper: the simulator is framework-free (providers_app.simulator).
"""

from django.core.management.base import BaseCommand

from providers_app.simulator.server import run


class Command(BaseCommand):
    help = (
        "Run the local provider simulator (OpenAI, Anthropic, Gemini, Cerebras, Qwen and "
        "OpenRouter wire formats). Conventions: docs/SIMULATOR.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100)
        parser.add_argument(
            "--delay-ms",
            type=float,
            default=20,
            help="wait before each streamed chunk (default 20)",
        )

    def handle(self, *args, host: str, port: int, delay_ms: float, **options):
        run(host, port, delay_ms)
