"""The gemini-ft simulator: failures, recovery, checkpoint traffic and cluster operations, in SimPy.

Imports without torch. Entry points: `engine.simulate` (one run of a scenario), `results.run_seeds` and
`sweep.run_sweep` (many), `interleave` (checkpoint traffic within one iteration) and `advise` (the
search for the best configuration). Placements come from `gemini_ft.placement`.
"""
