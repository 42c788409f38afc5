"""A local fake of the upstream LLM providers, speaking their real wire formats.

It lets the whole product be developed, tested, demonstrated and benchmarked
with no internet: OpenAI chat completions, Anthropic messages and Gemini
generateContent (plus the OpenAI-compatible Cerebras, Qwen and OpenRouter) on
one aiohttp server, one path prefix per provider. Replies are deterministic so
tests can assert them; failures are chosen per request. Conventions:
docs/SIMULATOR.md.

No Django imports here: the package runs alone (``python -m
providers_app.simulator``) and the management command is a thin wrapper.
"""

from providers_app.simulator.app import create_app
from providers_app.simulator.server import RunningSimulator, run, start_in_thread

__all__ = ["RunningSimulator", "create_app", "run", "start_in_thread"]
