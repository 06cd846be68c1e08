"""A tiny HTTP server for the demo page (stdlib http.server in a thread, 127.0.0.1 only).

GET /            the page          GET /state.json   live state (polled by the page)
GET /rgb.jpg, /depth.jpg, /map.jpg  current images    GET /seen?frame=N  page's display beacon
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from streamvln.demo.live import LiveState
from streamvln.demo.page import PAGE_HTML


def _handler_for(state: LiveState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlsplit(self.path)
            if url.path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", PAGE_HTML.encode())
            elif url.path == "/state.json":
                self._send(200, "application/json", json.dumps(state.snapshot()).encode())
            elif url.path.endswith(".jpg") and url.path[1:-4] in ("rgb", "depth", "map"):
                data = state.image(url.path[1:-4])
                if data:
                    self._send(200, "image/jpeg", data)
                else:
                    self._send(404, "text/plain", b"no image yet")
            elif url.path == "/seen":
                frame = parse_qs(url.query).get("frame", [""])[0]
                if not frame.isdigit():
                    self._send(400, "text/plain", b"seen needs ?frame=N")
                    return
                state.record_seen(int(frame))
                self._send(204, "text/plain", b"")
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # the page polls 5 times a second: stay quiet
            pass

    return Handler


class DemoWebServer:
    """Serves the page on 127.0.0.1:`port` (0 picks a free port) from a daemon thread."""

    def __init__(self, state: LiveState, port: int = 8000, host: str = "127.0.0.1") -> None:
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(state))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="demo-web", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> str:
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
