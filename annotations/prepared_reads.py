"""Model instances from SQL written once per process, for the few reads that every annotator request makes.

The ORM builds and compiles a query's SQL anew on every call. For the one-row reads of the annotator pages
(the annotator with their study, the screen being answered) that compilation was the largest part of a
request's CPU time: `annotator_in_study` alone was about a quarter of it under the profiler. These reads
write their select lists once from the models' own fields (a new field is read with no change here) and build
instances as the ORM does: the same database converters, then `Model.from_db`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import Model


@dataclass(frozen=True)
class ModelColumns:
    """One model's concrete columns in a prepared SELECT: their SQL, where they start in a row, and the
    converters the ORM would apply to each."""

    model: type[Model]
    sql: str
    start: int
    converters: tuple[tuple[Any, tuple[Callable, ...]], ...]  # (column expression, converters) per field
    pk_index: int

    @classmethod
    def of(cls, model: type[Model], table_alias: str, *, using: str, start: int = 0) -> ModelColumns:
        connection = connections[using]
        quote = connection.ops.quote_name
        fields = model._meta.concrete_fields
        converters = []
        for model_field in fields:
            column = model_field.get_col(table_alias)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            converters.append((column, tuple(found)))
        sql = ", ".join(f"{quote(table_alias)}.{quote(f.column)}" for f in fields)
        return cls(model, sql, start, tuple(converters), fields.index(model._meta.pk))

    @property
    def end(self) -> int:
        return self.start + len(self.converters)

    def instance(self, row: Sequence[Any], *, using: str) -> Model | None:
        """The model instance in `row`, or None where an outer join found no row (its primary key is null)."""
        values = list(row[self.start : self.end])
        if values[self.pk_index] is None:
            return None
        connection = connections[using]
        for index, (column, converters) in enumerate(self.converters):
            for convert in converters:
                values[index] = convert(values[index], column, connection)
        return self.model.from_db(using, None, values)


def first_row(sql: str, params: Sequence[Any], *, using: str) -> tuple | None:
    """The first row of a prepared statement, through Django's cursor (so it is logged and counted)."""
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()
