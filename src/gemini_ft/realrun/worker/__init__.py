"""The training process torchrun starts: DDP + ZeRO over a small GPT, checkpointed by the engine.

`python -m gemini_ft.realrun.worker.train --config <run>/config.json` is the entry point; `model` holds the
GPT, its synthetic data and the deterministic gradient all-reduce.
"""
