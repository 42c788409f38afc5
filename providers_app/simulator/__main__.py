"""``python -m providers_app.simulator --port 8100``: the simulator without Django."""

import argparse

from providers_app.simulator.server import run


def main() -> None:
    parser = argparse.ArgumentParser(description="aipk provider simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument(
        "--delay-ms", type=float, default=20, help="wait before each streamed chunk"
    )
    args = parser.parse_args()
    run(args.host, args.port, args.delay_ms)


if __name__ == "__main__":
    main()
