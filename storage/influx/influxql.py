"""InfluxQL without string-built values: quoting helpers and a query with bound parameters.

Values always travel as bound parameters (``$name`` in the text, JSON in the
``params`` form field); InfluxDB 1.x, 2.x (v1 API) and 3.x substitute them
after parsing, so no value can change the statement. 3.x documents parameters
only inside ``WHERE``; for the few other places that need a value (``LIMIT``)
:func:`int_literal` renders a checked ``int``, which cannot carry syntax.

Identifiers (measurement, tag and field names) cannot be parameters; quote
them with :func:`quote_ident`. :func:`quote_string` exists for the rare
statement that takes no parameters (``SHOW ... WITH KEY = '...'``).

The InfluxQL scanner reads ``\\\\``, ``\\"``, ``\\'`` and ``\\n`` inside quotes and
rejects a raw newline there, so those are the characters escaped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

ParamValue = str | int | bool

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InfluxQLError(ValueError):
    """A query was put together wrongly (a programming error, not a server error)."""


def _escape_quoted(text: str, quote: str) -> str:
    return text.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")


def quote_ident(name: str) -> str:
    """A double-quoted identifier: ``"name"`` with ``\\``, ``"`` and newlines escaped."""
    return '"' + _escape_quoted(name, '"') + '"'


def quote_string(value: str) -> str:
    """A single-quoted string literal with ``\\``, ``'`` and newlines escaped."""
    return "'" + _escape_quoted(value, "'") + "'"


