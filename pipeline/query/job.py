"""run(query) -> pyarrow.Table: the SQL path and the nearest-neighbour path."""

from __future__ import annotations

import logging

import pyarrow as pa

from pipeline import storage
from pipeline.query import graphs, vectors, views
from pipeline.query.catalog import load_catalog
from pipeline.query.config import DuplicatesQuery, SimilarQuery, SqlQuery, TextQuery
from pipeline.query.errors import QueryError

log = logging.getLogger("reelay.query")


def run(query: SqlQuery | SimilarQuery | TextQuery | DuplicatesQuery) -> pa.Table:
    if isinstance(query, SqlQuery):
        return run_sql(query)
    if isinstance(query, TextQuery):
        return run_text(query)
    if isinstance(query, DuplicatesQuery):
        return run_duplicates(query)
    return run_similar(query)


def run_duplicates(query: DuplicatesQuery) -> pa.Table:
    """Groups of copies among the indexed videos (pipeline.query.duplicates), each video by the
    frame hashes of its newest run, looked up in the runs' own frame-hash tables."""
    from pipeline import ann
    from pipeline.query.duplicates import find_duplicates

    catalog = load_catalog(query.output_uri, query.storage)
    found = vectors.frame_hashes(catalog)
    if found.unhashed:
        log.warning(
            "%d videos were indexed before frame hashes were stored and are not compared; "
            "index them again (jobs/index.py --reindex) to include them", found.unhashed,
        )  # fmt: skip
    fs = catalog.filesystem()
    tables = [
        (ann.load_hash_table(fs.cat_file(storage.strip_scheme(uri))), found.owners[run.run_id])
        for run in catalog.runs
        if run.run_id in found.owners
        for uri in run.graphs.get(ann.FRAMES, ())
    ]
    return find_duplicates(found.hashes, threshold=query.threshold, tables=tables)


def run_sql(query: SqlQuery) -> pa.Table:
    """The SQL's rows, over committed runs only."""
    catalog = load_catalog(query.output_uri, query.storage)
    con = views.connect(catalog)
    try:
        return views.query(con, query.sql)
    finally:
        con.close()


def run_similar(query: SimilarQuery) -> pa.Table:
    """The k nearest rows by cosine similarity, among the newest row per video (or clip) made
    by the same model as the query."""
    catalog = load_catalog(query.output_uri, query.storage)
    level = query.level
    clip_index = query.clip_index if level == "clip" else None
    if query.file is not None:
        from pipeline.query.embed_file import embed_file  # decoding and the model: this path only

        run = catalog.latest(vectors.TABLE_OF[level])
        embedded = embed_file(query.file, run.record, query.storage, query.device)
        vector = (
            embedded.video_embedding()
            if level == "video"
            else embedded.clip_embedding(query.clip_index)
        )
        return nearest(
            catalog, level, run.model_version,
            vectors.part_of(vector, query.by, run.audio_dim, run.model_version), query.k,
            query.search,
            own_key=(embedded.video_uri, clip_index) if query.exclude_self else None,
            exclude_self=query.exclude_self, by=query.by,
        )  # fmt: skip

    parts = vectors.latest_rows(vectors.read_parts(catalog, level, embeddings=False), level)
    uri, part = _find_video(parts, level, query.video_uri, clip_index, catalog.output_uri)
    return nearest(
        catalog, level, part.run.model_version, None, query.k, query.search,
        own_key=(uri, clip_index), exclude_self=query.exclude_self, keys=parts, by=query.by,
    )  # fmt: skip


