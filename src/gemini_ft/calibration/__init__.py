"""Calibration and validation: fit the simulator's parameters from real-runner measurements.

`measurements` reads `measurements.parquet` files and groups their events into transfers and
recoveries; `fit` turns them into parameter estimates with 95% intervals; `overlay` writes them into
a scenario; `validate` compares the simulator's predictions with held-out measurements.
"""
