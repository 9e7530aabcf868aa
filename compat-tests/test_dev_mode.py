"""`weir --dev`: a throwaway broker for other projects' tests. It prints its
bootstrap address on stdout when ready, serves real clients, and removes its
data directory when stopped."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import tempfile

from lib.clients import consume_assigned, produce
from lib.weir import weir_bin


def _start(*extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([str(weir_bin()), "--dev", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "NO_COLOR": "1"})
    line = proc.stdout.readline().strip()
    assert line.startswith("127.0.0.1:"), f"--dev printed {line!r}"
    return proc, line


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _data_dirs(pid: int) -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), f"weir-dev-{pid}-*"))


def test_dev_broker_serves_clients_and_cleans_up():
    proc, bootstrap = _start()
    try:
        assert _data_dirs(proc.pid), "no data dir while running"
        delivered = produce(bootstrap, "dev-topic", [{"key": b"k%d" % i, "value": b"v%d" % i} for i in range(100)])
        assert [d.offset for d in delivered] == list(range(100))
        got = consume_assigned(bootstrap, "dev-topic", [0], expected=100)
        assert [m.value() for m in got] == [b"v%d" % i for i in range(100)]
    finally:
        _stop(proc)
    assert proc.returncode == 0
    assert not _data_dirs(proc.pid), "the data dir outlived the broker"


def test_dev_broker_on_a_given_port_with_overrides():
    probe, first = _start()
    port = int(first.split(":")[1])
    _stop(probe)
    proc, bootstrap = _start("--port", str(port), "--override", "num.partitions=3")
    try:
        assert bootstrap == f"127.0.0.1:{port}"
        delivered = produce(bootstrap, "dev-three", [{"key": b"k%d" % i, "value": b"v"} for i in range(30)])
        assert {d.partition for d in delivered} <= {0, 1, 2} and len({d.partition for d in delivered}) > 1
    finally:
        _stop(proc)
