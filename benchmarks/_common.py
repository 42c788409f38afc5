"""Small helpers shared by the benchmark scripts: statistics, tables, environment.

Kept free of Django so the benchmarks measure the kit alone.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# ~ 90 common English words; replies are built from them so chunks have realistic sizes.
WORDS = (
    "the of and to in is that it for was on are as with be at by this have from or one had "
    "not but what all were when we there can an your which their said if do will each about "
    "how up out them then she many some so these would other into has more her two like him "
    "see time could no make than first been its who now people my made over did down only way "
    "find use may water long little very after words called just where most know"
).split()


def words(n: int, offset: int = 0) -> list[str]:
    return [WORDS[(i + offset) % len(WORDS)] for i in range(n)]


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile (with 30 samples: the 29th smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-95 * len(ordered) // 100))  # ceil(0.95 n)
    return ordered[rank - 1]


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    right = [i > 0 for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                v.rjust(w) if r else v.ljust(w)
                for v, w, r in zip(values, widths, right, strict=True)
            )
            + " |"
        )

    sep = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if r else (":" + "-" * (w + 1))
            for w, r in zip(widths, right, strict=True)
        )
        + "|"
    )
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def cpu_model() -> str:
    try:
        for text_line in Path("/proc/cpuinfo").read_text().splitlines():
            if text_line.startswith("model name"):
                return text_line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> str:
    versions = []
    for name in ("httpx", "aiohttp"):
        try:
            module = __import__(name)
            versions.append(f"{name} {module.__version__}")
        except ImportError:
            versions.append(f"{name} not installed")
    return (
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()} "
        f"({platform.python_implementation()}); {', '.join(versions)}; "
        f"{platform.system()} {platform.release()}"
    )


# --- process measurement (Linux /proc), used by bench_dataplane.py ---------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (a multi-worker server's workers, its reloaders)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited while we looked
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (children that exited
    and were waited for are in their parent's cutime/cstime, counted too)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pids: list[int]) -> float:
    """Resident memory of the processes, summed, in MiB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile, ``p`` in percent; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-int(p * 10) * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


def load_line() -> str:
    """The machine's load, as ``uptime`` prints it (the box is shared: quote it with figures)."""
    one, five, fifteen = os.getloadavg()
    return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} cores)"


CALIBRATION_LOOPS = 5_000_000


def cpu_calibration(loops: int = CALIBRATION_LOOPS, repeat: int = 3) -> float:
    """Seconds one core takes for a fixed pure-Python loop, best of ``repeat``.

    Figures from different machines (or the same VM on a different host) differ by the
    speed of a core: this loop puts a number on it, so a run quoting it can be scaled
    against another. Best of three, because a loop sharing its core with another
    process is only ever slowed down; a calibration far above the usual one still
    says the core was contended. ~0.2-0.5 s per loop.
    """
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        total = 0
        for i in range(loops):
            total += i
        best = min(best, time.perf_counter() - started)
    return best


def calibration_line() -> str:
    """Printed next to ``load_line()``: the same loop's time on two machines is their
    per-core speed ratio for interpreted Python (what the gateway mostly runs)."""
    seconds = cpu_calibration()
    return (
        f"CPU calibration: {CALIBRATION_LOOPS / 1e6:g}M-iteration Python loop "
        f"{1000 * seconds:.0f} ms (best of 3; lower is faster)"
    )
