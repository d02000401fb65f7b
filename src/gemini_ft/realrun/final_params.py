"""The final parameters of a run, for bit-for-bit comparisons between runs, and what differs when they do.

Rank 0 writes every tensor of the model's state dict, in name order, as flat bytes to
`final_params.bin`, and an index to `final_params.json` (name, dtype, shape, offset, bytes). Two runs
end equal when the two `.bin` files are byte-identical; when they are not, `differences` names each
tensor that differs, how many of its elements and by how much, which says more than "not equal"
(one tensor's last bits, or everything). Flat bytes and JSON: nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gemini_ft.realrun.engine.shard import torch_dtype

BIN, INDEX = "final_params.bin", "final_params.json"


def write_final_params(run_dir: Path, state: dict[str, torch.Tensor]) -> Path:
    """Write `state` (a state dict) as flat bytes in name order, with its index; returns the .bin path."""
    index, offset = [], 0
    with open(run_dir / BIN, "wb") as handle:
        for name, tensor in sorted(state.items()):
            data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            handle.write(data)
            dtype = str(tensor.dtype).removeprefix("torch.")
            index.append({"name": name, "dtype": dtype, "shape": list(tensor.shape), "offset": offset,
                          "nbytes": len(data)})  # fmt: skip
            offset += len(data)
    (run_dir / INDEX).write_text(json.dumps(index, indent=1))
    return run_dir / BIN


def differences(a: Path, b: Path, limit: int = 5) -> list[str]:
    """Why run directories `a` and `b` did not end bit for bit equal: [] when they did; else one line
    per differing tensor (at most `limit`, then a count), or why they cannot be compared."""
    data_a, data_b = (a / BIN).read_bytes(), (b / BIN).read_bytes()
    if data_a == data_b:
        return []
    try:
        index = json.loads((a / INDEX).read_text())
        if json.loads((b / INDEX).read_text()) != index:
            return ["the two runs' final_params.json differ: not the same model"]
    except (OSError, ValueError):
        return [f"{BIN} differs (no readable {INDEX} to say where)"]
    lines = []
    for entry in index:
        low, high = entry["offset"], entry["offset"] + entry["nbytes"]
        if data_a[low:high] == data_b[low:high]:
            continue
        try:
            dtype = torch_dtype(entry["dtype"])
        except ValueError:
            lines.append(f"{entry['name']}: its bytes differ")
            continue
        x = torch.frombuffer(bytearray(data_a[low:high]), dtype=dtype).double()
        y = torch.frombuffer(bytearray(data_b[low:high]), dtype=dtype).double()
        differing = int((x != y).sum())
        worst = float((x - y).abs().max())
        lines.append(f"{entry['name']}: {differing} of {x.numel()} elements differ, max |diff| {worst:.3g}")
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more tensors"]
    return lines
