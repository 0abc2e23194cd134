"""A threaded test HTTP server that does not print tracebacks for clients that hang up.

Fetch tests hang up on purpose (byte caps, deadlines, a killed CLI); those resets are expected."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
