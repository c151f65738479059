"""JSON over HTTP on ``requests``: the shared base of every external-service client.

One pooled session per client, a timeout on every call and ``X-Request-ID`` = the current trace id
(so a provider's or the sandbox's logs can be matched to ours). One rule for failures: anything that
means "the service is not answering properly" — connection refused, timeout, a 5xx, a body that is
not JSON — becomes an :class:`~worker_app.errors.UpstreamUnavailable`, raised ``from`` the original
error. Replies below 500 are returned as :class:`JsonReply`, because only the service's own client
knows what its 4xx bodies mean.

Every error message is redacted: the Telegram token travels in the URL path and ``requests`` puts
the URL in its exception messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from worker_app import context
from worker_app.errors import UpstreamUnavailable
from worker_app.redaction import Redactor, redact

if TYPE_CHECKING:  # imported on first use: processes that never call out (the scheduler) save ~5 MB
    import requests

POOL_MAXSIZE = 32
USER_AGENT = "cybervpn-task-worker"
_SNIPPET_CHARS = 200

UnavailableFactory = Callable[[str, int | None], UpstreamUnavailable]
"""Builds the service's own "unavailable" error from a redacted message and the HTTP status."""


class ServiceUnavailable(UpstreamUnavailable):
    """A service did not answer usefully: no connection, a timeout, a 5xx or a reply that is not JSON.

    Transient: the retry middleware retries it per the actor's policy.
    """

    def __init__(self, message: str, *, service: str, status: int | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.status = status


@dataclass(frozen=True)
class JsonReply:
    """A reply with a status below 500; ``body`` is the parsed JSON, or ``None`` for an empty body."""

    status: int
    body: Any
    headers: Mapping[str, str]


class JsonHttpClient:
    """A pooled, timed, traced and redacting JSON-over-HTTP session for one external service.

    ``service`` names the service in error messages, ``headers`` are sent on every call (auth,
    forwarding headers), ``secrets`` are masked in every error message on top of the process-wide
    redaction, and ``unavailable`` lets a client raise its own subclass of
    :class:`~worker_app.errors.UpstreamUnavailable`. Safe to share between worker threads.
    """

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        unavailable: UnavailableFactory | None = None,
        pool_maxsize: int = POOL_MAXSIZE,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._redactor = Redactor(secrets)
        self._unavailable = unavailable or self._service_unavailable
        self._session = _new_session(self.base_url, headers or {}, pool_maxsize)

    def __repr__(self) -> str:
        return self.redact(f"JsonHttpClient(service={self.service!r}, base_url={self.base_url!r})")

    def __enter__(self) -> JsonHttpClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def redact(self, text: str) -> str:
        """``text`` with this client's secrets and every process-wide secret masked."""
        return self._redactor(redact(text))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout_s: float | None = None,
    ) -> JsonReply:
        """Call ``{base_url}{path}``; return the parsed reply or raise ``UpstreamUnavailable``.

        ``timeout_s`` overrides the client's timeout for this call (connect and read, each).
        """
        import requests

        try:
            response = self._session.request(
                method,
                self.base_url + path,
                params=params,
                json=json,
                headers={"X-Request-ID": context.current_trace_id() or context.new_trace_id()},
                timeout=self.timeout_s if timeout_s is None else timeout_s,
            )
        except requests.RequestException as e:
            raise self._fail(f"{method} {path} failed: {type(e).__name__}: {e}", None) from e
        return self._parse(response)

    def _parse(self, response: requests.Response) -> JsonReply:
        status = response.status_code
        if status >= 500:
            error = self._fail(f"HTTP {status}: {_snippet(response)}", status)
            error.body = _json_or_none(response)
            raise error
        if not response.content:
            return JsonReply(status, None, response.headers)
        try:
            body = response.json()
        except ValueError as e:
            raise self._fail(f"HTTP {status}, reply is not JSON: {_snippet(response)}", status) from e
        return JsonReply(status, body, response.headers)

    def _fail(self, detail: str, status: int | None) -> UpstreamUnavailable:
        return self._unavailable(self.redact(f"{self.service}: {detail}"), status)

    def _service_unavailable(self, message: str, status: int | None) -> UpstreamUnavailable:
        return ServiceUnavailable(message, service=self.service, status=status)


def _new_session(base_url: str, headers: Mapping[str, str], pool_maxsize: int) -> requests.Session:
    """A pooled session whose proxy and CA bundle come from the environment once, here.

    ``requests`` reads the proxy variables (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY) and the CA bundle
    variables again on every call while ``trust_env`` is on: at a thousand Telegram calls a second
    that was 15 % of a sender's CPU. They are resolved once, for this client's base URL, instead.
    """
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if ca_bundle:
        session.verify = ca_bundle
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT, **headers})
    return session


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


def _snippet(response: requests.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:_SNIPPET_CHARS] or "<empty body>"
