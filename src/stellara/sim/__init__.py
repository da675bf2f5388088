"""Provider simulators: real HTTP servers speaking provider wire formats on loopback.

They give deterministic answers, token usage, streaming and injected faults, so the gateway can be
shown, tested and benchmarked without keys or network. Start one in a test with
:func:`start_simulator`; serve one from the command line with ``stellara simulate``.
"""

from stellara.sim.app import RunningSimulator, create_sim_app, run_simulator, start_simulator
from stellara.sim.config import SimConfig, load_faults
from stellara.sim.faults import FaultRule

__all__ = [
    "FaultRule",
    "RunningSimulator",
    "SimConfig",
    "create_sim_app",
    "load_faults",
    "run_simulator",
    "start_simulator",
]
