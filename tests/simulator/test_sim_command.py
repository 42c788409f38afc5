"""``manage.py simulate_providers`` is a thin wrapper around providers_app.simulator.server.run."""

from django.core.management import call_command

from providers_app.management.commands import simulate_providers


def test_it_passes_host_port_and_delay_to_the_server(monkeypatch):
    calls = []
    monkeypatch.setattr(simulate_providers, "run", lambda *args: calls.append(args))
    call_command("simulate_providers", "--port", "8123", "--host", "0.0.0.0", "--delay-ms", "5")
    call_command("simulate_providers")
    assert calls == [("0.0.0.0", 8123, 5.0), ("127.0.0.1", 8100, 20.0)]


def test_it_does_not_pull_django_into_the_simulator_package():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, providers_app.simulator, providers_app.simulator.server;"
        "print(any(m == 'django' or m.startswith('django.') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "False"
