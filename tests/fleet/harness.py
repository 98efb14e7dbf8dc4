"""Worker hosts that are really separate: one network + UTS namespace per host.

    with Fleet(hosts=4, delay=0.02) as fleet:
        a = fleet.target_address(0)             # an address of the targets' own
        fleet.start(i, "--processes", "1")      # `runner start` on host i (hostname fleet-i)
        fleet.kill_host(i)                      # kill -9 every process in host i's namespace

Layout, all made here and removed on exit (root only; Linux ``ip netns`` and ``unshare``):

    root namespace                                  namespace u15-PID-i (UTS: fleet-i)
    bridge u15bPID  10.231.X.1  ── proxies ──▶ 127.0.0.1:5432 / :5672   eth0 10.231.X.(10+i)
                    10.231.X.2.. targets          ◀── veth pair ──▶      lo

A worker host has its own address and hostname and only the bridge's /24: no route to
127.0.0.1 of the root namespace (its loopback is its own), so PostgreSQL and RabbitMQ
are reachable only through the proxies, which add ``delay`` seconds each way. X is
picked free among 10.231.20-219 so parallel runs do not meet. Nothing is sent to an
address outside the /24 the harness made.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.faults.proxy import Proxy

ROOT = Path(__file__).resolve().parents[2]
_FLEETS = itertools.count()


class NamespacesUnavailable(Exception):
    """Why this machine cannot make the fleet (not root, no ip, no namespaces)."""


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=20)


def why_unavailable() -> str | None:
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "needs iproute2 (ip) and util-linux (unshare)"
    probe = f"u15p{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _free_subnet() -> int:
    used = _ip("-4", "addr").stdout
    for x in [20 + (os.getpid() + k) % 200 for k in range(200)]:
        if f"10.231.{x}." not in used:
            return x
    raise NamespacesUnavailable("no free 10.231.X.0/24 for the fleet")


class Fleet:
    def __init__(self, hosts: int, *, delay: float = 0.02, targets: int = 2,
                 database_url: str, broker_url: str, queue: str, log_dir: Path) -> None:
        self.hosts = hosts
        self.delay = delay
        self.targets = targets
        self.database_url = database_url
        self.broker_url = broker_url
        self.queue = queue
        self.log_dir = log_dir
        # Names of this fleet's own: a namespace being torn down lingers a while in the kernel.
        tag = f"{os.getpid() % 10000}{next(_FLEETS) % 100:02d}"
        self.bridge = f"u15b{tag}"
        self.namespaces = [f"u15-{tag}-{i}" for i in range(hosts)]
        self.veths = [f"u15h{tag}{i}"[:15] for i in range(hosts)]
        self.procs: dict[int, list[subprocess.Popen[bytes]]] = {i: [] for i in range(hosts)}
        self.proxies: list[Proxy] = []
        self.subnet = 0

    # ------------------------------------------------------------------ addresses

    @property
    def gateway(self) -> str:
        return f"10.231.{self.subnet}.1"

    def target_address(self, k: int) -> str:
        return f"10.231.{self.subnet}.{2 + k}"

    def host_address(self, i: int) -> str:
        return f"10.231.{self.subnet}.{10 + i}"

    # ------------------------------------------------------------------ setup

    def __enter__(self) -> Fleet:
        why = why_unavailable()
        if why:
            raise NamespacesUnavailable(why)
        try:
            self._build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self) -> None:
        self.subnet = _free_subnet()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        for k in range(self.targets):
            _ip("addr", "add", f"{self.target_address(k)}/32", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, ns in enumerate(self.namespaces):
            _ip("netns", "add", ns)
            outside, inside = self.veths[i], f"u15i{self.bridge[4:]}{i}"[:15]
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", ns)
            _ip("link", "set", inside, "name", "eth0", ns=ns)
            _ip("addr", "add", f"{self.host_address(i)}/24", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
        db, broker = urlsplit(self.database_url), urlsplit(self.broker_url)
        for upstream in ((db.hostname or "127.0.0.1", db.port or 5432),
                         (broker.hostname or "127.0.0.1", broker.port or 5672)):
            proxy = Proxy(*upstream, listen_host=self.gateway, delay=self.delay)
            proxy.__enter__()
            self.proxies.append(proxy)

    def __exit__(self, *exc: object) -> None:
        for i in list(self.procs):
            self.kill_host(i)
        for proxy in self.proxies:
            proxy.__exit__()
        self.proxies = []
        for veth in self.veths:
            _ip("link", "del", veth, check=False)  # both ends, now (a dying namespace may linger)
        for ns in self.namespaces:
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.bridge, check=False)

    # ------------------------------------------------------------------ workers

    def _through(self, url: str, proxy: Proxy) -> str:
        parts = urlsplit(url)
        creds = parts.netloc.rpartition("@")[0]
        netloc = (creds + "@" if creds else "") + f"{self.gateway}:{proxy.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("URLTESTER_")}
        env.update(URLTESTER_DATABASE_URL=self._through(self.database_url, self.proxies[0]),
                   URLTESTER_BROKER_URL=self._through(self.broker_url, self.proxies[1]),
                   URLTESTER_QUEUE=self.queue, PYTHONUNBUFFERED="1", **extra)
        return env

    def run_in(self, i: int, argv: list[str], **extra: str) -> subprocess.Popen[bytes]:
        """Run ``argv`` on host i: its network namespace and a UTS namespace named fleet-i."""
        script = f'hostname fleet-{i} && exec "$@"'
        log = open(self.log_dir / f"fleet-{i}-{len(self.procs[i])}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(["ip", "netns", "exec", self.namespaces[i], "unshare", "--uts", "sh", "-c", script,
                                 "sh", *argv], env=self.env(**extra), cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[i].append(proc)
        return proc

    def start(self, i: int, *args: str, **extra: str) -> subprocess.Popen[bytes]:
        return self.run_in(i, [sys.executable, "-m", "runner", "start", *args], **extra)

    def pids(self, i: int) -> list[int]:
        out = _ip("netns", "pids", self.namespaces[i], check=False).stdout
        return [int(p) for p in out.split()]

    def kill_host(self, i: int) -> int:
        """kill -9 every process in host i's namespace, as a host losing power; returns how many."""
        pids = self.pids(i)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs.get(i, []):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.procs[i] = []
        return len(pids)

    def stop_host(self, i: int, timeout: float = 40) -> None:
        for proc in self.procs.get(i, []):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.get(i, []):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.kill_host(i)
