"""Server-side aggregation rules.

A rule turns the clients' updates into one global update. FedAvg needs only a weighted sum, so
it also runs under secure aggregation; robust rules (Krum, median, ...) need every individual
update and therefore plaintext mode — :attr:`AggregationRule.needs_individual_updates` says which.
Norm bounding is linear after clipping, so it can run under masking if clients clip first.
Weights are sample counts capped at the ones clients registered (:class:`SampleRegistry`).
"""

from secagg.aggregation.base import RULE_PARAMS, AggregationRule, make_rule, rule_from_config
from secagg.aggregation.centered_clipping import CenteredClipping
from secagg.aggregation.coordinatewise import CoordinateMedian, TrimmedMean
from secagg.aggregation.fedavg import FedAvg
from secagg.aggregation.fltrust import FLTrust
from secagg.aggregation.krum import Krum, MultiKrum
from secagg.aggregation.norm_bound import NormBound
from secagg.aggregation.sample_counts import AdmittedWeights, SampleRegistry

__all__ = [
    "RULE_PARAMS",
    "AdmittedWeights",
    "AggregationRule",
    "CenteredClipping",
    "CoordinateMedian",
    "FLTrust",
    "FedAvg",
    "Krum",
    "MultiKrum",
    "NormBound",
    "SampleRegistry",
    "TrimmedMean",
    "make_rule",
    "rule_from_config",
]
