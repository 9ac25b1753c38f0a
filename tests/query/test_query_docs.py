"""Every block of docs/queries.md runs against a real index: through jobs/query.py, through the
page's own DuckDB set-up, and through its pandas set-up, with the same answers.

Blocks are found by their markers (`<!-- setup: NAME -->`, `<!-- query: NAME -->`), so the page
and this test cannot drift apart.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import duckdb
import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "queries.md"
BLOCK = re.compile(r"<!-- (setup|query): ([\w-]+) -->\s*```(\w+)\n(.*?)```", re.DOTALL)
PLACEHOLDER_INDEX = "/data/video_index"
EXAMPLE_LABEL = "'class_3'"
EXAMPLE_MIN_SCORE = "score >= 0.5"
EXAMPLE_VIDEO = "'s3://corpus/raw/match_042.mp4'"
DUCKDB_ONLY = {"similar-duckdb"}


def blocks(kind: str) -> dict[str, str]:
    found = {name: body for k, name, _, body in BLOCK.findall(DOC.read_text()) if k == kind}
    assert found, f"no {kind} blocks in {DOC}"
    return found


QUERIES = blocks("query")
SETUPS = blocks("setup")


def test_the_page_has_the_promised_questions():
    assert {"videos-by-label", "timeline", "failures", "last-run-videos"} <= set(QUERIES)
    assert {"duckdb", "pandas", "spark"} <= set(SETUPS)
    text = DOC.read_text()
    for example in (PLACEHOLDER_INDEX, EXAMPLE_LABEL, EXAMPLE_MIN_SCORE, EXAMPLE_VIDEO):
        assert example in text


def test_spark_setup_is_valid_python():
    compile(SETUPS["spark"], "spark-setup", "exec")


def with_real_values(sql: str, index, label: str) -> str:
    """The page's example values -> values this index has."""
    return (
        sql.replace(EXAMPLE_LABEL, f"'{label}'")
        .replace(EXAMPLE_MIN_SCORE, "score >= 0.0")
        .replace(EXAMPLE_VIDEO, f"'{index.video_uris()[0]}'")
    )


@pytest.fixture(scope="module")
def label(local_index):
    from pipeline.query import SqlQuery, run

    table = run(SqlQuery(local_index.output_uri, "SELECT min(label) AS l FROM videos"))
    return table["l"][0].as_py()


@pytest.fixture(scope="module")
def duckdb_setup(local_index):
    con = duckdb.connect()
    con.execute(SETUPS["duckdb"].replace(PLACEHOLDER_INDEX, local_index.output_uri))
    yield con
    con.close()


@pytest.fixture(scope="module")
def pandas_setup(local_index):
    namespace: dict = {}
    exec(SETUPS["pandas"].replace(PLACEHOLDER_INDEX, local_index.output_uri), namespace)
    assert len(namespace["answer"]) >= 1
    return namespace


EXPECTED_ROWS = {  # after the example values are replaced by this index's
    "videos-by-label": lambda n: n >= 1,
    "labels": lambda n: n >= 1,
    "timeline": lambda n: n == 2,
    "segments": lambda n: 1 <= n <= 2,
    "failures": lambda n: n == 1,
    "failed-videos": lambda n: n == 1,
    "partial-videos": lambda n: n == 0,  # none here: tests/test_codecs.py runs it on one
    "last-run": lambda n: n == 1,
    "last-run-videos": lambda n: n == 7,
    "similar-duckdb": lambda n: n == 6,
}


def normalised(rows: list[dict]) -> list[tuple]:
    def value(v):
        if isinstance(v, float):
            return None if math.isnan(v) else round(v, 5)
        return v

    return [tuple(value(v) for v in row.values()) for row in rows]


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_documented_query_runs_verbatim_in_the_tool(name, local_index, cli):
    res = cli(local_index.output_uri, QUERIES[name], "--format", "json")
    assert res.code == 0, res.err
    assert isinstance(res.json(), list)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_documented_query_answers_alike_everywhere(
    name, local_index, label, duckdb_setup, pandas_setup
):
    from pipeline.query import SqlQuery, run

    sql = with_real_values(QUERIES[name], local_index, label)
    tool = run(SqlQuery(local_index.output_uri, sql)).to_pylist()
    assert EXPECTED_ROWS[name](len(tool)), (name, tool)
    by_hand = duckdb_setup.sql(sql).to_arrow_table().to_pylist()
    assert normalised(by_hand) == normalised(tool)
    if name == "similar-duckdb":
        assert tool[0]["video_uri"] == local_index.video_uris()[0]
        assert tool[0]["score"] == pytest.approx(1.0, abs=1e-5)
    # pandas: DuckDB over the DataFrames the page loads (types differ: compare the first column)
    namespace = dict(pandas_setup, question=sql)
    exec("answer = duckdb.sql(question).df()", namespace)
    assert namespace["answer"].iloc[:, 0].tolist() == [next(iter(r.values())) for r in tool]
