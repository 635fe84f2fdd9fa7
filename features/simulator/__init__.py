"""The CDP simulator: a generative model of a retailer with ground truth and an oracle.

`simulate_to_directory` writes the eight contract tables plus ``truth/``;
`Oracle.load(out_dir / "truth")` answers what the true churn, value and channel-response
probabilities were. See `oracle` for the oracle's definitions and `dynamics` for the
formulas shared by both.
"""

from features.simulator.oracle import Oracle
from features.simulator.parameters import SimulationParameters
from features.simulator.writer import simulate_to_directory

__all__ = ["Oracle", "SimulationParameters", "simulate_to_directory"]
