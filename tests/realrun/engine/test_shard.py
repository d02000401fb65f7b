"""`plan_shard`: any mix of tensors becomes a flat shard whose regions image every tensor exactly."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from gemini_ft.realrun.engine.manifest import ALIGN
from gemini_ft.realrun.engine.shard import plan_shard

DTYPES = [torch.float32, torch.float16, torch.int64, torch.uint8]


@st.composite
def layouts(draw) -> tuple[list[tuple[str, torch.Tensor]], int]:
    """Named tensors from a few storages, some tiling a range exactly, some with gaps (zero-size ones
    included); returns (named, the number of regions a plan must have)."""
    named, regions = [], 0
    for s in range(draw(st.integers(1, 4))):
        dtype = draw(st.sampled_from(DTYPES))
        sizes = draw(st.lists(st.integers(0, 40), min_size=1, max_size=6))
        gaps = draw(st.lists(st.integers(0, 3), min_size=len(sizes), max_size=len(sizes)))
        storage = torch.arange(sum(sizes) + sum(gaps) + 1, dtype=torch.float64).to(dtype)
        start = 0
        for i, (size, gap) in enumerate(zip(sizes, gaps, strict=True)):
            start += gap
            named.append((f"s{s}/t{i}", storage[start : start + size]))
            start += size
        # One region when no gap separates two members (one before the first does not matter),
        # else one per tensor.
        regions += 1 if all(g == 0 for g in gaps[1:]) else len(sizes)
    order = draw(st.permutations(range(len(named))))
    return [named[i] for i in order], regions


@given(layouts())
def test_regions_image_every_tensor_exactly(layout):
    named, regions = layout
    plan = plan_shard(named)
    flat = torch.zeros(plan.nbytes, dtype=torch.uint8)
    for region in plan.regions:
        assert region.offset % ALIGN == 0
        flat[region.offset : region.offset + region.nbytes].copy_(region.source)
    assert [e.name for e in plan.entries] == [name for name, _ in named]
    for entry, (name, tensor) in zip(plan.entries, named, strict=True):
        assert entry.nbytes == tensor.numel() * tensor.element_size()
        assert entry.shape == tuple(tensor.shape)
        stored = flat[entry.offset : entry.offset + entry.nbytes]
        assert torch.equal(stored, tensor.reshape(-1).view(torch.uint8)), name
    # One region per exactly tiled storage, one per tensor of the others: nothing is copied twice.
    assert len(plan.regions) == regions
    assert sum(r.nbytes for r in plan.regions) == sum(e.nbytes for e in plan.entries)


def test_tied_tensors_get_regions_of_their_own():
    base = torch.arange(8, dtype=torch.float32)
    plan = plan_shard([("a", base[:4]), ("b", base[:4]), ("c", base[4:])])
    assert len(plan.regions) == 3
    assert sum(r.nbytes for r in plan.regions) == 48


def test_an_exactly_tiled_storage_is_one_region_in_any_order():
    base = torch.arange(10, dtype=torch.float32)
    plan = plan_shard([("late", base[6:]), ("early", base[:6])])
    assert len(plan.regions) == 1 and plan.regions[0].nbytes == 40
    assert {e.name: e.offset for e in plan.entries} == {"early": 0, "late": 24}
