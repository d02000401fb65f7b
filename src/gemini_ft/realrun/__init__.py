"""The real runner: torchrun-launched DDP training with an in-memory checkpoint engine.

Three parts, each its own package: `engine` (the checkpoint engine of one rank: shard layout,
shared-memory store, snapshot, replication over a transport, recovery, persistent checkpoints),
`worker` (the training process torchrun starts) and `testbed` (the local launcher, network
namespaces, run and shared-memory directories). What the processes of a run share sits beside
them: `config` (the run's configuration), `devices`, `faults` (failure specs and injection),
`markers` (the fault files of a run directory), `measurements` (the event log) and `tracking`.
"""
