"""The scenario schema: defaults are the paper's set-up, sections are frozen and reject bad values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gemini_ft.scenarios.schema import (
    GIB,
    MAX_FAILURE_DRAWS,
    SECTION_MODELS,
    ClusterConfig,
    Scenario,
    allowed_fields,
)


def test_defaults_are_the_papers_main_setup():
    scenario = Scenario()
    assert scenario.cluster.machines == 16 and scenario.cluster.gpus_per_machine == 8
    assert scenario.checkpoint.placement == "group" and scenario.checkpoint.replicas == 2
    # GPT-2 100B at 12 B/param over 128 GPUs is 9.4 GB per GPU (paper §7).
    assert scenario.ckpt_bytes_per_gpu == pytest.approx(9.375e9)
    assert scenario.ckpt_bytes_per_machine == pytest.approx(75e9)
    assert scenario.cpu_memory_needed_gib == pytest.approx(2 * 75e9 / GIB)
    assert scenario.failure_domains == 4


def test_every_field_has_a_description():
    for model in (Scenario, *SECTION_MODELS.values()):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name}"


def test_sections_are_frozen():
    scenario = Scenario()
    with pytest.raises(ValidationError, match="frozen"):
        scenario.cluster.machines = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "location"),
    [
        ({"cluster": {"machines": 0}}, ("cluster", "machines")),
        ({"cluster": {"machines": "many"}}, ("cluster", "machines")),
        ({"cluster": {"machine": 4}}, ("cluster", "machine")),
        ({"clusters": {"machines": 4}}, ("clusters",)),
        ({"checkpoint": {"placement": "star"}}, ("checkpoint", "placement")),
        ({"interleave": {"mu": 1.0}}, ("interleave", "mu")),
        ({"failures": {"hardware_fraction": 1.5}}, ("failures", "hardware_fraction")),
        ({"checkpoint": {"transfer_latency_s": -0.001}}, ("checkpoint", "transfer_latency_s")),
        ({"checkpoint": {"transfer_latency_s": float("inf")}}, ("checkpoint", "transfer_latency_s")),
        ({"checkpoint": {"local_retrieval_latency_s": -1}}, ("checkpoint", "local_retrieval_latency_s")),
        ({"checkpoint": {"replication_gbps": 0}}, ("checkpoint", "replication_gbps")),
        ({"checkpoint": {"replication_gbps": -10}}, ("checkpoint", "replication_gbps")),
        ({"checkpoint": {"replication_gbps": float("inf")}}, ("checkpoint", "replication_gbps")),
        ({"sweep": {"cluster.machines": []}}, ("sweep",)),
    ],
)
def test_bad_values_are_rejected_with_their_location(data, location):
    with pytest.raises(ValidationError) as err:
        Scenario.model_validate(data)
    assert err.value.errors()[0]["loc"][: len(location)] == location


def test_cross_field_checks():
    with pytest.raises(
        ValidationError, match=r"checkpoint\.replicas = 3: must be at most cluster\.machines = 2"
    ):
        Scenario.model_validate({"cluster": {"machines": 2}, "checkpoint": {"replicas": 3}})
    with pytest.raises(ValidationError, match="trace_file is required"):
        Scenario.model_validate({"failures": {"distribution": "trace"}})
    assert Scenario.model_validate({"cluster": {"machines": 2}, "checkpoint": {"replicas": 2}})


def test_a_run_that_would_draw_more_failures_than_memory_holds_is_refused():
    # 1,024 machines × 1,000 failures a day × 30 days: 30.7 M failures (4.4 GB) for one seed.
    with pytest.raises(ValidationError, match=r"= 30,720,000 failures drawn per run, more than 10,000,000"):
        Scenario.model_validate(
            {"cluster": {"machines": 1024}, "failures": {"rate_per_machine_per_day": 1000}}
        )
    # The operations model draws at the bad machines' rate before it thins.
    ops = {"enabled": True, "bad_machine_fraction": 0.1, "bad_rate_multiplier": 1000}
    with pytest.raises(ValidationError, match=r"× operations\.bad_rate_multiplier = 45,000,000"):
        Scenario.model_validate({"cluster": {"machines": 100_000}, "operations": ops})
    # A million machines at 1.5% a day for a year is within it; a trace's size is the file's.
    year = Scenario.model_validate({"cluster": {"machines": 1_000_000}, "run": {"duration_days": 365}})
    assert 5e6 < year.failure_draws_expected < MAX_FAILURE_DRAWS
    assert (
        Scenario.model_validate(
            {"failures": {"distribution": "trace", "trace_file": "t.csv", "rate_per_machine_per_day": 1e6}}
        ).failure_draws_expected
        == 0
    )


def test_allowed_fields_lists_every_section():
    table = allowed_fields()
    assert set(table[""]) == set(Scenario.model_fields)
    assert table["cluster"] == list(ClusterConfig.model_fields)
    assert set(table) == {"", *SECTION_MODELS}


def test_gemini_replicas_must_fit_in_cpu_memory() -> None:
    from gemini_ft.common.errors import UserError
    from gemini_ft.scenarios.loader import load_scenario

    # 1.2 TB over 16 machines = 70 GiB per shard; 2 replicas need 140 GiB.
    with pytest.raises(UserError, match=r"checkpoint.replicas = 2: .*140 GiB.*cluster.cpu_memory_gib = 100"):
        load_scenario("gpt2-100b-p4d", {"cluster.cpu_memory_gib": 100})
    strawman = {"cluster.cpu_memory_gib": 100, "checkpoint.policy": "strawman", "sweep": {}}
    assert load_scenario("gpt2-100b-p4d", strawman).checkpoint.policy == "strawman"  # no in-memory copies


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cluster": {"machines": True}}, "must be a number, not a boolean"),
        ({"checkpoint": {"iteration_overhead_fraction": False}}, "must be a number, not a boolean"),
        ({"checkpoint": {"policy": True}}, "Input should be 'gemini'"),
        ({"name": True}, "valid string"),
    ],
)
def test_a_boolean_is_refused_in_the_words_of_its_field(data, message):
    """A boolean is never a count or a rate (pydantic would read `true` as 1); a field of names or choices
    refuses it with its own message, not the numbers'."""
    with pytest.raises(ValidationError, match=message):
        Scenario.model_validate(data)
