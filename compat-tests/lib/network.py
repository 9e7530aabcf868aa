"""Network namespaces for the cluster tests that cut links between nodes.

Each node runs in its own namespace with one interface on a bridge; the bridge
lives in a namespace of its own (so the host's firewall never sees the
traffic), and the test process reaches it through one more link, as the
host. Everything is on a private /24 chosen per test process; nothing leaves
the machine.

    host (10.213.N.254) --- [bridge namespace] --- node 1 (10.213.N.1)
                                               \\-- node 2 (10.213.N.2) ...

`isolate(i)` cuts node i off from the other nodes in both directions while
every node stays reachable from the host (its clients): each side routes the
other's address through a neighbour that does not exist, so packets vanish in
flight as on a real partition, and new connections fail once neighbour
discovery gives up. `heal(i)` restores the routes. Needs root (CAP_NET_ADMIN);
`available()` says whether this process may create namespaces.
"""

from __future__ import annotations

import os
import subprocess

SUBNET_PREFIX = "10.213"
HOST_SUFFIX = 254
# A neighbour address nothing answers for: routing through it drops packets silently.
NOWHERE_SUFFIX = 253


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def available() -> bool:
    """Whether `ip netns` works here (root, with CAP_NET_ADMIN and CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        return False
    probe = f"weir-probe-{os.getpid()}"
    try:
        if _ip("netns", "add", probe, check=False).returncode != 0:
            return False
        _ip("netns", "del", probe, check=False)
        return True
    except (OSError, subprocess.TimeoutExpired):
        return False


class Network:
    """A bridge namespace, the host's link to it, and one namespace per node id."""

    def __init__(self, node_ids: list[int]):
        tag = os.getpid() % 100000
        self.subnet = f"{SUBNET_PREFIX}.{os.getpid() % 250}"
        self.switch = f"weir-sw-{tag}"
        self.host_link = f"weirh{tag}"
        self.node_ids = list(node_ids)
        self.namespaces = {i: f"weir-{tag}-n{i}" for i in node_ids}
        self.isolated: set[int] = set()
        self.created: list[str] = []
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise

    def _build(self) -> None:
        _ip("netns", "add", self.switch)
        self.created.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        _ip("link", "add", self.host_link, "type", "veth", "peer", "name", "host", "netns", self.switch)
        _ip("-n", self.switch, "link", "set", "host", "master", "br0", "up")
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.host_link)
        _ip("link", "set", self.host_link, "up")
        for i, ns in self.namespaces.items():
            _ip("netns", "add", ns)
            self.created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", self.switch, "link", "add", f"n{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.switch, "link", "set", f"n{i}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    @property
    def host_address(self) -> str:
        return f"{self.subnet}.{HOST_SUFFIX}"

    def address(self, node_id: int) -> str:
        """The node's address, reachable from the host and from the other nodes."""
        return f"{self.subnet}.{node_id}"

    def exec_prefix(self, node_id: int) -> list[str]:
        """The command prefix that runs a process in the node's namespace."""
        return ["ip", "netns", "exec", self.namespaces[node_id]]

    def _routes(self, node_id: int, action: str) -> None:
        nowhere = f"{self.subnet}.{NOWHERE_SUFFIX}"
        for other in self.node_ids:
            if other == node_id:
                continue
            for src, dst in ((node_id, other), (other, node_id)):
                _ip("-n", self.namespaces[src], "route", action, f"{self.address(dst)}/32",
                    "via", nowhere, "dev", "eth0", check=action == "add")

    def isolate(self, node_id: int) -> None:
        """Cuts `node_id` off from every other node, both ways; clients still reach it."""
        if node_id not in self.isolated:
            self._routes(node_id, "add")
            self.isolated.add(node_id)

    def heal(self, node_id: int) -> None:
        if node_id in self.isolated:
            self._routes(node_id, "del")
            self.isolated.discard(node_id)

    def destroy(self) -> None:
        """Removes every namespace (and with them their links); the processes must be stopped first."""
        for ns in reversed(self.created):
            _ip("netns", "del", ns, check=False)
        self.created.clear()
        _ip("link", "del", self.host_link, check=False)
