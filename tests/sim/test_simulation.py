"""The simulator: determinism, faults, invariants over many seeds, poll skipping, scenarios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest_core import InvalidArgument
from loadtest_core.cli import main
from loadtest_core.sim import (
    Faults,
    Metrics,
    Scenario,
    Simulator,
    load_scenario,
    plan_shards,
    simulate,
)

SMALL = Scenario(tests=40, agents=5, seed=1, stop_probability=0.3)


def test_same_seed_same_log_and_different_seeds_differ() -> None:
    """Two runs with one seed hash the same event log; another seed hashes differently."""
    a, b = simulate(SMALL), simulate(SMALL)
    assert a.event_log_sha256 == b.event_log_sha256 and a.events == b.events > 0
    assert simulate(SMALL.with_overrides(seed=2)).event_log_sha256 != a.event_log_sha256


@pytest.mark.parametrize("seed", range(12))
def test_skipping_polls_changes_no_outcome(seed: int) -> None:
    """With every fault on, a skipped-poll run logs exactly what a fully polled run logs."""
    faults = Faults(partition=0.2, crash=0.1, duplicate=0.2, reorder=0.2, failure=0.1, slow=0.2)
    sc = Scenario(
        tests=30,
        agents=4,
        seed=seed,
        stop_probability=0.3,
        faults=faults,
        lost_after=10,
        lost_expiry=None if seed % 2 else 40,
    )
    skipped, full = simulate(sc), simulate(sc.with_overrides(full_polling=True))
    assert skipped.event_log_sha256 == full.event_log_sha256
    assert skipped.final_status_counts == full.final_status_counts


def test_invariants_hold_over_200_seeds() -> None:
    """Random small scenarios with faults never violate an invariant and never stall silently."""
    for seed in range(200):
        faults = Faults(partition=0.1, crash=0.05, duplicate=0.1, reorder=0.1, failure=0.05)
        m = simulate(
            Scenario(
                tests=8,
                agents=3,
                seed=seed,
                faults=faults,
                lost_after=10,
                lost_expiry=60,
                stop_probability=0.3,
            )
        )
        assert m.invariant_violations == 0, seed
        assert sum(m.final_status_counts.values()) == 8


def test_long_partition_goes_lost_then_recovers() -> None:
    """A partition longer than lost_after makes the test LOST; the agent's return recovers it."""
    faults = Faults(partition=1.0, partition_duration={"kind": "fixed", "value": 40.0})
    sc = Scenario(
        tests=10,
        agents=10,
        seed=4,
        faults=faults,
        lost_after=10,
        stop_probability=0.0,
        time_limit=100,
        stages={"running": {"kind": "fixed", "value": 300.0}},
    )
    m = Simulator(sc).run()
    assert m.lost_false == 10 and m.lost_true == 0
    assert m.final_status_counts == {"AUTOSTOPPED": 10} and m.stuck == 0
    short = simulate(
        sc.with_overrides(
            faults=Faults(partition=1.0, partition_duration={"kind": "fixed", "value": 5.0})
        )
    )
    assert short.lost_false == 0  # silence shorter than lost_after is not LOST
    just_over = Faults(partition=1.0, partition_duration={"kind": "fixed", "value": 11.5})
    exact = simulate(sc.with_overrides(faults=just_over, tick_interval=0))
    assert exact.lost_false == 10  # exact deadlines: any silence past lost_after is LOST


def test_crash_goes_lost_then_failed_with_expiry() -> None:
    """A crashed agent's test goes LOST (a true episode) and then FAILED once lost_expiry passes."""
    sc = Scenario(
        tests=5,
        agents=5,
        seed=2,
        faults=Faults(crash=1.0),
        lost_after=10,
        lost_expiry=30,
        stop_probability=0.0,
    )
    m = simulate(sc)
    assert m.lost_true == 5 and m.lost_false == 0
    assert m.final_status_counts == {"FAILED": 5}
    without = simulate(sc.with_overrides(lost_expiry=None, horizon=3600))
    assert without.final_status_counts == {"LOST": 5} and without.stuck == 5


