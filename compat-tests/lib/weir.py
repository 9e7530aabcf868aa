"""Starting and stopping a `weir` broker process for the compat tests.

Only processes started here are ever signalled, always by PID. Everything
listens on and talks to 127.0.0.1 only, but for nodes a cluster test runs in
network namespaces it creates (lib/network.py).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from . import wire

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
READY_TIMEOUT_S = float(os.environ.get("WEIR_READY_TIMEOUT", "20"))
STOP_TIMEOUT_S = 10.0

# Every Weir created in this process, so a failing test can show the logs' tails.
REGISTRY: list["Weir"] = []


def weir_bin() -> Path:
    """$WEIR_BIN, else $CARGO_TARGET_DIR/debug/weir (default target/), relative to the repo root."""
    env = os.environ.get("WEIR_BIN")
    if env:
        p = Path(env)
    else:
        p = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "debug" / "weir"
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range: a port the kernel could also hand
    to an outgoing connection (a client's, or a broker's to another broker) may be taken
    between this call and the broker binding it. Never the same port twice in one run."""
    low, _ = _ephemeral_range()
    for _ in range(1000):
        port = random.randrange(10000, max(low, 10001))
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class WeirError(RuntimeError):
    pass


class Weir:
    """One weir process with its own port and data directory.

    `overrides` are extra `--override key=value` pairs (Kafka property names).
    The data dir and the port survive kill9()/stop() + restart().
    """

    def __init__(self, overrides: dict[str, object] | None = None, name: str = "weir",
                 env: dict[str, str] | None = None):
        self.name = name
        # Extra environment of the broker process (test hooks such as WEIR_STORAGE_FAULTS).
        self.env = dict(env or {})
        self.bin = weir_bin()
        self.port = free_port()
        # The address it listens on, and the prefix running it in a network namespace, if any.
        self.host = HOST
        self.exec_prefix: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.data_dir = self.tmp / "data"
        self.data_dir.mkdir()
        self.log_path = self.tmp / "weir.stderr.log"
        self.overrides = {
            "node.id": 1,
            "listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "log.dirs": str(self.data_dir),
        }
        self.overrides.update(overrides or {})
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        # A controller-only node serves no clients: it is ready when its log says so.
        self.serves_clients = True
        REGISTRY.append(self)

    # ------------------------------------------------------------ addresses

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status_kib(self, field: str) -> int:
        """A memory figure of the running broker from /proc/PID/status, in KiB
        (VmRSS: resident now; VmHWM: peak resident)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    # ------------------------------------------------------------ lifecycle

    def command(self) -> list[str]:
        cmd = [*self.exec_prefix, str(self.bin)]
        config = REPO_ROOT / "weir.yaml"
        if config.exists():
            cmd += ["--config", str(config)]
        for k, v in self.overrides.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            cmd += ["--override", f"{k}={v}"]
        return cmd

    def start(self, wait: bool = True) -> "Weir":
        """Starts the process; with `wait`, returns once it serves requests."""
        if self.alive():
            raise WeirError(f"{self.name} already running (pid {self.pid})")
        if not self.bin.exists():
            raise WeirError(f"weir binary not found at {self.bin} (build it: make build, or set WEIR_BIN)")
        # Our own WEIR_* variables (WEIR_BIN, ...) must not leak into the broker's config.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("RUST_LOG", "info,openraft=warn")
        env.setdefault("NO_COLOR", "1")
        env.update(self.env)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=str(self.tmp), env=env,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Ready = a TCP connect succeeds and ApiVersions gets an answer; for a node that
        serves no clients, its log says "Weir started" once for each start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WeirError(
                    f"{self.name} exited with {self.proc.returncode} before it was ready\n{self.tail()}")
            if self.serves_clients and wire.probe_api_versions(self.host, self.port, timeout=1.0):
                return
            if not self.serves_clients and self.log_path.read_text(errors="replace").count("Weir started") >= self.starts:
                return
            time.sleep(0.1)
        tail = self.tail()
        self._kill()
        raise WeirError(f"{self.name} not ready on {self.bootstrap} after {timeout}s\n{tail}")

    def _kill(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass

    def kill9(self) -> None:
        """SIGKILL: no chance to flush or write a clean-shutdown marker."""
        if not self.alive():
            raise WeirError(f"{self.name} is not running\n{self.tail()}")
        self._kill()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused process handles SIGTERM only once resumed
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with open(self.log_path, "ab") as log:
                    log.write(f"\n===== harness: no exit {timeout}s after SIGTERM, sending SIGKILL\n".encode())
                self._kill()
        return self.proc.returncode

    def restart(self, wait: bool = True) -> "Weir":
        """Starts again on the same port with the same data dir (stops it first if running)."""
        if self.alive():
            self.stop()
        return self.start(wait=wait)

    def pause(self) -> None:
        """SIGSTOP: the process stays, but answers nothing until resume()."""
        if not self.alive():
            raise WeirError(f"{self.name} is not running\n{self.tail()}")
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)

    def cleanup(self) -> None:
        self.stop()
        if self in REGISTRY:
            REGISTRY.remove(self)
        if os.environ.get("WEIR_KEEP_DATA"):
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------ logs

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"({self.log_path} unreadable)"
        rest = text.splitlines()[-lines:]
        return f"--- last {len(rest)} lines of {self.log_path} ---\n" + "\n".join(rest)

    def __repr__(self) -> str:
        return f"Weir({self.name}, {self.bootstrap}, pid={self.pid})"
