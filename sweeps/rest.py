"""One JSON request over HTTP with the standard library: how ``glovesweep status`` and ``list`` read Ray's job
server and MLflow's tracking server without importing ``ray`` or ``mlflow`` (about 2 CPU seconds per call, most
of what those commands cost on a busy head; docs/results/service-load/notes.md).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any


class HttpError(OSError):
    """The server answered with an HTTP error status.

    Attributes
    ----------
    status : int
        The HTTP status code (401, 404, 500, ...).
    body : str
        The response body as text (a JSON error document, often).
    """

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {body.strip().splitlines()[0] if body.strip() else ''}")
        self.status = status
        self.body = body


def request_json(method: str, url: str, *, headers: dict[str, str] | None = None, body: Any = None,
                 timeout: float = 30.0, context: ssl.SSLContext | None = None) -> Any:
    """Send one request (``body`` as JSON, when given) and return the parsed JSON answer (``{}`` when empty).

    Raises
    ------
    HttpError
        The server answered with a status of 400 or more.
    OSError
        No answer: connection refused or reset, a timeout, a TLS failure (``urllib.error.URLError`` and the like).
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Accept": "application/json", **({"Content-Type": "application/json"} if data is not None else {}),
        **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310 - user's server
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        raise HttpError(url, error.code, error.read().decode("utf-8", errors="replace")) from None
    return json.loads(text) if text.strip() else {}
