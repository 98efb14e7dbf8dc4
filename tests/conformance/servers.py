"""Real HTTP servers from Debian's packages, started on 127.0.0.1 with configs written here.

nginx and Apache httpd run in the foreground as children of the test process, each in a
directory of its own (config, document root, pid file, logs), on ephemeral ports; Python's
``http.server`` stands in for an HTTP/1.0 server (it answers ``HTTP/1.0``, and nobody here
wrote it either). Run as root, the servers' workers drop to www-data, so the directory is
made world-readable. Nothing here is a mock: these are the servers operators check.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.services import free_port, free_ports

APACHE_MODULES = Path("/usr/lib/apache2/modules")
TOOLS = ("nginx", "apache2", "curl", "openssl")


def which(name: str) -> str | None:
    """A tool on PATH, or in /usr/sbin (not on a non-root PATH on Debian)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    return found


def require(name: str) -> str:
    """The tool's path; skips with the reason on a laptop, fails with CI=true."""
    path = which(name)
    if path is None:
        message = (f"{name} is not installed: the conformance suite needs nginx, apache2, curl, "
                   "openssl and linkchecker (scripts/test installs them as root on Debian)")
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def wait_port(port: int, proc: subprocess.Popen, what: str, log: Path | None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    text = log.read_text()[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}: {text}")


@dataclass
class Running:
    name: str
    proc: subprocess.Popen
    ports: dict[str, int] = field(default_factory=dict)

    def url(self, path: str = "/", port: str = "http", scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.ports[port]}{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def _popen(args: list[str], log: Path) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 - the child writes it until it stops
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def write_site(root: Path) -> None:
    """The document root every server serves: a page, a compressible text, a large file."""
    (root / "static").mkdir(parents=True)
    (root / "gz").mkdir()
    page = ("<!doctype html><html><head><title>Conformance page</title></head><body>"
            + "<p>static content</p>\n" * 80 + "</body></html>\n")
    (root / "static" / "index.html").write_text(page)
    (root / "gz" / "text.txt").write_text("compress me, please. " * 5000)
    (root / "large.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    for i in range(20):
        (root / "static" / f"p{i}.txt").write_text(f"page {i}\n" * 10)


# ---------------------------------------------------------------- nginx


NGINX_TLS_CASES = ("valid", "expired", "not_yet_valid", "wrong_host", "self_signed",
                   "missing_intermediate", "tls1_0")


def start_nginx(base: Path, certs: dict[str, tuple[Path, Path]]) -> Running:
    """nginx with its keep-alive limits turned low, every HTTP case, one TLS server per case."""
    binary = require("nginx")
    names = ["http", "other", "idle", *certs]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (base / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    tls_servers = []
    for case, (cert, key) in certs.items():
        protocols = "TLSv1" if case == "tls1_0" else "TLSv1.2 TLSv1.3"
        tls_servers.append(f"""
    server {{
        listen 127.0.0.1:{ports[case]} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols {protocols};
        ssl_ciphers DEFAULT:@SECLEVEL=0;
        root {base}/www;
    }}""")
    user = "user www-data;" if os.geteuid() == 0 else ""
    conf = f"""
{user}
worker_processes 1;
daemon off;
pid {base}/nginx.pid;
error_log {base}/nginx-error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {base}/tmp/body;
    proxy_temp_path {base}/tmp/proxy;
    fastcgi_temp_path {base}/tmp/fastcgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    scgi_temp_path {base}/tmp/scgi;
    types {{ text/html html; text/plain txt; application/octet-stream bin; }}
    default_type application/octet-stream;
    # Keep-alive limits turned low: every connection is closed after its first request,
    # and an idle one after 1 s.
    keepalive_requests 1;
    keepalive_timeout 1s;
    server {{
        listen 127.0.0.1:{ports["http"]};
        root {base}/www;
        location /gz/ {{ gzip on; gzip_types text/plain; gzip_min_length 20; }}
        location = /r/301 {{ return 301 /r/302; }}
        location = /r/302 {{ return 302 /r/303; }}
        location = /r/303 {{ return 303 /r/307; }}
        location = /r/307 {{ return 307 /r/308; }}
        location = /r/308 {{ return 308 /static/index.html; }}
        location = /r/relative {{ absolute_redirect off; return 302 /static/index.html; }}
        location = /r/other-port {{ return 302 http://127.0.0.1:{ports["other"]}/static/index.html; }}
        location = /r/loop {{ return 302 /r/loop; }}
        location = /s/204 {{ return 204; }}
        location = /s/304 {{ return 304; }}
        location = /s/404 {{ return 404; }}
        location = /s/410 {{ return 410; }}
        location = /s/500 {{ return 500; }}
        location = /s/503 {{ add_header Retry-After 1 always; return 503; }}
    }}
    server {{
        listen 127.0.0.1:{ports["other"]};
        root {base}/www;
    }}
    server {{
        # Many requests per connection, but an idle connection is closed after 1 s: the
        # close races a client's next request on it.
        listen 127.0.0.1:{ports["idle"]};
        keepalive_requests 1000;
        root {base}/www;
    }}
{"".join(tls_servers)}
}}
"""
    (base / "nginx.conf").write_text(conf)
    log = base / "nginx.out"
    proc = _popen([binary, "-p", str(base), "-c", str(base / "nginx.conf")], log)
    running = Running("nginx", proc, ports)
    for port in ports.values():
        wait_port(port, proc, "nginx", base / "nginx-error.log")
    return running


# ---------------------------------------------------------------- Apache httpd


def start_apache(base: Path) -> Running:
    """Apache httpd (event MPM) with MaxKeepAliveRequests 2 and KeepAliveTimeout 1."""
    binary = require("apache2")
    port = free_port()
    modules = ["mpm_event", "authz_core", "mime", "dir", "alias", "headers", "filter", "deflate"]
    loads = "\n".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in modules)
    user = "User www-data\nGroup www-data" if os.geteuid() == 0 else ""
    conf = f"""
{loads}
ServerRoot {base}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {base}/apache.pid
ErrorLog {base}/apache-error.log
LogLevel warn
DefaultRuntimeDir {base}
Mutex file:{base} default
{user}
TypesConfig /etc/mime.types
DocumentRoot {base}/www
<Directory {base}/www>
    Require all granted
</Directory>
KeepAlive On
MaxKeepAliveRequests 2
KeepAliveTimeout 1
StartServers 1
ServerLimit 4
ThreadsPerChild 64
MaxRequestWorkers 256
<Location /gz/>
    SetOutputFilter DEFLATE
</Location>
Redirect 301 /r/301 /r/302
Redirect 302 /r/302 /r/303
Redirect 303 /r/303 /r/307
Redirect 307 /r/307 /r/308
Redirect 308 /r/308 /static/index.html
Redirect 410 /s/410
"""
    (base / "apache.conf").write_text(conf)
    log = base / "apache.out"
    proc = _popen([binary, "-f", str(base / "apache.conf"), "-DFOREGROUND"], log)
    running = Running("apache", proc, {"http": port})
    wait_port(port, proc, "apache2", base / "apache-error.log")
    return running


# ---------------------------------------------------------------- HTTP/1.0


def start_http10(base: Path) -> Running:
    """Python's http.server: answers HTTP/1.0 and closes after each response."""
    port = free_port()
    log = base / "http10.out"
    proc = _popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                   "--directory", str(base / "www"), str(port)], log)
    running = Running("http.server", proc, {"http": port})
    wait_port(port, proc, "http.server", log)
    return running
