"""The gemini-ft simulator: placement, failures, recovery and checkpoint traffic.

Imports without torch. Entry points: `sim.placement` (who holds whose checkpoint and the odds of
recovering from CPU memory), `sim.engine` (the SimPy cluster model) and `sim.interleave` (checkpoint
traffic within one iteration).
"""
