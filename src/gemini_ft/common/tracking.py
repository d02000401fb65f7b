"""Experiment tracking: TensorBoard event files and Weights & Biases runs, written off the caller's thread.

`open_tracker(kind, directory, ...)` returns a `Tracker`; its `scalars` and `hparams` only queue a
record, and a background thread owns the backend, so a slow or broken tracker never holds up
training. A backend that fails is reported once on stderr and dropped; the run goes on. Nothing here
imports torch or TensorFlow (TensorBoard's own event writer), so real runs (`realrun.testbed.tracking`)
and sweeps (`sim.sweep_tracking`) share it.
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from gemini_ft.common.errors import UserError

TRACKERS = ("none", "tensorboard", "wandb")
PROJECT = "gemini-ft"
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
_QUEUE_LIMIT = 100_000  # records; beyond it new records are dropped (and counted), never waited for

# A value is a number or something the background thread turns into one: a 0-d tensor (float()
# syncs only that thread) or a callable (e.g. a CUDA event pair's elapsed time).
Value = float | int | Callable[[], float] | Any
HParam = float | int | str | bool


class Backend(Protocol):
    """What a tracker writes to; called only from the tracker's own thread."""

    def scalars(self, step: int, values: dict[str, float], wall_time: float) -> None: ...
    def hparams(
        self, params: dict[str, HParam], metrics: dict[str, float], tags: tuple[str, ...]
    ) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def check_tracker(kind: str, flag: str = "track") -> None:
    """A UserError (one line, exit 2 in the CLI) unless `kind` is known and its package is installed."""
    if kind not in TRACKERS:
        raise UserError(flag, kind, f"allowed: {', '.join(TRACKERS)}")
    package = _PACKAGES.get(kind)
    if package is not None and importlib.util.find_spec(package) is None:
        raise UserError(
            flag,
            kind,
            f"needs the {package} package: pip install 'gemini-ft[track]' (or pip install {package})",
        )


