"""What every layer of gemini-ft shares: user errors, the version, result files, units and tracking.

Nothing here knows a scenario, a placement or a simulation; `errors` and `version` import nothing but
the standard library, so a command's `--help` and a one-line error stay cheap.
"""
