"""The fault files of a run directory: a marker is claimed once, read back typed, garbage is skipped."""

import stat

from gemini_ft.realrun import markers
from gemini_ft.realrun.markers import Fired


def test_a_marker_is_claimed_once_and_read_back(tmp_path):
    first = Fired(0, "sw@step=3:rank=1", 3, 100.0, 1, 1)
    assert markers.claim(tmp_path, first)
    assert not markers.claim(tmp_path, Fired(0, "sw@step=3:rank=1", 3, 200.0, 1, 1))  # a restarted worker
    later = Fired(1, "hw@step=5:machine=0", 5, 150.0, 0, 0)
    assert markers.claim(tmp_path, later)
    assert markers.claim(tmp_path, Fired(2, "disk@step=4:how=flip", 4, 160.0, 0, 0), process_failure=False)
    # Damage is no process failure: only fired markers count, oldest first.
    assert markers.fired_failures(tmp_path) == [first, later]
    assert markers.newest_failure(tmp_path) == later
    assert markers.last_failure_time(tmp_path, before=120.0) == 100.0
    assert markers.last_failure_time(tmp_path, before=50.0) is None
    for path in markers.faults_dir(tmp_path).iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unreadable_markers_and_stray_requests_are_ignored(tmp_path):
    directory = markers.faults_dir(tmp_path)
    directory.mkdir()
    (directory / "fired7.json").write_bytes(b"\x00\xffnot json")
    (directory / "fired8.json").write_text('{"index": "x", "spec": 1}')
    assert markers.fired_failures(tmp_path) == [] and markers.newest_failure(tmp_path) is None
    markers.request_machine_kill(tmp_path, 1, index=0)
    for name in ("hw-machineX.request", "hw-machine7.request", "hw-machine-1.request", "junk.request"):
        (directory / name).write_bytes(b"garbage")
    assert markers.machine_kill_requests(tmp_path, machines=2) == [(1, directory / "hw-machine1.request")]
    assert markers.machine_kill_requested(tmp_path, 1) and not markers.machine_kill_requested(tmp_path, 0)
