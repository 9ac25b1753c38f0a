"""docs/schema.md and pipeline/schema.py describe the same columns and types."""

import re
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline import schema

DOC = Path(__file__).resolve().parents[1] / "docs" / "schema.md"
D = 7  # any embedding size: the doc writes it as [D]
A = 3  # any sound part's size: [A]


def doc_columns(table: str) -> dict[str, str]:
    """The | column | type | rows under the `## `<table>/`` heading."""
    text = DOC.read_text()
    section = text.split(f"## `{table}/`", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    return {name: kind.strip() for name, kind in rows}


def doc_type(arrow_type: pa.DataType) -> str:
    """How docs/schema.md spells an Arrow type."""
    if pa.types.is_fixed_size_list(arrow_type):
        inner = doc_type(arrow_type.value_type)
        size = {D: "D", A: "A", 16: "T"}.get(arrow_type.list_size, str(arrow_type.list_size))
        return f"fixed_size_list<{inner}>[{size}]"
    if pa.types.is_list(arrow_type):
        return f"list<{doc_type(arrow_type.value_type)}>"
    if pa.types.is_timestamp(arrow_type):
        return f"timestamp[{arrow_type.unit}, {arrow_type.tz}]"
    return {"float": "float32", "double": "float64"}.get(str(arrow_type), str(arrow_type))


@pytest.mark.parametrize(
    ("table", "arrow_schema"),
    [
        ("videos", schema.videos_schema(D)),
        ("clips", schema.clips_schema(D, frame_features=(16, D), audio_dim=A)),
        ("errors", schema.ERRORS_SCHEMA),
        ("shots", schema.SHOTS_SCHEMA),
    ],
)
def test_doc_lists_every_column_with_its_type(table, arrow_schema):
    documented = doc_columns(table)
    assert list(documented) == arrow_schema.names
    for field in arrow_schema:
        assert documented[field.name] == doc_type(field.type), field.name


def test_doc_names_the_schema_version():
    assert f"schema version {schema.SCHEMA_VERSION}" in DOC.read_text()
