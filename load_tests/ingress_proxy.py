"""The production Ingress on loopback: Debian's nginx in front of the service, configured as
ingress-nginx configures itself from our Ingress's annotations (per-client connection and
request-rate limits, the body limit, keep-alive to the service), for the tests.

What the annotations and the controller ConfigMap settings docs/deployment.md names decide is
taken from them, and the defaults of ingress-nginx's template that bear on a flood are copied
(worker connections, keep-alive, header and body buffers, no response buffering). Not copied:
TLS and HTTP/2 (the test speaks plain HTTP/1.1), and the controller's Lua balancer (one
upstream here). Where no nginx is installed `MISSING` says how to get it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from load_tests.harness import free_port, wait_for

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
MISSING = "nginx not installed: make nginx (Debian's nginx-light)"
ANNOTATION = "nginx.ingress.kubernetes.io/"
LIMIT_STATUS = 429
"""The controller ConfigMap's `limit-conn-status-code` and `limit-req-status-code` as
docs/deployment.md sets them (ingress-nginx answers 503 by default: not the client's fault)."""


UPSTREAM_KEEPALIVE_S = 4
"""The controller ConfigMap's `upstream-keepalive-timeout` as docs/deployment.md sets it: below
the service's idle timeout, so nginx drops a kept-alive connection before the service closes
it (ingress-nginx keeps them 60 s by default)."""


@dataclass(frozen=True)
class IngressLimits:
    """What the Ingress's annotations ask of the controller."""

    connections: int
    rps: int
    burst_multiplier: int
    body_size: str
    read_timeout_s: int

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str]) -> IngressLimits:
        """The limits an Ingress sets; ingress-nginx's defaults where it sets none."""
        given = {k.removeprefix(ANNOTATION): v for k, v in annotations.items()}
        return cls(
            connections=int(given["limit-connections"]),
            rps=int(given["limit-rps"]),
            burst_multiplier=int(given.get("limit-burst-multiplier", "5")),
            body_size=given.get("proxy-body-size", "1m"),
            read_timeout_s=int(given.get("proxy-read-timeout", "60")),
        )

    @property
    def burst(self) -> int:
        """Requests served at once above the rate, as ingress-nginx computes it."""
        return self.rps * self.burst_multiplier


def nginx_size_bytes(size: str) -> int:
    """An nginx size ("1m", "8k", "512") in bytes: the units are powers of 1,024."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    unit = units.get(size[-1:].lower(), 1)
    return int(size[:-1] if unit > 1 else size) * unit


def nginx_conf(limits: IngressLimits, upstream: str, listen: int, root: Path) -> str:
    """An nginx.conf with the parts of ingress-nginx's template that the limits touch."""
    temp = "\n".join(
        f"  {kind}_temp_path {root}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
worker_processes auto;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
  access_log off;
{temp}
  keepalive_timeout 75s;
  keepalive_requests 1000;
  client_header_buffer_size 1k;
  large_client_header_buffers 4 8k;
  client_body_buffer_size 8k;
  client_max_body_size {limits.body_size};
  limit_conn_status {LIMIT_STATUS};
  limit_req_status {LIMIT_STATUS};
  limit_conn_zone $binary_remote_addr zone=connections:5m;
  limit_req_zone $binary_remote_addr zone=rps:5m rate={limits.rps}r/s;
  upstream service {{
    server {upstream};
    keepalive 320;
    keepalive_timeout {UPSTREAM_KEEPALIVE_S}s;
    keepalive_requests 10000;
  }}
  server {{
    listen 127.0.0.1:{listen} reuseport;
    location / {{
      limit_conn connections {limits.connections};
      limit_req zone=rps burst={limits.burst} nodelay;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_connect_timeout 5s;
      proxy_send_timeout 60s;
      proxy_read_timeout {limits.read_timeout_s}s;
      proxy_buffering off;
      proxy_pass http://service;
    }}
  }}
}}
"""


@dataclass
class IngressProxy:
    """A running nginx in front of `upstream`."""

    url: str
    root: Path
    process: subprocess.Popen[bytes]

    def error_log(self) -> str:
        """What nginx logged (warnings and errors)."""
        return (self.root / "error.log").read_text(errors="replace")


@contextmanager
def ingress_proxy(limits: IngressLimits, upstream_url: str) -> Iterator[IngressProxy]:
    """nginx on a loopback port in front of `upstream_url` while the context is open."""
    if NGINX is None:
        raise RuntimeError(MISSING)
    root = Path(tempfile.mkdtemp(prefix="credit-risk-ingress-"))
    root.chmod(0o755)  # started as root, nginx's workers run as nobody and write bodies here
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(nginx_conf(limits, upstream_url.removeprefix("http://"), port, root))
    argv = [NGINX, "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)]
    subprocess.run([*argv, "-t", "-q"], check=True, capture_output=True)
    process = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    proxy = IngressProxy(f"http://127.0.0.1:{port}", root, process)
    try:
        wait_for(lambda: _accepts(port) or process.poll() is not None, "nginx listening", 30)
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {proxy.error_log()}")
        yield proxy
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(root, ignore_errors=True)


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
