"""Webdataset tar shards of RAW training pairs: sample fields (:mod:`.fields`) and tar files (:mod:`.tar`).

The format is documented in ``docs/format.md`` so that shards can be read without rawsynth.
"""

from .fields import (KEY_RE, MEMBER_FORMATS, MODES, OPTIONAL_FIELDS, REQUIRED_FIELDS, REQUIRED_META,
                     UNSAFE_EXTENSIONS, check_key, decode_sample, encode_sample)
from .schema import FORMAT_VERSION, legacy_meta, meta_format_version, meta_schema, stable_meta
from .tar import FIELD_RE, FILE_MODE, MTIME, OWNER, ShardFile, iter_shard, sha256_file, write_shard

__all__ = [
    "FORMAT_VERSION", "MEMBER_FORMATS", "legacy_meta", "meta_format_version", "meta_schema", "stable_meta",
    "FIELD_RE", "FILE_MODE", "KEY_RE", "MODES", "MTIME", "OPTIONAL_FIELDS", "OWNER", "REQUIRED_FIELDS",
    "REQUIRED_META", "UNSAFE_EXTENSIONS", "ShardFile", "check_key", "decode_sample", "encode_sample",
    "iter_shard", "sha256_file", "write_shard",
]
