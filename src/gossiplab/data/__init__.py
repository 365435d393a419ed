"""Data: datasets by name, partitioning over nodes, per-batch augmentation."""

from gossiplab.data.datasets import DATASETS, Dataset, load_dataset
from gossiplab.data.partition import PARTITIONERS, Partition, partition

__all__ = ["DATASETS", "PARTITIONERS", "Dataset", "Partition", "load_dataset", "partition"]
