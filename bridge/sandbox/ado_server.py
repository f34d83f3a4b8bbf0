"""The Azure DevOps stand-in over real HTTP, on 127.0.0.1 only.

``AzureDevOpsServer`` serves an :class:`~bridge.sandbox.azure_devops.AzureDevOpsStandIn` from a
``ThreadingHTTPServer`` on a free loopback port, in a daemon thread, for as long as its ``with``
block runs (it always shuts down, also when the block raises)::

    with AzureDevOpsServer() as server:
        organization = server.organization_url("contoso")  # http://127.0.0.1:PORT/contoso
        ...  # smbridge --organization <organization>, or azure_devops.organization in
        ...  # bridge.yaml, or a trigger route's "organization": the bridge takes it as is

The paths are the service's (``/{organization}/{project}/_apis/...``): the URL's origin is the
only difference from ``https://dev.azure.com/{organization}``, and the bridge's
``organization_url`` (bridge/azure_devops/client.py) accepts a plain-http organization URL for a
loopback host only. Plain http is why the server refuses to listen anywhere but on loopback: the
credential travels in clear text.

Injected transport faults are acted out on the socket: ``connection`` closes it without an
answer; ``timeout`` holds the request unanswered for ``hold_seconds`` (or until shutdown), then
closes it. Nothing is logged to stderr; each answered request goes to the ``bridge.sandbox``
logger at DEBUG as method, path and status (never a header).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import quote

from bridge.sandbox.azure_devops import AzureDevOpsStandIn, TransportFault

LOG = logging.getLogger("bridge.sandbox")
LOOPBACK = ("127.0.0.1", "localhost")  # IPv4: ThreadingHTTPServer binds AF_INET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False

    def __init__(self, address: tuple[str, int], owner: AzureDevOpsServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        with self.connections_lock:
            self.connections.add(connection)
        return connection, address

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close the kept-alive connections too: after stop, no client can reach the state."""
        with self.connections_lock:
            connections, self.connections = list(self.connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a requests.Session expects
    server: _Server
    timeout = 30  # an idle kept-alive connection is closed after this many seconds
    disable_nagle_algorithm = True  # headers and body leave at once, no delayed-ACK stall

    def _serve(self) -> None:
        owner = self.server.owner
        if self.headers.get("Transfer-Encoding"):  # the bridge (requests) sends a length
            self._write(411, {"Content-Type": "text/plain"}, b"Content-Length required")
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        host, port = self.server.server_address[:2]
        url = f"http://{host}:{port}{self.path}"
        try:
            response = owner.stand_in.handle(self.command, url, dict(self.headers.items()), body)
        except TransportFault as fault:
            if fault.kind == "timeout":
                owner.stopping.wait(owner.hold_seconds)
            self.close_connection = True
            LOG.debug("%s %s: %s, no answer", self.command, self.path.split("?")[0], fault.kind)
            return
        self._write(response.status, response.headers, response.body)

    def _write(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        LOG.debug("%s %s: %s", self.command, self.path.split("?")[0], status)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: http.server would print every request line to stderr."""


class AzureDevOpsServer:
    """The stand-in on ``http://127.0.0.1:PORT/`` (a free port unless ``port`` is given)."""

    def __init__(
        self,
        stand_in: AzureDevOpsStandIn | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hold_seconds: float = 60.0,
    ) -> None:
        if host not in LOOPBACK:
            raise ValueError(
                f"host {host!r}: the sandbox serves plain http on loopback only (127.0.0.1)"
            )
        self.stand_in = stand_in if stand_in is not None else AzureDevOpsStandIn()
        self.hold_seconds = hold_seconds
        self.stopping = threading.Event()
        self._address = (host, port)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> AzureDevOpsServer:
        if self._httpd is not None:
            raise RuntimeError("the Azure DevOps stand-in server is already running")
        self.stopping.clear()
        self._httpd = _Server(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"sandbox-ado-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port and every open connection (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        try:
            httpd.shutdown()
        finally:
            httpd.server_close()
            httpd.drop_connections()
            if self._thread is not None:
                self._thread.join()
                self._thread = None

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> AzureDevOpsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where it is ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the Azure DevOps stand-in server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/``."""
        port = self.port  # RuntimeError unless running
        assert self._httpd is not None
        return f"http://{self._httpd.server_address[0]}:{port}/"

    def organization_url(self, organization: str = "contoso") -> str:
        """What to give the bridge as the organization (``--organization``,
        ``azure_devops.organization`` in bridge.yaml, a trigger route's ``organization``):
        ``http://127.0.0.1:PORT/contoso``. The bridge then sends
        ``http://127.0.0.1:PORT/contoso/{project}/_apis/...``, the service's paths."""
        return self.base_url + quote(organization, safe="")

    def bridge_environ(
        self, organization: str = "contoso", project: str = "mlops"
    ) -> dict[str, str]:
        """The ``SMBRIDGE_*`` overrides of bridge.yaml that point the CLI at this server."""
        return {
            "SMBRIDGE_AZURE_DEVOPS__ORGANIZATION": self.organization_url(organization),
            "SMBRIDGE_AZURE_DEVOPS__PROJECT": project,
        }