def test_duplicates_and_reorders_are_harmless() -> None:
    """Duplicated and reordered claims are answered stale and every test still ends."""
    sc = Scenario(
        tests=20, agents=4, seed=3, faults=Faults(duplicate=1.0, reorder=1.0), stop_probability=0.0
    )
    m = simulate(sc)
    assert m.rejected > 0 and m.invariant_violations == 0 and m.stuck == 0


def test_time_limit_autostops_and_failures_fail() -> None:
    """Tests running past the time limit AUTOSTOP; failing agents end FAILED."""
    long_run = {"running": {"kind": "fixed", "value": 500.0}}
    m = simulate(
        Scenario(tests=6, agents=6, seed=1, time_limit=60, stages=long_run, stop_probability=0.0)
    )
    assert m.final_status_counts == {"AUTOSTOPPED": 6}
    f = simulate(
        Scenario(tests=6, agents=6, seed=1, faults=Faults(failure=1.0), stop_probability=0.0)
    )
    assert f.final_status_counts == {"FAILED": 6}


def test_user_stops_are_measured() -> None:
    """Every user stop that succeeds contributes a latency sample."""
    m = simulate(Scenario(tests=30, agents=30, seed=5, stop_probability=1.0))
    summary = m.summary()
    counts = m.final_status_counts
    assert summary["stops"] >= counts.get("STOPPED", 0) + counts.get("CANCELLED", 0) > 20
    assert summary["stop_latency_p99_s"] >= summary["stop_latency_p50_s"] >= 0


def _same_run(m: Metrics) -> dict[str, object]:
    out = m.summary()
    del out["wall_seconds"], out["events_per_s"]
    return out


def test_shards_give_the_same_run_with_any_workers() -> None:
    """A sharded run has the same metrics and hash in one process, two, or an executor."""
    from concurrent.futures import ThreadPoolExecutor

    sc = Scenario(tests=50, agents=10, seed=9, shard_size=12, stop_probability=0.3)
    assert len(plan_shards(sc)) == 5
    one = simulate(sc)
    with ThreadPoolExecutor(2) as pool:
        threaded = simulate(sc, executor=pool)
    assert _same_run(one) == _same_run(simulate(sc, workers=2)) == _same_run(threaded)
    assert one.tests == 50 and sum(one.final_status_counts.values()) == 50
    assert one.event_log_sha256 != simulate(sc.with_overrides(shard_size=50)).event_log_sha256


