"""Federated datasets: built-in and CSV sources, hold-out, partitioning, standardisation.

The public surface is :func:`load_federated` (config section + seed -> federation) and the
two containers it returns; the partitioners are exported for experiments that deal rows
themselves.
"""

from secagg.data.dataset import ClientData, FederatedDataset
from secagg.data.federated import load_federated
from secagg.data.partition import dirichlet_partition, iid_partition, stratified_take
from secagg.data.standardize import Standardizer

__all__ = [
    "ClientData",
    "FederatedDataset",
    "Standardizer",
    "dirichlet_partition",
    "iid_partition",
    "load_federated",
    "stratified_take",
]
