"""Data: validated image collections, feature arrays, splits and named benchmarks."""

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
    load_images,
)
from lowshot.data.splits import kshot_split, stratified_split

__all__ = [
    "DATASETS",
    "ArraySet",
    "ImageSet",
    "dataset_dir",
    "fetch",
    "find_dataset",
    "kshot_split",
    "list_domains",
    "load_arrays",
    "load_benchmark_arrays",
    "load_benchmark_images",
    "load_file_list",
    "load_image_folder",
    "load_images",
    "stratified_split",
]
