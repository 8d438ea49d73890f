"""A small synchronous client for InfluxDB's v1 HTTP API (``/write``, ``/query``, ``/ping``).

InfluxDB 1.x serves these natively; 2.x and 3.x serve them for compatibility
(2.x maps database/retention policy to a bucket through a DBRP mapping, see
:mod:`storage.influx.v2setup`). Authentication is either a token
(``Authorization: Token ...``, 2.x/3.x) or a 1.x user name and password, sent
as HTTP Basic auth so the password never appears in a URL.

Every httpx error and HTTP status is translated in :meth:`InfluxClient._send`
and :func:`raise_for_status` into the store errors of ``storage._exceptions``.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

import httpx

from storage._exceptions import (
    StoreAuthError,
    StoreQueryError,
    StoreRejected,
    StoreUnavailable,
)
from storage.backoff import EQUAL_JITTER, Backoff
from storage.influx.influxql import Query, quote_ident

log = logging.getLogger(__name__)

T = TypeVar("T")
JSONScalar = str | int | float | bool | None
Row = dict[str, JSONScalar]

#: Rows per chunk of a chunked query, the way round a server's ``max-row-limit``.
QUERY_CHUNK_SIZE: Final = 10_000
_MAX_ERROR_TEXT: Final = 2_000
#: The longest query text (URL-encoded) sent in a GET's URL; longer ones are POSTed.
_MAX_QUERY_IN_URL: Final = 6_000
#: RFC 9110 says whole seconds; a fraction is accepted because some proxies send one.
_DELTA_SECONDS: Final = re.compile(r"\d+(\.\d+)?")


class InfluxDatabaseNotFound(StoreUnavailable):
    """The database (1.x) or its DBRP mapping/bucket (2.x/3.x) does not exist.

    A configuration problem, not bad data: the client does not retry it, and a
    writer keeps its data and tries again later, as after an outage.
    """


# -- retry policy ------------------------------------------------------------------


#: Short pauses: the client retries inside one write; a longer outage is the caller's to wait out.
CLIENT_BACKOFF: Final = Backoff(first=0.2, cap=5.0, jitter=EQUAL_JITTER)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries, pausing per ``backoff`` and honouring ``Retry-After``.

    Only :class:`StoreUnavailable` is retried, and not its configuration-shaped
    subclasses (:class:`StoreAuthError`, :class:`InfluxDatabaseNotFound`). When
    the server asks for a longer pause than the backoff's ``cap`` the error is
    raised at once with its ``retry_after``, so the caller, which keeps the data,
    decides how to wait instead of this thread blocking. ``sleep`` and the
    backoff's ``random`` are injectable so tests never sleep.
    """

    attempts: int = 4
    backoff: Backoff = CLIENT_BACKOFF
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    def call(self, operation: Callable[[], T]) -> T:
        failures = 0
        while True:
            try:
                return operation()
            except (StoreAuthError, InfluxDatabaseNotFound):
                raise
            except StoreUnavailable as exc:
                failures += 1
                delay = self.backoff.delay(failures, exc.retry_after)
                if failures >= self.attempts or delay > self.backoff.cap:
                    raise
                # DEBUG: the caller reports an outage once; a line per attempt would bury it.
                log.debug("InfluxDB unavailable (%s); retry %d in %.2fs", exc, failures, delay)
                self.sleep(delay)


NO_RETRY: Final = RetryPolicy(attempts=1)


