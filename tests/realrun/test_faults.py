"""Parsing of --fail specs and seeded random schedules."""

import pytest

from gemini_ft.common.errors import UserError
from gemini_ft.realrun.faults import FaultInjector, parse_failures


def test_parse_specs():
    failures = parse_failures(["sw@step=30:rank=1", "hw@step=50:machine=2:during=replicate"], 4, 2, 100)
    assert [(f.kind, f.step, f.target, f.during) for f in failures] == [
        ("sw", 30, 1, "step"),
        ("hw", 50, 2, "replicate"),
    ]
    assert failures[1].to_text() == "hw@step=50:machine=2:during=replicate"


@pytest.mark.parametrize(
    "spec",
    ["sw@step=3", "xx@step=3:rank=0", "sw@step=0:rank=0", "sw@step=3:rank=9", "hw@step=3:machine=4",
     "sw@step=3:rank=0:during=lunch", "sw@step=three:rank=0", "sw", "random:count=0", "random:bogus=1",
     "sw@step=1:step=2:rank=0", "mem@step=3:machine=0:shard=0", "mem@step=3:machine=0:shard=8:how=flip",
     "mem@step=3:machine=5:shard=0:how=flip", "mem@step=3:machine=0:shard=0:how=melt"],
)  # fmt: skip
def test_malformed_specs_name_the_field(spec):
    # The library names the config field; `gemini-ft realrun` shows it as --fail (tests/gemini_ft).
    with pytest.raises(UserError, match=r"^failures = "):
        parse_failures([spec], 4, 2, 10)


def test_a_field_given_twice_is_refused_not_overridden():
    with pytest.raises(UserError, match="step= is given twice"):
        parse_failures(["sw@step=1:step=2:rank=0"], 4, 2, 10)


def test_memory_damage_strikes_only_while_the_workers_restart():
    (_sw, damage) = parse_failures(["sw@step=4:rank=0", "mem@step=4:machine=1:shard=3:how=random"], 2, 2, 10)
    assert (damage.kind, damage.step, damage.target, damage.shard, damage.how) == ("mem", 4, 1, 3, "random")
    assert damage.to_text() == "mem@step=4:machine=1:shard=3:how=random"
    with pytest.raises(UserError, match="add a sw@ or hw@ failure at step 4"):
        parse_failures(["sw@step=5:rank=0", "mem@step=4:machine=1:shard=3:how=flip"], 2, 2, 10)
    with pytest.raises(UserError, match="its memory is wiped anyway"):
        parse_failures(["hw@step=4:machine=1", "mem@step=4:machine=1:shard=3:how=flip"], 2, 2, 10)


@pytest.mark.parametrize("how", ["flip", "random", "truncate", "delete", "manifest"])
def test_memory_damage_hits_the_newest_copy_and_the_store_refuses_it(tmp_path, how):
    from gemini_ft.realrun.engine.checksums import chunk_checksums
    from gemini_ft.realrun.engine.manifest import Manifest, build_layout
    from gemini_ft.realrun.engine.shm_store import ShmStore
    from gemini_ft.realrun.faults import damage_memory

    store = ShmStore(tmp_path / "job", machine=0)
    for step in (1, 2, 3):  # slots 0, 1, 0: the newest copy is in slot 0
        entries, total = build_layout([("param/w", "uint8", (8192,), 8192)])
        slot, buffer = store.begin(2, total)
        buffer[:8192] = bytes([step]) * 8192
        store.commit(
            slot, Manifest(2, step, total, 4096, tuple(chunk_checksums(buffer, 4096)), tuple(entries))
        )
    hit = damage_memory(store.dir, 2, how, seed=1)
    assert hit is not None and hit.name.startswith("shard2.slot0")
    fresh = ShmStore(store.root, 0)
    assert fresh.read(2, 3) is None and fresh.read(2, 2) is not None
    assert [r.slot for r in fresh.rejections] == [0]
    assert damage_memory(store.dir, 5, how) is None  # no copy of shard 5 here: nothing to damage
    fresh.close()
    store.close()


def test_random_schedule_is_seeded():
    a = parse_failures(["random:count=3:seed=7"], 4, 1, 50)
    b = parse_failures(["random:count=3:seed=7"], 4, 1, 50)
    c = parse_failures(["random:count=3:seed=8"], 4, 1, 50)
    assert a == b and a != c
    assert len({f.step for f in a}) == 3 and all(2 <= f.step < 50 for f in a)


def test_a_failure_fires_once(tmp_path, monkeypatch):
    struck = []
    failures = parse_failures(["sw@step=2:rank=0"], 1, 1, 5)
    injector = FaultInjector(failures, tmp_path, rank=0, machine=0, local_rank=0)
    monkeypatch.setattr(injector, "_strike", struck.append)
    injector.check(1, "step")
    injector.check(2, "snapshot")
    assert struck == []
    injector.check(2, "step")
    again = FaultInjector(failures, tmp_path, rank=0, machine=0, local_rank=0)  # a restarted worker
    monkeypatch.setattr(again, "_strike", struck.append)
    again.check(2, "step")
    assert struck == failures
