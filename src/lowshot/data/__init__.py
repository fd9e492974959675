"""Data: validated image and text collections, feature arrays, splits and named benchmarks.

``load(spec)`` is the one entry for every input kind (see :mod:`lowshot.data.load`)."""

from lowshot.data.arrays import ArraySet, load_arrays
from lowshot.data.benchmarks import (
    DATASETS,
    dataset_dir,
    fetch,
    find_dataset,
    load_benchmark_arrays,
    load_benchmark_images,
)
from lowshot.data.images import (
    ImageSet,
    list_domains,
    load_file_list,
    load_image_folder,
)
from lowshot.data.load import LabelledSet, load, load_images, split
from lowshot.data.splits import kshot_split, stratified_split

__all__ = [
    "DATASETS",
    "ArraySet",
    "ImageSet",
    "dataset_dir",
    "fetch",
    "find_dataset",
    "LabelledSet",
    "kshot_split",
    "list_domains",
    "load",
    "load_arrays",
    "load_benchmark_arrays",
    "load_benchmark_images",
    "load_file_list",
    "load_image_folder",
    "load_images",
    "split",
    "stratified_split",
]
