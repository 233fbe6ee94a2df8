"""The machinery shared by the on-disk dataset loaders.

- :mod:`.records`: a parsed record, the bad-record policy, the errors and the warning.
- :mod:`.readers`: reading index files (bytes, text, CSV, JSONL, JSON) and cleaning text.
- :mod:`.content_hash`: hashing index files and options into the fingerprint.
- :mod:`.layout`: finding the dataset root in ``data_dir`` and canonical split names.
- :mod:`.paths`: keeping every file a record names inside the data folder.
- :mod:`.images`: the image decoder's old home (:mod:`balgrad.data.decoders._image`).
- :mod:`.dataset`: :class:`DiskDataset`, a split made of records (images loaded lazily).
- :mod:`.loader`: :class:`DiskLoader`, the base of the six loaders: a declaration plus
  one ``parse(root, split, problems, **options)``.
"""

from balgrad.data.disk._content_hash import hash_bytes, options_hash
from balgrad.data.disk._dataset import DiskDataset
from balgrad.data.disk._loader import DiskLoader, IndexInfo, LoaderOptions, path_option
from balgrad.data.disk._paths import FolderBoundary
from balgrad.data.disk._readers import check_utf8, decode_text

# DataWarning: importable from here too (0.1's balgrad.data.io had it beside DiskDataset),
# documented once, where balgrad.data exports it
from balgrad.data.disk._records import DataWarning, MissingSplitError, Problems, Record  # noqa: F401

__all__ = [
    "DiskDataset",
    "DiskLoader",
    "FolderBoundary",
    "IndexInfo",
    "LoaderOptions",
    "MissingSplitError",
    "Problems",
    "Record",
    "check_utf8",
    "decode_text",
    "hash_bytes",
    "options_hash",
    "path_option",
]
