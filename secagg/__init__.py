"""secagg: privacy-hardened federated learning with an auditable ledger."""

from secagg.errors import SecAggError

__version__ = "0.1.0"
__all__ = ["SecAggError", "__version__"]
