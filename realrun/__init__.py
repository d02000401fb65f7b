"""The real runner: torchrun-launched DDP training with an in-memory checkpoint engine.

`gemini-ft realrun` starts one torchrun agent per emulated machine (`launcher`); each worker runs
`train`, snapshots its optimizer shard into machine-owned shared memory (`shm_store`), replicates it
to the peers `sim.placement` names (`replication`), recovers after injected failures (`recovery`,
`faults`) and logs events that `measurements` gathers into Parquet.
"""
