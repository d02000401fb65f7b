"""Scheme comparison, the simulator's `iteration_cost`, the measured-timeline path and `gemini-ft interleave`."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemini_ft.cli import main
from gemini_ft.scenarios.loader import load_scenario
from gemini_ft.sim.interleave import IterationCost, evaluate_schemes, iteration_cost
from gemini_ft.sim.interleave_timeline import COMM, gpu_memory_left_bytes, model_timeline


@pytest.fixture(scope="module")
def p3dn() -> dict[str, object]:
    return {r.scheme: r for r in evaluate_schemes(load_scenario("gpt2-40b-p3dn"))}


def test_paper_p3dn_setup_reproduces_fig16(p3dn):
    """Paper Fig. 16 (GPT-2 40B, 16 p3dn): blocking +10.1%, no pipelining +3.5%, Gemini about 0,
    naive out of GPU memory. Tolerances: blocking within 2.5 points of 10.1% (its overhead is the
    2.4 s transfer over a modelled 21.3 s iteration, not the paper's measured one); no pipelining
    between 0.5% and 6% ("a few percent": the preset's schedule is tight, see its gpu_tflops comment);
    Gemini under 0.5%; the order blocking > no-pipeline > Gemini."""
    overhead = {name: r.overhead_fraction for name, r in p3dn.items()}
    assert overhead["baseline"] == 0
    assert overhead["blocking"] == pytest.approx(0.101, abs=0.025)
    assert 0.005 < overhead["no-pipeline"] < 0.06
    assert overhead["gemini"] < 0.005
    assert overhead["blocking"] > overhead["no-pipeline"] > overhead["gemini"]
    gemini, naive = p3dn["gemini"], p3dn["naive"]
    assert gemini.fits and gemini.buffer_bytes == 128 * 2**20
    # "the required memory buffer size is more than 2 GB": (mu x 1.6 s - alpha) x 12.5 Gbps = 2.0e9 bytes.
    assert naive.buffer_bytes == pytest.approx((0.8 * 1.6 - 1e-4) * 100e9 / 8 / 8)
    assert naive.fits is False and naive.buffer_bytes > naive.gpu_memory_left_bytes
    # The in-memory checkpoint completes within the iteration that carries it.
    assert 0 < gemini.checkpoint_time_s < gemini.iteration_time_s


def test_p3dn_inputs_trace_to_the_paper():
    """Each input Fig. 16 rests on, as the preset derives it (see its comments for the sources)."""
    scenario = load_scenario("gpt2-40b-p3dn")
    model = scenario.model
    # Table 2's GPT-2 40B: 128 layers x hidden 5120 -> 12 h^2 L = 40.3e9 parameters.
    assert (model.layers, model.hidden_size) == (128, 5120)
    assert 12 * model.hidden_size**2 * model.layers == pytest.approx(40e9, rel=0.01)
    # 3.75 GB per GPU, one remote replica over 1/8 of 100 Gbps: 2.4 s of traffic, blocking's overhead.
    assert scenario.ckpt_bytes_per_gpu == pytest.approx(3.75e9)
    transfer_s = scenario.ckpt_bytes_per_gpu * (scenario.checkpoint.replicas - 1) / (100e9 / 8 / 8)
    assert transfer_s == pytest.approx(2.4)
    # "the largest idle time span profiled during training is 1.6 s".
    spans = model_timeline(scenario).idle_spans()
    assert max(s.length_s for s in spans) == pytest.approx(1.6)
    # A V100's PCIe 3.0 share: far below 8 x a GPU's NIC share (100 Gbps), above the NIC share itself.
    assert 12.5 < scenario.interleave.gpu_to_cpu_gbps <= 64
    # 40B is the largest model that fits: what is left lies between Gemini's 128 MiB and naive's 2 GB.
    left = gpu_memory_left_bytes(scenario)
    assert 128 * 2**20 <= left < 2e9


def test_timeline_matches_the_architecture():
    scenario = load_scenario("gpt2-40b-p3dn")
    timeline = model_timeline(scenario)
    comm = [op for op in timeline.ops if op.kind == COMM]
    assert len(comm) == 3 * 128  # all-gather forward, all-gather backward, reduce-scatter per layer
    compute = sum(op.duration_s for op in timeline.ops if op.kind != COMM)
    # 6 x 40e9 parameters x 7 x 512 tokens at 44 TFLOP/s, plus the 1.6 s optimizer step.
    assert compute == pytest.approx(6 * 40e9 * 7 * 512 / 44e12 + 1.6)
    assert timeline.ops[-1].label == "optimizer-step"
    spans = timeline.idle_spans()
    assert sum(s.length_s for s in spans) == pytest.approx(
        timeline.iteration_time_s - sum(op.duration_s for op in comm)
    )
    # Without the optimizer step the iteration ends with the last reduce-scatter.
    no_step = model_timeline(load_scenario("gpt2-40b-p3dn", ["interleave.optimizer_step_s=0"]))
    assert timeline.iteration_time_s == pytest.approx(no_step.iteration_time_s + 1.6)


def test_naive_fits_when_the_gpu_has_room():
    # With the itemized memory alone (no unitemized reserve), naive's 2 GB chunk fits again.
    scenario = load_scenario("gpt2-40b-p3dn", ["interleave.runtime_reserved_gib=2"])
    results = {r.scheme: r for r in evaluate_schemes(scenario, ["naive", "gemini"])}
    assert results["naive"].buffer_bytes > results["gemini"].buffer_bytes
    assert results["gemini"].fits and results["naive"].fits


def test_iteration_cost_for_the_simulator(p3dn):
    cost = iteration_cost(load_scenario("gpt2-40b-p3dn"))
    assert isinstance(cost, IterationCost)
    assert cost.overhead_fraction == pytest.approx(p3dn["gemini"].overhead_fraction)
    assert cost.checkpoint_time_s == pytest.approx(p3dn["gemini"].checkpoint_time_s)
    blocking = iteration_cost(load_scenario("gpt2-40b-p3dn", ["interleave.scheme=blocking"]))
    assert blocking.overhead_fraction == pytest.approx(p3dn["blocking"].overhead_fraction)
    assert (
        iteration_cost(load_scenario("gpt2-40b-p3dn", ["interleave.scheme=baseline"])).overhead_fraction == 0
    )
    no_architecture = load_scenario("gpt2-40b-p3dn").model_copy(
        update={"model": load_scenario("gpt2-40b-p3dn").model.model_copy(update={"layers": None})}
    )
    assert iteration_cost(no_architecture) is None


@settings(max_examples=15)
@given(
    nic=st.sampled_from([10.0, 25.0, 100.0, 400.0]),
    copy=st.sampled_from([10.0, 50.0, 200.0]),
    buffer=st.sampled_from([16.0, 128.0, 512.0]),
    p=st.integers(2, 8),
    mu=st.floats(0.3, 0.95),
    replicas=st.integers(2, 4),
    alpha=st.sampled_from([0.0, 1e-4, 1e-3]),
)
def test_gemini_never_slower_than_no_pipeline(nic, copy, buffer, p, mu, replicas, alpha):
    overrides = [
        "model.layers=6",
        "model.parameters=6e9",
        "model.hidden_size=8192",
        f"cluster.nic_bandwidth_gbps={nic}",
        f"interleave.gpu_to_cpu_gbps={copy}",
        f"interleave.gpu_buffer_mib={buffer}",
        f"interleave.sub_buffers={p}",
        f"interleave.mu={mu}",
        f"checkpoint.replicas={replicas}",
        f"interleave.alpha_s={alpha}",
    ]
    results = {
        r.scheme: r
        for r in evaluate_schemes(load_scenario("gpt2-40b-p3dn", overrides), ["no-pipeline", "gemini"])
    }
    gemini, single = results["gemini"], results["no-pipeline"]
    # Pipelining never hurts; the only price of p× smaller chunks is the fixed cost α of each extra chunk.
    allowance = max(0, gemini.chunks - single.chunks) * alpha
    assert gemini.iteration_time_s <= single.iteration_time_s + allowance + 1e-9


def test_measured_timeline_csv_replaces_the_model(tmp_path):
    path = tmp_path / "timeline.csv"
    path.write_text("start_s,end_s,kind\n0,1,compute\n1,2,comm\n2,3,compute\n3,4,comm\n")
    scenario = load_scenario("gpt2-40b-p3dn", [f"interleave.timeline_file='{path}'", "model.parameters=1e9"])
    results = {r.scheme: r for r in evaluate_schemes(scenario, ["baseline", "gemini"])}
    assert results["baseline"].iteration_time_s == pytest.approx(4.0)
    # 1e9 × 12 B / 128 GPUs = 94 MB per GPU at 12.5 Gbps = 0.06 s: fits in the first idle second.
    assert results["gemini"].iteration_time_s == pytest.approx(4.0)
    assert results["gemini"].checkpoint_time_s < 1.0


def test_cli_table_and_json(capsys):
    assert main(["interleave", "gpt2-40b-p3dn", "--scheme", "baseline", "--scheme", "blocking"]) == 0
    table = capsys.readouterr().out
    assert "blocking" in table and "overhead" in table and "fits" in table
    assert main(["interleave", "gpt2-40b-p3dn", "--scheme", "gemini", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["scheme"] for row in rows] == ["gemini"]
    assert rows[0]["fits"] is True and rows[0]["buffer_mib"] == 128


def test_cli_plot_writes_png_and_pdf(tmp_path, capsys):
    assert (
        main(
            [
                "interleave",
                "gpt2-40b-p3dn",
                "--set",
                "model.layers=4",
                "--scheme",
                "gemini",
                "--plot",
                str(tmp_path),
            ]
        )
        == 0
    )
    for suffix in ("png", "pdf"):
        assert (tmp_path / f"timeline-gemini.{suffix}").stat().st_size > 1000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "interleave.mu=1.5"], "interleave.mu = 1.5"),
        (["--set", "interleave.mu=0"], "interleave.mu = 0"),
        (["--set", "interleave.chunk_mib=64"], "interleave.chunk_mib = 64"),
        (["--set", "interleave.scheme=fast"], "interleave.scheme = 'fast'"),
        (["--scheme", "fast"], "--scheme = 'fast': allowed: baseline"),
    ],
)
def test_bad_input_is_a_one_line_error(argv, message, capsys):
    assert exit_code(["interleave", "gpt2-40b-p3dn", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_empty_timeline_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text("start_s,end_s,kind\n")
    assert main(["interleave", "gpt2-40b-p3dn", "--set", f"interleave.timeline_file='{path}'"]) == 2
    err = capsys.readouterr().err
    assert "interleave.timeline_file" in err and "empty timeline" in err and err.count("\n") == 1


def exit_code(argv: list[str]) -> int:
    """main()'s return value, or the status argparse exits with for a bad flag."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
