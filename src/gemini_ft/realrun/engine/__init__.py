"""The in-memory checkpoint engine of one rank: store, snapshot, replication, recovery.

It knows nothing of the training loop or the testbed: components take their own config
(`gemini_ft.realrun.engine.config`), move shards through a `transport.ShardTransport`, and report through
an event log. The worker wires it up; an import-linter contract keeps it apart.
"""
