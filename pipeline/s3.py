"""The s3fs filesystem the pipeline uses for s3:// URIs (imported only when one is used)."""

from __future__ import annotations

import s3fs


class S3NoBucketCreation(s3fs.S3FileSystem):
    """s3fs, except that making a folder never creates its bucket. s3fs creates a missing
    bucket (in the default region) on `makedirs`, so a mistyped --output bucket would be
    created instead of failing with "no such bucket"; here it raises FileNotFoundError.
    Creating a bucket explicitly (`mkdir("bucket")`) still works."""

    async def _mkdir(self, path, acl=False, create_parents=True, **kwargs):
        _, key, _ = self.split_path(self._strip_protocol(path).rstrip("/"))
        if key:  # a folder: its bucket must exist
            create_parents = False
        return await super()._mkdir(path, acl=acl, create_parents=create_parents, **kwargs)