def int_literal(value: int) -> str:
    """An integer literal from a real ``int`` (not ``bool``, not a numeric string)."""
    if type(value) is not int:
        raise InfluxQLError(f"expected an int, got {type(value).__name__}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise InfluxQLError(f"{value} does not fit in 64 bits")
    return str(value)


def placeholders(text: str) -> set[str]:
    """Names of the ``$name`` placeholders in ``text``, ignoring quoted parts."""
    names: set[str] = set()
    i, end = 0, len(text)
    while i < end:
        ch = text[i]
        if ch in "'\"":
            i = _skip_quoted(text, i)
        elif ch == "$":
            match = _PARAM_NAME.match(text, i + 1)
            if match is None:
                raise InfluxQLError(f"'$' without a parameter name at offset {i}")
            names.add(match.group())
            i = match.end()
        else:
            i += 1
    return names


def _skip_quoted(text: str, start: int) -> int:
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == quote:
            return i + 1
        else:
            i += 1
    raise InfluxQLError(f"unterminated quote starting at offset {start}")


def _check_param(name: str, value: object) -> None:
    if _PARAM_NAME.fullmatch(name) is None:
        raise InfluxQLError(f"invalid parameter name {name!r}")
    if isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise InfluxQLError(f"parameter {name}={value} does not fit in 64 bits")
        return
    raise InfluxQLError(f"parameter {name} has unsupported type {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Query:
    """InfluxQL text and the values bound to its ``$name`` placeholders.

    Every placeholder must have a value and every value a placeholder, so a
    typo fails here rather than as an empty result from the server.
    """

    text: str
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in self.params.items():
            _check_param(name, value)
        used = placeholders(self.text)
        missing = used - self.params.keys()
        unused = self.params.keys() - used
        if missing or unused:
            raise InfluxQLError(
                f"placeholders without values: {sorted(missing)}; values without placeholders: "
                f"{sorted(unused)}"
            )

    def params_json(self) -> str | None:
        """The ``params`` form field, or None when there are none.

        Python's ``json`` writes ints exactly and InfluxDB decodes them as int64.
        """
        if not self.params:
            return None
        return json.dumps(dict(self.params), ensure_ascii=False, separators=(",", ":"))


# -- SELECT builder ----------------------------------------------------------------
#
# The only place that assembles InfluxQL text: identifiers go through
# quote_ident, values become bound parameters, LIMIT through int_literal.

_OPERATORS: Final = frozenset({"=", "!=", "<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class Condition:
    """``column <op> $param``, with ``value`` bound to ``$param``."""

    column: str
    operator: str
    param: str
    value: ParamValue

    def __post_init__(self) -> None:
        if self.operator not in _OPERATORS:
            raise InfluxQLError(f"unsupported operator {self.operator!r}")
        _check_param(self.param, self.value)

    def render(self) -> str:
        # ``time`` is a keyword-like column; unquoted it means the point time everywhere.
        column = "time" if self.column == "time" else quote_ident(self.column)
        return f"{column} {self.operator} ${self.param}"


def equals(column: str, value: ParamValue, *, param: str | None = None) -> Condition:
    """``"column" = $column`` (or ``$param`` when the column name is not a valid parameter name)."""
    return Condition(column, "=", column if param is None else param, value)


def not_equals(column: str, value: ParamValue) -> Condition:
    """``"column" != $column``; a point without the field does not match."""
    return Condition(column, "!=", column, value)


def time_from(ns: int) -> Condition:
    """``time >= $start``; ``ns`` is an integer nanosecond timestamp."""
    return Condition("time", ">=", "start", ns)


def time_before(ns: int) -> Condition:
    """``time < $end``; ``ns`` is an integer nanosecond timestamp."""
    return Condition("time", "<", "end", ns)


@dataclass(frozen=True, slots=True)
class Select:
    """One ``SELECT`` statement.

    ``SELECT * | COUNT(field) FROM [rp.]measurement [WHERE ...] [GROUP BY tags]
    [ORDER BY time DESC] [LIMIT n]``
    """

    measurement: str
    where: tuple[Condition, ...] = ()
    retention_policy: str | None = None
    count_of: str | None = None
    group_by: tuple[str, ...] = ()
    newest_first: bool = False
    limit: int | None = None

    def query(self) -> Query:
        source = quote_ident(self.measurement)
        if self.retention_policy:
            source = f"{quote_ident(self.retention_policy)}.{source}"
        what = "*" if self.count_of is None else f"COUNT({quote_ident(self.count_of)})"
        parts = [f"SELECT {what} FROM {source}"]  # noqa: S608 - identifiers are quoted, values bound
        params: dict[str, ParamValue] = {}
        if self.where:
            parts.append("WHERE " + " AND ".join(c.render() for c in self.where))
            for condition in self.where:
                if condition.param in params:
                    raise InfluxQLError(f"parameter ${condition.param} used twice")
                params[condition.param] = condition.value
        if self.group_by:
            parts.append("GROUP BY " + ", ".join(quote_ident(tag) for tag in self.group_by))
        if self.newest_first:
            parts.append("ORDER BY time DESC")
        if self.limit is not None:
            parts.append(f"LIMIT {int_literal(self.limit)}")
        return Query(" ".join(parts), params)


# -- SELECT of chosen columns and aggregates ------------------------------------------

#: Aggregates whose result over integer fields is an exact integer in every generation.
#: Aggregates, and LAST, a selector: it answers its point's own time.
_AGGREGATES: Final = frozenset({"COUNT", "SUM", "LAST"})


@dataclass(frozen=True, slots=True)
class Column:
    """A selected field, or ``FUNCTION("field")`` when ``function`` is ``COUNT``, ``SUM`` or
    ``LAST``.

    ``alias`` names it in the result (``AS "alias"``); an aggregate without an
    alias comes back named after its function in lower case, as InfluxDB does.
    """

    field: str
    function: str | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        if self.function is not None and self.function not in _AGGREGATES:
            raise InfluxQLError(f"unsupported aggregate {self.function!r}")

    def render(self) -> str:
        text = quote_ident(self.field)
        if self.function is not None:
            text = f"{self.function}({text})"
        if self.alias is not None:
            text = f"{text} AS {quote_ident(self.alias)}"
        return text


@dataclass(frozen=True, slots=True)
class SelectColumns:
    """``SELECT col, ... FROM [rp.]measurement [WHERE ...] [GROUP BY [time(Ns),] tags]``.

    For projections that need only some fields, and for aggregates per tag group
    (InfluxDB computes them; only the results travel). ``every_s`` groups the
    aggregates into time buckets of that many seconds, aligned to the epoch;
    buckets without points are left out (``fill(none)`` follows the groups).
    """

    measurement: str
    columns: tuple[Column, ...]
    where: tuple[Condition, ...] = ()
    retention_policy: str | None = None
    group_by: tuple[str, ...] = ()
    every_s: int | None = None

    def query(self) -> Query:
        if not self.columns:
            raise InfluxQLError("select at least one column")
        source = quote_ident(self.measurement)
        if self.retention_policy:
            source = f"{quote_ident(self.retention_policy)}.{source}"
        what = ", ".join(column.render() for column in self.columns)
        parts = [f"SELECT {what} FROM {source}"]  # noqa: S608 - identifiers are quoted, values bound
        params: dict[str, ParamValue] = {}
        if self.where:
            parts.append("WHERE " + " AND ".join(c.render() for c in self.where))
            for condition in self.where:
                if condition.param in params:
                    raise InfluxQLError(f"parameter ${condition.param} used twice")
                params[condition.param] = condition.value
        groups = [quote_ident(tag) for tag in self.group_by]
        if self.every_s is not None:
            if self.every_s <= 0:
                raise InfluxQLError(f"time buckets must be positive, got {self.every_s} s")
            groups.insert(0, f"time({int_literal(self.every_s)}s)")
        if groups:
            parts.append("GROUP BY " + ", ".join(groups))
        if self.every_s is not None:
            parts.append("fill(none)")
        return Query(" ".join(parts), params)


# -- several statements, DELETE ---------------------------------------------------------


def statements(queries: Sequence[Query]) -> Query:
    """Several statements sent as one request (``;``-separated).

    Their parameters share one namespace, so each statement must name its own
    (see :class:`Condition`'s ``param``); a clash is refused here.
    """
    params: dict[str, ParamValue] = {}
    for query in queries:
        clash = params.keys() & query.params.keys()
        if clash:
            raise InfluxQLError(f"parameters {sorted(clash)} are used by two statements")
        params.update(query.params)
    return Query("; ".join(query.text for query in queries), params)


@dataclass(frozen=True, slots=True)
class Delete:
    """``DELETE FROM measurement WHERE ...`` (tags and time only; every retention policy)."""

    measurement: str
    where: tuple[Condition, ...]

    def query(self) -> Query:
        if not self.where:
            raise InfluxQLError("a DELETE without WHERE would empty the measurement")
        params = {c.param: c.value for c in self.where}
        if len(params) != len(self.where):
            raise InfluxQLError("each condition of a DELETE needs its own parameter")
        conditions = " AND ".join(c.render() for c in self.where)
        text = f"DELETE FROM {quote_ident(self.measurement)} WHERE {conditions}"  # noqa: S608 - identifiers are quoted, values bound
        return Query(text, params)