@pytest.mark.parametrize(
    ("tests", "agents", "size", "count"),
    [(10, 3, 5000, 1), (103, 10, 10, 10), (103, 4, 10, 4), (7, 7, 1, 7), (5, 9, 2, 3)],
)
def test_shard_plan_splits_tests_agents_and_rate(
    tests: int, agents: int, size: int, count: int
) -> None:
    """Shards cover every test once, each has an agent, and the arrival rates add up."""
    sc = Scenario(tests=tests, agents=agents, shard_size=size, arrival_rate=2.0)
    plan = plan_shards(sc)
    assert len(plan) == count
    assert sum(s.scenario.tests for s in plan) == tests
    assert sum(s.scenario.agents for s in plan) == agents
    assert all(
        s.scenario.agents >= 1 and s.scenario.tests <= max(size, -(-tests // agents)) for s in plan
    )
    assert [s.first_test for s in plan] == [
        sum(p.scenario.tests for p in plan[:i]) for i in range(count)
    ]
    assert sum(s.scenario.arrival_rate or 0 for s in plan) == pytest.approx(2.0)


def test_sharded_trace_timeline_and_progress(tmp_path: Path) -> None:
    """One process writes every shard's log to the trace and merges timelines and progress."""
    import io

    sc = Scenario(tests=40, agents=8, seed=2, shard_size=10)
    trace = io.StringIO()
    seen: list[tuple[int, int]] = []
    m = simulate(sc, trace=trace, timeline_every=5.0, progress=lambda d, n, t: seen.append((d, n)))
    assert len(trace.getvalue().splitlines()) == m.events
    times = [t for t, _ in m.timeline]
    assert times == sorted(times) and m.timeline[-1][1] == m.final_status_counts
    assert seen[-1] == (40, 40) and all(n == 40 for _, n in seen)
    with pytest.raises(ValueError, match="trace"):
        simulate(sc, workers=2, trace=io.StringIO())


@pytest.mark.parametrize(
    ("text", "suffix", "field"),
    [
        ("tests = -1\n", ".toml", "tests"),
        ("tests: 10\nagents: zero\n", ".yaml", "agents"),
        ("faults:\n  crash: 2\n", ".yaml", "faults.crash"),
        ("stages:\n  running:\n    kind: gaussian\n", ".yml", "stages.running.kind"),
        ("unknown_field = 1\n", ".toml", "unknown_field"),
        ("tests = [\n", ".toml", "scenario"),
        ("- 1\n- 2\n", ".yaml", "scenario"),
        ("tests = 1\n", ".json", "scenario"),
    ],
)
def test_bad_scenario_files_name_the_field(
    tmp_path: Path, text: str, suffix: str, field: str
) -> None:
    """A bad scenario file raises InvalidArgument naming the offending field."""
    path = tmp_path / f"s{suffix}"
    path.write_text(text)
    with pytest.raises(InvalidArgument) as info:
        load_scenario(path)
    assert info.value.field == field


def test_scenario_file_loads(tmp_path: Path) -> None:
    """A valid TOML scenario loads with nested distributions and faults."""
    path = tmp_path / "s.toml"
    path.write_text(
        "tests = 12\nagents = 3\nlost_after = 10.0\n"
        "[faults]\npartition = 0.5\n[stages.running]\nkind = 'exponential'\nmean = 30.0\n"
    )
    sc = load_scenario(path)
    assert sc.tests == 12 and sc.faults.partition == 0.5 and sc.stages.running.mean == 30.0


def test_cli_json_trace_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """simulate --json prints the documented keys; --trace writes the log; --plot a PNG."""
    trace, png = tmp_path / "t.jsonl", tmp_path / "p.png"
    code = main(
        [
            "simulate",
            "--tests",
            "20",
            "--agents",
            "4",
            "--seed",
            "1",
            "--json",
            "--trace",
            str(trace),
            "--plot",
            str(png),
            "--partition",
            "0.2",
            "--lost-after",
            "10",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "tests",
        "events",
        "events_per_s",
        "final_status_counts",
        "lost_true",
        "lost_false",
        "stop_latency_p50_s",
        "stop_latency_p99_s",
        "stuck",
        "invariant_violations",
        "event_log_sha256",
    ):
        assert key in out
    lines = trace.read_text().splitlines()
    assert len(lines) == out["events"] and json.loads(lines[0])["event"] == "create"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_scenario_file_and_bad_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--scenario is read and overridden by flags; invalid values exit 2 naming the field."""
    path = tmp_path / "s.yaml"
    path.write_text("tests: 7\nagents: 2\n")
    assert main(["simulate", "--scenario", str(path), "--agents", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tests"] == 7
    assert main(["simulate", "--tests", "0"]) == 2
    assert "tests" in capsys.readouterr().err
    assert main(["simulate", "--crash", "1.5"]) == 2
    assert "faults.crash" in capsys.readouterr().err


def test_hash_batching_does_not_change_the_hash() -> None:
    """Hashing log lines in batches gives the hash of hashing them one by one."""
    sc = Scenario(tests=800, agents=40, seed=3)
    batched = Simulator(sc)
    batched.hash_batch = 1000
    single = Simulator(sc)
    single.hash_batch = 1
    a, b = batched.run(), single.run()
    assert a.events > 1000 and a.events % 1000 != 0
    assert a.event_log_sha256 == b.event_log_sha256


def test_gc_is_paused_during_a_run_and_restored() -> None:
    """The cyclic GC is off while a run goes and back to its former state after."""
    import gc

    seen: list[bool] = []
    sim = Simulator(SMALL, progress=lambda *_: seen.append(gc.isenabled()))
    assert gc.isenabled()
    sim.run()
    assert seen and not any(seen) and gc.isenabled()
    gc.disable()
    try:
        Simulator(SMALL).run()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_arrivals_are_created_in_order_at_their_times() -> None:
    """With an arrival rate, test i is created at i / rate, in index order."""
    import io

    trace = io.StringIO()
    simulate(Scenario(tests=25, agents=3, seed=4, arrival_rate=2.0), trace=trace)
    creates = [r for r in map(json.loads, trace.getvalue().splitlines()) if r["event"] == "create"]
    assert [round(r["at"] - creates[0]["at"], 6) for r in creates] == [i / 2 for i in range(25)]
    assert [r["test_id"] for r in creates] == sorted(r["test_id"] for r in creates)


def test_skipping_polls_changes_no_outcome_without_faults() -> None:
    """A fault-free run (no fault draws at all) logs what its fully polled twin logs."""
    sc = Scenario(tests=30, agents=4, seed=5, stop_probability=0.3, lost_after=10)
    skipped, full = simulate(sc), simulate(sc.with_overrides(full_polling=True))
    assert skipped.events > 0 and skipped.event_log_sha256 == full.event_log_sha256


def test_deadlines_fire_on_the_ticker_beat_like_serve() -> None:
    """By default LOST comes at the next lost_after/4 beat; tick_interval=0 fires it exactly."""
    import io

    from loadtest_core.sim import Distribution
    from loadtest_core.sim._scenario import Stages
    from loadtest_core.sim._sim import BASE

    def lost_at(**extra: float) -> float:
        trace = io.StringIO()
        sc = Scenario(
            tests=1,
            agents=1,
            seed=3,
            lost_after=10,
            stop_probability=0,
            faults=Faults(crash=1.0),
            stages=Stages(running=Distribution(kind="fixed", value=1000)),  # crash before the end
            **extra,
        )
        simulate(sc, trace=trace)
        records = [json.loads(line) for line in trace.getvalue().splitlines()]
        (lose,) = [r for r in records if r["event"] == "lose"]
        return float(lose["at"]) - BASE

    beat, exact, slow = lost_at(), lost_at(tick_interval=0), lost_at(tick_interval=4)
    assert round(beat / 2.5, 6).is_integer() and round(slow / 4, 6).is_integer()
    assert exact <= beat < exact + 2.5 and exact <= slow < exact + 4
    assert not round(exact / 2.5, 6).is_integer()


def test_cli_shards_ticker_and_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--shard-size and --tick-interval reach the run; --workers 2 repeats --workers 1's hash."""
    base = ["simulate", "--tests", "30", "--agents", "6", "--seed", "4", "--json"]
    runs = []
    for extra in (
        ["--shard-size", "10"],
        ["--shard-size", "10", "--workers", "2", "--plot", str(tmp_path / "p.png")],
        ["--shard-size", "30"],
        ["--shard-size", "10", "--tick-interval", "0", "--crash", "0.5", "--lost-after", "5"],
        ["--shard-size", "10", "--crash", "0.5", "--lost-after", "5"],
    ):
        assert main(base + extra) == 0
        runs.append(json.loads(capsys.readouterr().out)["event_log_sha256"])
    assert runs[0] == runs[1] != runs[2]
    assert runs[3] != runs[4]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert main([*base, "--shard-size", "0"]) == 2
    assert "shard_size" in capsys.readouterr().err
