"""Child processes of the bench (fake exchange, gateway): start, wait until ready, measure, always stop.

Every child gets PR_SET_PDEATHSIG, so it dies with the bench even if the bench is killed with
SIGKILL; `stop_all` (also run at exit and on SIGTERM) terminates whatever is still running.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt
import yaml

from bench.fake import STATS_PATH

ROOT = Path(__file__).resolve().parent.parent
_CHILDREN: list[Child] = []
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the bench process goes away."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_mb(self) -> float:
        """Resident set size (VmRSS) of the process, in MB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"{self.name}: no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def wait_ready(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; log: {self.tail()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; log: {self.tail()}")

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        if self in _CHILDREN:
            _CHILDREN.remove(self)


def _spawn(name: str, args: list[str], url: str, workdir: Path) -> Child:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    child = Child(name, popen, url, log_path)
    _CHILDREN.append(child)
    return child


def start_fake(
    workdir: Path, latency_ms: float, keys: int, extra: tuple[str, ...] = (), name: str | None = None
) -> Child:
    """`extra`: more bench/fake.py options (e.g. --ws-interval, --extra-symbols, --move, --ops)."""
    port = free_port()
    args = ["-m", "bench.fake", "--port", str(port), "--latency-ms", str(latency_ms), "--keys", str(keys), *extra]
    child = _spawn(name or f"fake-binance-{latency_ms:g}ms", args, f"http://127.0.0.1:{port}", workdir)
    child.wait_ready(STATS_PATH)
    return child


def start_gateway(workdir: Path, fake_url: str, name: str = "gateway", exchanges: dict | None = None) -> Child:
    """`exchanges`: the config's routes instead of the one `binance` route on the fake."""
    config = {
        "server": {"log_level": "warning"},
        "allow_any_ccxt_exchange": False,
        "exchanges": exchanges
        or {"binance": {"ccxt": "binance", "api_base": fake_url, "ccxt_config": {"enableRateLimit": False}}},
    }
    return spawn_gateway(workdir, name, config)


def spawn_gateway(workdir: Path, name: str, config: dict[str, Any]) -> Child:
    """The gateway serving `config` (written into `workdir`), once its /healthz answers."""
    port = free_port()
    config_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".yaml", dir=workdir)[1])
    config_path.write_text(yaml.safe_dump(config))
    args = ["-m", "gateway", "serve", "--config", str(config_path), "--port", str(port)]
    child = _spawn(name, args, f"http://127.0.0.1:{port}", workdir)
    child.wait_ready("/healthz")
    return child


def stop_all() -> None:
    for child in list(_CHILDREN):
        child.stop()


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


atexit.register(stop_all)
signal.signal(signal.SIGTERM, _on_sigterm)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_loop(coro: Any) -> Any:
    """Run a coroutine on uvloop where installed (as the gateway runs), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_benchmark(prefix: str, make: Callable[[Path], Awaitable[Any]], *, plain_asyncio: bool = False) -> Any:
    """`make(workdir)` run to its end in a fresh temporary folder; every child process is stopped
    after. None when interrupted (the caller then exits 130)."""
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            coro = make(Path(tmp))
            return asyncio.run(coro) if plain_asyncio else run_loop(coro)
    except KeyboardInterrupt:
        log("interrupted")
        return None
    finally:
        stop_all()


def finite(value: Any) -> Any:
    """The results with NaN (a run without a successful request) as null, for strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write_results(out: Path, doc: dict[str, Any]) -> None:
    """The results file: indented strict JSON."""
    out.write_text(json.dumps(finite(doc), indent=2, default=str, allow_nan=False) + "\n")


def meta(started: float, args: Any, **extra: Any) -> dict[str, Any]:
    """What a results file says about its run: when, how long, which Python and ccxt, the options."""
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "python": platform.python_version(),
        "ccxt": ccxt.__version__,
        **extra,
        "args": dict(vars(args)),
    }