class Tracker:
    """Queues records for a backend opened and driven by a daemon thread."""

    def __init__(self, opener: Callable[[], Backend] | None, label: str) -> None:
        self.label = label
        self.failed = False
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_LIMIT)
        self._thread = None
        if opener is not None:
            self._thread = threading.Thread(
                target=self._drain, args=(opener,), name=f"track-{label}", daemon=True
            )
            self._thread.start()

    @property
    def active(self) -> bool:
        return self._thread is not None

    def scalars(self, step: int, values: Mapping[str, Value]) -> None:
        """Record `values` at `step`; returns at once (a full queue drops the record and counts it)."""
        self._put(("scalars", step, dict(values), time.time()))

    def hparams(
        self,
        params: Mapping[str, Any],
        metrics: Mapping[str, Value] | None = None,
        tags: tuple[str, ...] = (),
    ) -> None:
        """The run's hyperparameters (flattened to numbers, strings and booleans) and headline metrics;
        `tags` names further scalar tags for TensorBoard's hparams view (logged as they come)."""
        self._put(("hparams", flat_hparams(params), dict(metrics or {}), tags))

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until everything queued so far is written (at most `timeout_s`)."""
        if self._thread is not None:
            done = threading.Event()
            self._put(("flush", done))
            done.wait(timeout_s)

    def close(self, timeout_s: float = 300.0) -> bool:
        """Write what is queued, close the backend; True if nothing failed, was dropped or is unwritten.

        W&B's close starts and waits on its service process, which took over a minute on a loaded host:
        a close that gives up waiting says so and returns False rather than pass for complete."""
        if self._thread is not None:
            self._put(None)
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self.failed = True
                _warn(
                    f"tracking ({self.label}) was still writing after {timeout_s:g} s: records may be missing"
                )
            self._thread = None
            if self.dropped:
                _warn(f"tracking ({self.label}) dropped {self.dropped} records: its queue was full")
        return not self.failed and not self.dropped

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _put(self, item: tuple | None) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _drain(self, opener: Callable[[], Backend]) -> None:
        backend: Backend | None = None
        try:
            backend = opener()
            # A process that exits with records still queued writes them first (and before W&B's
            # own exit hook, registered by opener(), finishes the run: atexit runs last-in first).
            atexit.register(self.close)
        except Exception as exc:
            self._fail(exc)
        while True:
            item = self._queue.get()
            batch = [item]
            while item is not None and not self._queue.empty():  # write a burst, then flush once
                item = self._queue.get_nowait()
                batch.append(item)
            backend = self._write(backend, batch)
            if batch[-1] is None:
                break
        if backend is not None:
            try:
                backend.close()
            except Exception as exc:
                self._fail(exc)

    def _write(self, backend: Backend | None, batch: list[tuple | None]) -> Backend | None:
        for item in batch:
            if item is None or backend is None:
                if item is not None and item[0] == "flush":
                    item[1].set()
                continue
            try:
                if item[0] == "scalars":
                    values = {k: v for k, v in ((k, _number(v)) for k, v in item[2].items()) if v is not None}
                    backend.scalars(item[1], values, item[3])
                elif item[0] == "hparams":
                    metrics = {
                        k: v for k, v in ((k, _number(v)) for k, v in item[2].items()) if v is not None
                    }
                    backend.hparams(item[1], metrics, item[3])
                else:
                    backend.flush()
                    item[1].set()
            except Exception as exc:
                self._fail(exc)
                backend = None
                if item[0] == "flush":
                    item[1].set()
        if backend is not None:
            try:
                backend.flush()  # into the kernel at once: a killed worker loses at most this burst
            except Exception as exc:
                self._fail(exc)
                backend = None
        return backend

    def _fail(self, exc: BaseException) -> None:
        if not self.failed:
            self.failed = True
            _warn(f"tracking ({self.label}) failed and is off for the rest of this run: {exc!r}")


def _warn(message: str) -> None:
    print(f"gemini-ft: warning: {message}", file=sys.stderr, flush=True)


def _number(value: Value) -> float | None:
    value = value() if callable(value) else value
    number = float(value)
    return None if math.isnan(number) else number


def flat_hparams(params: Mapping[str, Any], prefix: str = "") -> dict[str, HParam]:
    """Nested mappings as dotted keys; None as "none", sequences and paths as text."""
    out: dict[str, HParam] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_hparams(value, f"{name}."))
        elif isinstance(value, bool | str):
            out[name] = value
        elif isinstance(value, int | float) or hasattr(value, "item"):
            number = value.item() if hasattr(value, "item") else value
            out[name] = number if isinstance(number, bool | int | float) else str(number)
        elif value is None:
            out[name] = "none"
        elif isinstance(value, list | tuple):
            out[name] = ",".join(map(str, value))
        else:
            out[name] = str(value)
    return out


def open_tracker(
    kind: str,
    directory: Path,
    *,
    name: str,
    config: Mapping[str, Any] | None = None,
    online: bool = False,
    run_id: str | None = None,
    group: str | None = None,
) -> Tracker:
    """A tracker writing `kind` ("none", "tensorboard", "wandb") under `directory`.

    TensorBoard: event files in `directory` (one TensorBoard run). W&B: a run in
    `directory/wandb/`, offline unless `online`; the same `run_id` continues one W&B run.
    """
    check_tracker(kind)
    if kind == "none":
        return Tracker(None, kind)
    directory = Path(directory)
    if kind == "tensorboard":
        return Tracker(lambda: TensorBoardBackend(directory), kind)
    return Tracker(lambda: WandbBackend(directory, name, dict(config or {}), online, run_id, group), kind)


class TensorBoardBackend:
    """Scalars and the hparams plugin's protos straight into an event file (no torch, no TensorFlow)."""

    def __init__(self, directory: Path) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        directory.mkdir(parents=True, exist_ok=True)
        self.writer = EventFileWriter(str(directory), max_queue_size=1024, flush_secs=3600)

    def scalars(self, step: int, values: dict[str, float], wall_time: float) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=v) for tag, v in values.items()])
        self._add(summary, step, wall_time)

    def hparams(self, params: dict[str, HParam], metrics: dict[str, float], tags: tuple[str, ...]) -> None:
        """The hparams plugin's experiment + session start, the metrics as scalars, session end."""
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        infos = []
        for key, value in params.items():
            if isinstance(value, bool):
                start.hparams[key].bool_value, kind = value, "DATA_TYPE_BOOL"
            elif isinstance(value, str):
                start.hparams[key].string_value, kind = value, "DATA_TYPE_STRING"
            else:
                start.hparams[key].number_value, kind = float(value), "DATA_TYPE_FLOAT64"
            infos.append(api_pb2.HParamInfo(name=key, type=api_pb2.DataType.Value(kind)))
        experiment = api_pb2.Experiment(
            hparam_infos=infos,
            metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in [*metrics, *tags]],
        )
        end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value("STATUS_SUCCESS"))
        for tag, data in (
            (metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
            (metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
        ):
            self._plugin(tag, data)
        if metrics:
            self.scalars(0, metrics, time.time())
        self._plugin(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def _plugin(self, tag: str, data: Any) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.plugins.hparams import metadata

        data.version = metadata.PLUGIN_DATA_VERSION
        plugin = SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()
        )
        self._add(Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))]), 0)

    def _add(self, summary: Any, step: int, wall_time: float | None = None) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self.writer.add_event(Event(wall_time=wall_time or time.time(), step=step, summary=summary))


class WandbBackend:
    """One W&B run, offline unless asked; every metric is plotted against our own `step`."""

    def __init__(
        self,
        directory: Path,
        name: str,
        config: dict[str, Any],
        online: bool,
        run_id: str | None = None,
        group: str | None = None,
    ) -> None:
        import wandb

        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT),
            name=name,
            id=run_id,
            resume="allow" if run_id else None,
            group=group,
            dir=str(directory),
            config=config,
            mode="online" if online else "offline",
            # No console capture and no system-metrics sampler: neither may cost the training any CPU.
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
        # Our step axis (restarts repeat steps); W&B's own counter must only grow.
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def scalars(self, step: int, values: dict[str, float], wall_time: float) -> None:
        self.run.log({"step": step, **values})

    def hparams(self, params: dict[str, HParam], metrics: dict[str, float], tags: tuple[str, ...]) -> None:
        self.run.config.update(params, allow_val_change=True)
        if metrics:
            self.run.log({"step": 0, **metrics})
            self.run.summary.update(metrics)

    def flush(self) -> None:
        pass  # wandb's own service process owns its file

    def close(self) -> None:
        self.run.finish()
