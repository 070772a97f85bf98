"""Server-side aggregation rules.

A rule turns the clients' updates into one global update. FedAvg needs only a weighted sum, so
it also runs under secure aggregation; robust rules (Krum, median, ...) need every individual
update and therefore plaintext mode — :attr:`AggregationRule.needs_individual_updates` says which.
"""

from secagg.aggregation.base import AggregationRule, make_rule
from secagg.aggregation.fedavg import FedAvg

__all__ = ["AggregationRule", "FedAvg", "make_rule"]
