"""Read tracked runs back the way the tools do: TensorBoard's EventAccumulator, and W&B's `.wandb` log.

wandb ≥ 0.18 ships no Python reader of its offline transaction log (the writer moved to its Go core),
so `wandb_records` decodes it here: the LevelDB log format (32 KiB blocks of records with a 7-byte
header: CRC, length, type FULL/FIRST/MIDDLE/LAST) after a 7-byte file header, each record a
`wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from pathlib import Path

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def tensorboard_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files in `directory` (one TensorBoard run): [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    accumulator = EventAccumulator(str(directory), size_guidance={SCALARS: 0})
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def tensorboard_hparams(directory: Path) -> tuple[dict, list[str]]:
    """The hparams plugin's session start values and the experiment's metric tags in `directory`."""
    from google.protobuf import json_format
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    start = plugin_data_pb2.HParamsPluginData.FromString(content[metadata.SESSION_START_INFO_TAG])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content[metadata.EXPERIMENT_TAG])
    params = json_format.MessageToDict(start.session_start_info)["hparams"]
    return params, [m.name.tag for m in experiment.experiment.metric_infos]


def wandb_records(path: Path) -> list:
    """The `Record` protos of one offline run's `.wandb` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    records, pending, offset = [], b"", _HEADER
    while offset + _HEADER <= len(data):
        left = _BLOCK - offset % _BLOCK
        if left < _HEADER:  # the tail of a block too short for a header is padding
            offset += left
            continue
        _, length, kind = struct.unpack_from("<IHB", data, offset)
        if kind == 0 and length == 0:
            break
        payload = data[offset + _HEADER : offset + _HEADER + length]
        offset += _HEADER + length
        pending = payload if kind in (_FULL, _FIRST) else pending + payload
        if kind in (_FULL, _LAST):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def wandb_runs(directory: Path) -> list[Path]:
    """The `.wandb` files of the offline runs under `directory/wandb/`, oldest first.

    W&B's service still writes a run's offline file after `finish` returns (on a loaded host one of four
    was its 7-byte header when read at once, whole a moment later): the service is shut down first, which
    flushes every file, as a process's exit does.
    """
    import wandb

    wandb.teardown()
    return sorted((Path(directory) / "wandb").glob("offline-run-*/run-*.wandb"))


def wandb_history(paths: list[Path]) -> tuple[dict[str, list[tuple[int, float]]], dict]:
    """Every logged metric as [(step, value)] over `paths`, and the last config (key → value)."""
    history: dict[str, list[tuple[int, float]]] = defaultdict(list)
    config: dict = {}
    for path in paths:
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                row = {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
                for key, value in row.items():
                    if not key.startswith("_") and key != "step":
                        history[key].append((int(row["step"]), float(value)))
            elif kind in ("config", "run"):
                items = record.config.update if kind == "config" else record.run.config.update
                for item in items:
                    config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return dict(history), config