# -- error translation ---------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # '-0000': an HTTP-date is GMT by definition
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def error_text(response: httpx.Response) -> str:
    """The server's own explanation: 1.x ``error``, 2.x ``message``, 3.x ``error`` + ``data``."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:_MAX_ERROR_TEXT].strip() or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:_MAX_ERROR_TEXT]
    text = str(body.get("error") or body.get("message") or body)
    data = body.get("data")
    if data:
        text = f"{text}: {json.dumps(data, ensure_ascii=False)}"
    return text[:_MAX_ERROR_TEXT]


def raise_for_status(response: httpx.Response, *, writing: bool, now: float) -> None:
    """Translate an HTTP status into a store error; return quietly on 2xx."""
    status = response.status_code
    if status < 300:
        return
    detail = error_text(response)
    where = f"InfluxDB {response.request.method} {response.request.url.path} answered {status}"
    if status in (401, 403):
        raise StoreAuthError(f"{where}: credentials missing or not allowed: {detail}")
    if "retention policy not found" in detail:  # 1.x answers 500, but retrying cannot help
        raise InfluxDatabaseNotFound(f"{where}: {detail} (create it, or fix the configuration)")
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
        raise StoreUnavailable(f"{where}: {detail}", retry_after=retry_after)
    if status == 404:
        if "not found" in detail and ("database" in detail or "bucket" in detail):
            raise InfluxDatabaseNotFound(
                f"{where}: {detail} (create the database, or on 2.x the bucket and DBRP mapping)"
            )
        raise StoreUnavailable(f"{where}: {detail} (is this InfluxDB's v1 HTTP API?)")
    if writing:
        # 400 is a line the server refuses; 413 a body over its max-body-size,
        # which splitting the batch fixes. Retrying the same bytes cannot help.
        raise StoreRejected(f"{where}: {detail}", detail=detail)
    raise StoreQueryError(f"{where}: {detail}")


# -- query results -------------------------------------------------------------------


@dataclass(slots=True)
class Series:
    """One series of a query result; ``rows`` map column names to values.

    With ``GROUP BY`` the grouped tags are in ``tags`` rather than in the rows.
    Integers arrive as Python ints (InfluxDB writes them as JSON integers).
    """

    name: str
    tags: dict[str, str]
    rows: list[Row]
    #: Which statement of a multi-statement query it answers (0 for the first).
    statement_id: int = 0


# Decoded JSON is dynamically typed; these helpers check the shape they rely on.
_Document = dict[str, Any]
_SeriesKey = tuple[int, str, tuple[tuple[str, str], ...]]


#: What a query answers, in a 200, while influxd is shutting down or its shards are
#: not open yet: the server, not the query, and gone once it is back.
_SERVER_NOT_READY: Final = (
    "engine is closed",
    "shard is closed",
    "store is closed",
    "query engine shutdown",  # 1.x's query executor, while it stops
)


def _query_failure(error: object) -> StoreUnavailable | StoreQueryError:
    text = str(error)
    if any(phrase in text for phrase in _SERVER_NOT_READY):
        return StoreUnavailable(f"InfluxDB is not serving queries: {text}")
    return StoreQueryError(f"InfluxDB query failed: {text}")


def _merge_chunks(chunks: Iterable[_Document]) -> list[Series]:
    """Series of all chunks; a series split over several chunks becomes one (per statement)."""
    merged: dict[_SeriesKey, Series] = {}
    for chunk in chunks:
        if "error" in chunk:
            raise _query_failure(chunk["error"])
        results = chunk.get("results")
        if not isinstance(results, list):
            raise StoreQueryError(f"InfluxDB answered without results: {str(chunk)[:200]}")
        for result in results:
            _merge_result(result, merged)
    return list(merged.values())


def _merge_result(result: _Document, merged: dict[_SeriesKey, Series]) -> None:
    error = result.get("error")
    if error is not None:
        if "database not found" in str(error):
            raise InfluxDatabaseNotFound(f"InfluxDB: {error}")
        raise _query_failure(error)
    statement = result.get("statement_id", 0)
    statement_id = statement if type(statement) is int else 0
    for raw in result.get("series") or ():
        name = str(raw.get("name", ""))
        tags = {str(k): str(v) for k, v in (raw.get("tags") or {}).items()}
        key = (statement_id, name, tuple(sorted(tags.items())))
        series = merged.get(key)
        if series is None:
            series = merged[key] = Series(name, tags, [], statement_id)
        columns = raw["columns"]
        series.rows.extend(
            dict(zip(columns, values, strict=True)) for values in raw.get("values") or ()
        )


# -- the client ----------------------------------------------------------------------


class InfluxClient:
    """One pooled ``httpx.Client`` talking to InfluxDB's v1 API.

    ``transport`` lets tests substitute ``httpx.MockTransport`` for the answers a
    real 1.6.7 cannot give (429/503 with ``Retry-After``); ``clock`` is the wall
    clock used to turn an HTTP-date ``Retry-After`` into seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        gzip_level: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if token is not None and (username is not None or password is not None):
            raise ValueError("give either a token or a user name and password, not both")
        if (username is None) != (password is None):
            raise ValueError("a user name needs a password and vice versa")
        headers = {"User-Agent": "stallwatch"}
        auth: httpx.Auth | None = None
        if token is not None:
            headers["Authorization"] = f"Token {token}"
        elif username is not None and password is not None:
            auth = httpx.BasicAuth(username, password)
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            auth=auth,
            timeout=timeout,
            transport=transport,
        )
        self._retry = retry if retry is not None else RetryPolicy()
        self._gzip_level = gzip_level
        self._clock = clock

    # -- plumbing ------------------------------------------------------------------
    def _send(self, request: httpx.Request, *, writing: bool) -> httpx.Response:
        try:
            response = self._http.send(request)
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(f"InfluxDB {request.url.path} timed out: {exc}") from exc
        except httpx.RequestError as exc:
            raise StoreUnavailable(f"InfluxDB {request.url.path} unreachable: {exc!r}") from exc
        raise_for_status(response, writing=writing, now=self._clock())
        return response

    # -- API -----------------------------------------------------------------------
    def ping(self) -> None:
        self._send(self._http.build_request("GET", "/ping"), writing=False)

    def write(
        self, database: str, lines: Sequence[str], *, retention_policy: str | None = None
    ) -> None:
        """POST the lines (gzip-compressed, ns precision), retrying outages per the policy.

        Raises :class:`StoreRejected` when the server refuses the data (on 1.x
        the good lines of the batch are written all the same: a partial write).
        """
        if not lines:
            return
        # backslashreplace: a lone surrogate must not sink the whole batch.
        body = gzip.compress(
            "\n".join(lines).encode("utf-8", "backslashreplace"),
            compresslevel=self._gzip_level,
            mtime=0,
        )
        params = {"db": database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        request = self._http.build_request(
            "POST",
            "/write",
            params=params,
            content=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
        )
        self._retry.call(lambda: self._send(request, writing=True))

    def query(self, database: str, query: Query) -> list[Series]:
        """Run read-only statements; timestamps come back as integer ns.

        Uses GET, which every generation documents for reads (3.x documents only
        GET). A query too long for a URL (a write's look-ups for hundreds of
        devices) goes as a POST form instead, which 1.x and 2.x read the same way:
        URLs over 64 KiB are refused by httpx, and over 8 KiB by many proxies.

        A ``GROUP BY`` runs unchunked first: 1.x sends a chunked answer a chunk per
        series, which made a ``GROUP BY`` over a day's 1,650 series of a 300-vendor
        market 2-3 times slower (45 against 100-150 ms on 1.6.7). A listing without one
        is a single series, chunked by rows at no such cost, and may be millions of
        rows: it streams in chunks, as an unchunked answer that large timed out. For
        a ``GROUP BY``, a server whose ``max-row-limit``
        truncates the answer marks a series ``partial`` and drops the rest; the
        query then runs again chunked, which no row limit truncates. So does one
        whose unchunked answer hides the error: of several statements against a
        missing database, 1.6.7 reports only the last one's "not executed".
        """
        if not _groups(query):  # a listing may be millions of rows: stream it in chunks
            chunked = self._query_request(database, query, chunk_size=QUERY_CHUNK_SIZE)
            return _merge_chunks(_json_documents(self._send(chunked, writing=False)))
        documents = _json_documents(self._send(self._query_request(database, query), writing=False))
        if _truncated(documents) or _error_hidden(documents):
            chunked = self._query_request(database, query, chunk_size=QUERY_CHUNK_SIZE)
            documents = _json_documents(self._send(chunked, writing=False))
        return _merge_chunks(documents)

    def _query_request(
        self, database: str, query: Query, *, chunk_size: int | None = None
    ) -> httpx.Request:
        params = {"db": database, "epoch": "ns"}
        if chunk_size is not None:
            params |= {"chunked": "true", "chunk_size": str(chunk_size)}
        text = {"q": query.text}
        bound = query.params_json()
        if bound is not None:
            text["params"] = bound
        if len(urlencode(text)) <= _MAX_QUERY_IN_URL:
            return self._http.build_request("GET", "/query", params={**params, **text})
        return self._http.build_request("POST", "/query", params=params, data=text)

    def execute(self, statement: Query, *, database: str | None = None) -> list[Series]:
        """Run a statement that changes something (``CREATE DATABASE``, ``SELECT INTO``) via
        POST; returns what it answers (``SELECT INTO``: a ``written`` count)."""
        data = {"q": statement.text}
        bound = statement.params_json()
        if bound is not None:
            data["params"] = bound
        params = {"db": database} if database else None
        request = self._http.build_request("POST", "/query", params=params, data=data)
        return _merge_chunks(_json_documents(self._send(request, writing=False)))

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE`` (1.x only; idempotent there). 2.x needs :mod:`.v2setup` instead."""
        self.execute(Query(f"CREATE DATABASE {quote_ident(name)}"))

    def create_forever_retention_policy(self, database: str, name: str) -> None:
        """``CREATE RETENTION POLICY`` that keeps data forever (1.x only; idempotent there)."""
        self.execute(
            Query(
                f"CREATE RETENTION POLICY {quote_ident(name)} ON {quote_ident(database)}"
                " DURATION INF REPLICATION 1"
            )
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InfluxClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _truncated(documents: Sequence[_Document]) -> bool:
    """Whether an unchunked answer was cut at the server's ``max-row-limit``: 1.x marks
    the last series it sent ``partial`` and leaves the rest out."""
    for document in documents:
        for result in document.get("results") or ():
            if isinstance(result, dict) and (
                result.get("partial") is True
                or any(
                    isinstance(one, dict) and one.get("partial") is True
                    for one in result.get("series") or ()
                )
            ):
                return True
    return False


def _groups(query: Query) -> bool:
    """Whether a statement of ``query`` groups its answer into series (``GROUP BY``).

    The text is what :mod:`storage.influx.influxql` built: keywords in capitals,
    values only in bound parameters, so a value cannot look like the keyword.
    """
    return "GROUP BY" in query.text


def _error_hidden(documents: Sequence[_Document]) -> bool:
    """Whether an unchunked answer says only "not executed" (an earlier statement's error
    was overwritten by the later ones')."""
    return any(
        isinstance(result, dict) and result.get("error") == _NOT_EXECUTED
        for document in documents
        for result in document.get("results") or ()
    )


#: What 1.x says of a statement after a failed one.
_NOT_EXECUTED: Final = "not executed"


def _json_documents(response: httpx.Response) -> list[_Document]:
    """A chunked answer is one JSON document per line; an unchunked one is a single line."""
    documents: list[_Document] = []
    for line in response.text.splitlines():
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError as exc:
            raise StoreQueryError(f"InfluxDB answered with invalid JSON: {line[:200]!r}") from exc
        if not isinstance(document, dict):
            raise StoreQueryError(f"InfluxDB answered with unexpected JSON: {line[:200]!r}")
        documents.append(document)
    return documents


__all__ = [
    "CLIENT_BACKOFF",
    "NO_RETRY",
    "InfluxClient",
    "InfluxDatabaseNotFound",
    "RetryPolicy",
    "Row",
    "Series",
    "error_text",
    "parse_retry_after",
    "raise_for_status",
]
