"""Training data: the dataset registry, row formats, chat templates, tokenization, packing and collators.

Import cost matters: this package imports ``datasets``/``transformers`` only inside the functions that need them,
so the pure parts (formats, templates' rendering) stay cheap to test and to use from the serving code.
"""

from kubetune.data.bundle import DatasetBundle, DataStats, build_datasets
from kubetune.data.formats import DataFormatError, Example
from kubetune.data.tokenize import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "DataFormatError", "DataStats", "DatasetBundle", "Example", "build_datasets"]
