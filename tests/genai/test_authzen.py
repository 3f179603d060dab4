"""The library side of the AuthZEN API: the documented filter JSON and the SQL compilation."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, insert, text

from mamori.errors import ConfigError
from mamori.genai.authzen import ResidualFilter, SqlMapping, filter_to_json
from mamori.policy import (
    And,
    CompareOp,
    Const,
    FieldCompare,
    FieldContains,
    FieldContainsAny,
    FieldEq,
    FieldExists,
    Not,
    Or,
)

A = FieldEq("tenant", "t1")


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (Const(value=False), {"const": False}),
        (A, {"eq": {"field": "tenant", "value": "t1"}}),
        (FieldContains("team", "u"), {"contains": {"field": "team", "value": "u"}}),
        (
            FieldContainsAny("team", ("u", "v")),
            {"contains_any": {"field": "team", "values": ["u", "v"]}},
        ),
        (FieldExists("patient_id"), {"exists": {"field": "patient_id"}}),
        (
            FieldCompare("level", CompareOp.LE, 3),
            {"compare": {"field": "level", "op": "<=", "value": 3}},
        ),
        (And((A, Not(A))), {"and": [filter_to_json(A), {"not": filter_to_json(A)}]}),
        (Or((A, A)), {"or": [filter_to_json(A), filter_to_json(A)]}),
    ],
)
def test_each_filter_node_has_its_documented_json_form(node, expected):
    assert filter_to_json(node) == expected


def _rows():
    meta = MetaData()
    docs = Table("docs", meta, Column("id", String), Column("tenant", String))
    team = Table("team", meta, Column("doc_id", String), Column("user_id", String))
    engine = create_engine("sqlite://")
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(docs), [{"id": "a", "tenant": "t1"}, {"id": "b", "tenant": "t1"}])
        conn.execute(insert(team), [{"doc_id": "a", "user_id": "u"}])
    return engine


def test_a_set_condition_compiles_to_an_exists_correlated_with_the_outer_row():
    # Compiled on its own, the EXISTS would list docs in its own FROM and match every row of
    # the tenant as soon as *one* document had u on its team.
    node = And((A, FieldContains("team", "u")))
    mapping = SqlMapping("docs", "id", {"team": ("team", "doc_id", "user_id")})
    sql = ResidualFilter(node).sql(mapping, "sqlite")
    with _rows().connect() as conn:
        query = text(f"SELECT id FROM docs WHERE {sql['where']}")
        assert set(conn.scalars(query, sql["params"])) == {"a"}


def test_values_never_enter_the_sql_text():
    node = FieldEq("tenant", "t1' OR '1'='1")
    sql = ResidualFilter(node).sql(SqlMapping("docs"), "sqlite")
    assert "OR '1'" not in sql["where"]
    assert list(sql["params"].values()) == ["t1' OR '1'='1"]


def test_a_reserved_word_table_name_is_refused_rather_than_quoted_blindly():
    with pytest.raises(ConfigError, match="need quoting"):
        ResidualFilter(A).sql(SqlMapping("order"), "postgresql")


def test_an_unknown_dialect_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="oracle"):
        ResidualFilter(A).sql(SqlMapping("docs"), "oracle")


def test_a_constant_filter_has_no_qdrant_form():
    assert ResidualFilter(Const(value=False)).qdrant() is None
