"""In-process simulation of a federation: clients, aggregator and protection, round by round."""

from secagg.simulation.engine import ClientInfo, RoundRecord, SimulationResult, run_simulation

__all__ = ["ClientInfo", "RoundRecord", "SimulationResult", "run_simulation"]
