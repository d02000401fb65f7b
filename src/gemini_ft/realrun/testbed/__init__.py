"""The local testbed: N emulated machines on one host, and everything a run leaves on it.

`launcher` starts one torchrun agent per machine and replaces machines a hardware failure struck;
`netns` shapes their links; `rundir` and `shm_jobs` own the run and shared-memory directories;
`progress` follows a run's events while it trains.
"""
