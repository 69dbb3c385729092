"""Image classification datasets as uint8 tensors with their normalisation, read without torchvision.

Example::

    from condense.data import load_dataset, list_datasets
    ds = load_dataset("fashion-mnist")   # offline: reads /usr/share/datasets/fashion-mnist if present
    x, y = ds.normalised_train()         # (60000, 1, 28, 28) float32, (60000,) int64

Files live in ``<root>/<name>/`` in each dataset's standard format; ``root`` is the argument,
else ``$CONDENSE_DATA_ROOT``, else ``./data``. See :mod:`condense.data.registry` for the table.
"""
from condense.data.dataset import ImageDataset
from condense.data.registry import DATASETS, DatasetSpec, get_spec, list_datasets, load_dataset

__all__ = ["DATASETS", "DatasetSpec", "ImageDataset", "get_spec", "list_datasets", "load_dataset"]
