"""Queries of the hot pages compiled to SQL once, run with each request's values.

Building a query with subqueries and compiling it costs Django more than SQLite takes to run it
(the alias list's rows and state counts, the signed-in user with their role and suspension). A
query built with Slots where a request's values go is compiled once per database connection
and key; each request fills the Slots in, runs the SQL and gets its rows converted as
QuerySet.values() converts them. SQL, not data: every request still asks the database.
"""

from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from django.db import connections
from django.db.models import Expression, Field, Model, QuerySet

Row = dict[str, Any]  # one row as QuerySet.values() gives it


class Slot(Expression):
    """A parameter of a compiled query: the SQL has a placeholder, and each run puts its own
    value there, prepared as the ORM prepares a value of its output field."""

    def __init__(self, name: str, output_field: "Field[Any, Any]") -> None:
        super().__init__(output_field=output_field)
        self.name = name

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        return "%s", (self,)

    def fill(self, values: dict[str, object], connection: Any) -> Any:
        return self.output_field.get_db_prep_value(values[self.name], connection)


class Compiled:
    """A values() query compiled once; run() fills in its Slots and converts the rows as the ORM
    would (its converters, the names in the order of the columns, as ValuesIterable takes them)."""

    def __init__(self, queryset: "QuerySet[Any, Any]", connection: Any) -> None:
        query = queryset.query
        compiler = query.get_compiler(connection=connection)
        self.sql, self.params = compiler.as_sql()
        self.names = list(query.selected or [*query.extra_select, *query.values_select, *query.annotation_select])
        columns = [column for column, _, _ in compiler.select[: compiler.col_count]]
        self.converters = list(compiler.get_converters(columns).items())

    def run(self, connection: Any, **given: object) -> list[Row]:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [p.fill(given, connection) if isinstance(p, Slot) else p for p in self.params])
            rows = cursor.fetchall()
        found = []
        for row in rows:
            values = list(row)
            for position, (converters, expression) in self.converters:
                for converter in converters:
                    values[position] = converter(values[position], expression, connection)
            found.append(dict(zip(self.names, values, strict=True)))
        return found


# Per database connection (a thread's own; weakly held), per key: whatever shapes the SQL.
_COMPILED: "WeakKeyDictionary[Any, dict[tuple[object, ...], Compiled]]" = WeakKeyDictionary()
MAX_PER_CONNECTION = 500  # more (every page of every sort of the alias list) starts again


def run(
    model: type[Model], key: tuple[object, ...], build: Callable[[], "QuerySet[Any, Any]"], **given: object
) -> list[Row]:
    """The rows of the query `build` gives (built and compiled only the first time for `key`),
    with `given` in its Slots."""
    connection = connections[model._default_manager.db]
    held = _COMPILED.setdefault(connection, {})
    compiled = held.get(key)
    if compiled is None:
        if len(held) >= MAX_PER_CONNECTION:
            held.clear()
        compiled = held[key] = Compiled(build(), connection)
    return compiled.run(connection, **given)
