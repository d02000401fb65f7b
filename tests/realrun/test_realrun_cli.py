"""`gemini-ft realrun` rejects bad input with one line naming the flag, exit status 2."""

import socket

import pytest

from gemini_ft.cli import main


@pytest.mark.parametrize(
    "argv, start",
    [
        (["--placement", "star"], "--placement = 'star': allowed: group, ring, mixed"),
        (["--machines", "2", "--replicas", "3"], "--replicas = 3: must be at most --machines = 2"),
        (
            ["--machines", "3", "--replicas", "2", "--placement", "group"],
            "--placement = 'group': needs --replicas",
        ),
        (["--fail", "sw@step=x:rank=0"], "--fail = 'sw@step=x:rank=0': "),
        (["--fail", "kill-everything"], "--fail = 'kill-everything': expected"),
        (["--model-size", "7q"], "model-size = '7q': "),
    ],
)
def test_bad_input_is_one_line(argv, start, capsys, tmp_path):
    assert main(["realrun", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gemini-ft: error: {start}")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_busy_port(capsys, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert main(["realrun", "--out", str(tmp_path), "--port", str(port)]) == 2
    assert capsys.readouterr().err.startswith(f"gemini-ft: error: --port = {port}: is busy")