def nearest(
    catalog, level: str, model_version: str | None, vector, k: int, method: str,
    own_key: tuple[str, int | None] | None = None, exclude_self: bool = False,
    keys: list[vectors.Part] | None = None, by: str = "both",
) -> pa.Table:  # fmt: skip
    """The k rows of `model_version` nearest `vector` (None: the embedding of `own_key`, the
    query's own row, which then scores 1.0 first among ties unless `exclude_self`), exactly or
    through the runs' graphs (graphs.use_graphs; whole embeddings only: `by` "both").
    `keys`: the newest rows' key columns, when the caller has read them already."""
    if by == "both" and graphs.use_graphs(catalog, level, model_version, method):
        found = graphs.GraphSearch(catalog, level, model_version, keys)
        own = found.find(*own_key) if own_key is not None else None
        if vector is None:
            vector = found.vector(*own)
        return found.search(vector, k, own, exclude_self=exclude_self)
    parts = vectors.latest_rows(vectors.read_parts(catalog, level), level)
    index = vectors.build_index(parts, level, model_version, by)
    own = index.position(*own_key) if own_key is not None else None
    if vector is None:
        if own is None:
            raise QueryError(
                f"{storage.redact(own_key[0])} has no embedding in the index (status error: "
                "see the errors view for why)"
            )
        vector = index.matrix[own]
    return vectors.search(index, vector, k, own, exclude_self=exclude_self)


def run_text(query: TextQuery) -> pa.Table:
    """The k rows nearest the text by cosine, among the newest rows of the index's newest
    model: the text goes through that model's own CLIP text tower (rebuilt from its run
    record and checked against its model_version), then the same search as --similar."""
    from pipeline.config import ConfigError
    from pipeline.models.clip import text_embeddings
    from pipeline.models.source import untrained_model
    from pipeline.query.embed_file import index_config

    catalog = load_catalog(query.output_uri, query.storage)
    level = query.level
    run = catalog.latest(vectors.TABLE_OF[level])
    model = (run.record.get("config") or {}).get("model") or {}
    if (model.get("encoder"), model.get("temporal")) != ("clip", "mean"):
        raise QueryError(
            f"--text needs an index made by a CLIP model with the mean head (jobs/index.py "
            f"--encoder clip --weights FOLDER --temporal mean); the newest run here, "
            f"{run.run_id}, used --encoder {model.get('encoder')} --temporal "
            f"{model.get('temporal')}: use --similar or SQL"
        )
    try:  # the model built once: its hash checks the folder, its towers embed the text
        built, spec = untrained_model(index_config(run.record, "unused", query.storage))
    except ConfigError as e:
        raise QueryError(f"the index's CLIP model cannot be loaded: {e}") from e
    if spec.model_version != run.model_version:
        raise QueryError(
            f"the CLIP folder {storage.redact(model.get('pretrained_weights') or '')} is not "
            f"the one run {run.run_id} indexed with ({spec.model_version}, not "
            f"{run.model_version}): it changed since"
        )
    tokenizer = spec.pretrained.payload().tokenizer()
    vector = text_embeddings(built.encoder.clip, tokenizer, [query.text])[0].numpy()
    return nearest(catalog, level, run.model_version, vector, query.k, query.search)


def _find_video(parts, level, video_uri, clip_index, output_uri):
    """The query's part; a local path may be given relative to the working directory."""
    candidates = [video_uri]
    if not storage.is_remote(video_uri):
        candidates.append(storage.strip_scheme(video_uri))
    for uri in candidates:
        part = vectors.locate(parts, level, uri, None)
        if part is None:
            continue
        if clip_index is not None and vectors.locate(parts, level, uri, clip_index) is None:
            raise QueryError(
                f"{storage.redact(uri)} has no clip {clip_index} in the index; list its clips "
                f"with: SELECT clip_index FROM clips WHERE video_uri = '{uri}'"
            )
        part = vectors.locate(parts, level, uri, clip_index)
        return uri, part
    raise QueryError(
        f"video {storage.redact(video_uri)} is not in the index at {storage.redact(output_uri)} "
        f"(no committed {vectors.TABLE_OF[level]} row); list the indexed videos with: "
        "SELECT video_uri FROM videos"
    )
