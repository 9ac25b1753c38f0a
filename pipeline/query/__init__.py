"""Reading an index back: SQL over the committed Parquet, and nearest neighbours by embedding.

One module per job:
  catalog    committed runs (`_runs/*.json`) and the files they made visible
  views      a DuckDB connection with views `videos`, `clips`, `errors`, `runs`
  vectors    embeddings as one normalised (N, D) matrix, latest row per key; top-k search
  graphs     nearest neighbours through each run's HNSW graphs, merged across runs
  duplicates groups of copies from the stored frame hashes
  embed_file a new video embedded with an index's own model (in-process, no Ray)
  formats    a result table as table, csv, json or parquet
  config     the typed queries the CLI builds
  job        run(query) -> pyarrow.Table
"""

from pipeline.query.config import DuplicatesQuery, SimilarQuery, SqlQuery, TextQuery
from pipeline.query.errors import QueryError
from pipeline.query.job import run

__all__ = ["DuplicatesQuery", "QueryError", "SimilarQuery", "SqlQuery", "TextQuery", "run"]
