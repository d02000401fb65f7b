"""One-line user errors: what they show of the value."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from gemini_ft.common.errors import InvalidScenario, UserError


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


def test_an_error_raised_in_a_worker_process_comes_back_whole():
    # A sweep's worker pickles the exception it raised; UserError must rebuild from its own fields.
    for error in (
        UserError("failures.trace_file", Path("/data/t.csv"), "must be a CSV"),
        InvalidScenario("x = 1: no"),
    ):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
    back = pickle.loads(pickle.dumps(UserError("seed", -1, "must be an integer ≥ 0")))
    assert (back.field, back.value, back.allowed) == ("seed", -1, "must be an integer ≥ 0")


def test_a_numpy_number_shows_as_the_number():
    assert str(UserError("machine", np.int64(99), "at most 15")) == "machine = 99: at most 15"
    assert str(UserError("rate", np.float64(0.5), "at most 0.1")) == "rate = 0.5: at most 0.1"
