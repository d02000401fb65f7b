"""One-line user errors: what they show of the value."""

from __future__ import annotations

from pathlib import Path

from scenarios.errors import UserError


def test_an_error_shows_a_long_path_whole_and_cuts_other_long_values():
    # The user must find the file: a path is never cut (a deep tmp or cluster path easily passes 80).
    path = "/very/deep/" + "directory/" * 12 + "results.parquet"
    assert str(UserError("RESULTS", path, "no such file or directory")) == (
        f"RESULTS = '{path}': no such file or directory"
    )
    assert str(UserError("out", Path(path), "is a file")) == f"out = '{path}': is a file"
    pasted = "x" * 200
    message = str(UserError("policy", pasted, "allowed: gemini"))
    assert message == f"policy = {repr(pasted)[:77]}...: allowed: gemini"
