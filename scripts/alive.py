"""Liveness check for containers (Dockerfile HEALTHCHECK, the Kubernetes liveness probe).

Exit 0 when the server on 127.0.0.1:$PORT answers GET /health with any HTTP status, 1 when
nothing answers. /health is 503 while a *provider* is degraded: a liveness check that
failed on it would restart healthy servers because OpenAI is down, so only "the process
answers HTTP" counts here. Routing decisions use /ready. Standard library only: it runs
every few seconds and must not import Django.
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health"
    try:
        with urllib.request.urlopen(url, timeout=float(os.environ.get("ALIVE_TIMEOUT", "4"))):
            return 0
    except urllib.error.HTTPError:
        return 0  # it answered: alive, whatever it thinks of the providers
    except OSError as error:
        print(f"not alive: {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
