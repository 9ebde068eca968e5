"""Every benchmark still runs end to end on tiny inputs and prints the JSON the docs quote.

Figures are never asserted here (they belong to docs/performance.md); only that
each script works and reports what it claims to measure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.stores._backings import require_pg

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_core_benchmark_compares_the_three_drivers() -> None:
    """core.py reports the core, the naive transitions driver and the dict-loop floor."""
    r = run("core.py", "--tests", "300", "--repeat", "1")
    assert r["tests"] == 300 and r["events"] > 300
    assert r["core_events_per_s"] > 0 and r["transitions_naive_events_per_s"] > 0
    assert r["dict_loop_events_per_s"] > 0 and r["bytes_per_test"] > 0


def test_engine_benchmark_measures_every_store_its_floor_and_the_list_page() -> None:
    """engine.py reports each store's event rate beside its floor, the breakdown and List pages."""
    require_pg()
    r = run("engine.py", "--tests", "60", "--repeat", "1", "--breakdown")
    for name in ("memory", "sqlite", "sqlite_floor", "postgres"):
        assert r[f"{name}_events_per_s"] > 0, name
    assert r["postgres_floor_4rt_events_per_s"] > 0 and r["postgres_floor_1rt_events_per_s"] > 0
    assert r["sqlite_ratio_to_floor"] > 0 and r["postgres_ratio_to_floor"] > 0
    assert set(r["list_first_page"]) == set(r["breakdown"]) == {"memory", "sqlite", "postgres"}
    for part in r["breakdown"].values():
        assert part["store_methods"]["commit"]["calls_per_event"] > 1


def test_engine_benchmark_times_the_reads_at_each_store_size() -> None:
    """engine.py --scale reports every read over each store at each size asked for."""
    r = run("engine.py", "--tests", "20", "--repeat", "1", "--scale", "200,400")
    for store in ("memory", "sqlite"):
        sizes = [row["stored_tests"] for row in r["scale"][store]]
        assert sizes == [200, 400]
        for row in r["scale"][store]:
            assert row["list_no_match_ms"] >= 0 and row["next_job_hit_ms"] >= 0


def test_store_commit_benchmark_decomposes_commits_and_reads() -> None:
    """store_commit.py reports the floor, the store's schema variants, the store, and reads."""
    require_pg()
    r = run("store_commit.py", "--tests", "20", "--events", "60", "--repeat", "1")
    names = {
        "sqlite_commit_floor",
        "sqlite_commit_schema_all_columns",
        "sqlite_commit_schema_no_indexes",
        "sqlite_commit_schema_changed_columns",
        "sqlite_commit_store",
        "sqlite_read_raw",
        "sqlite_read_store",
        "postgres_read_connection_execute",
        "postgres_read_cursor_reused",
        "postgres_read_store",
    }
    assert set(r["cpu_us"]) == names and all(v > 0 for v in r["cpu_us"].values())


def test_http_benchmark_serves_every_request() -> None:
    """http_stop.py sends the requests it was asked for and reports their percentiles."""
    r = run("http_stop.py", "--requests", "100")
    assert r["requests"] == 100 and r["clients"] == 32
    assert 0 < r["p50_ms"] <= r["p99_ms"]


def test_grpc_benchmark_runs_serve_and_the_floor_side_by_side() -> None:
    """grpc_stop.py measures serve's server, the bare one and the floor; one line per RPC."""
    stops, rounds = 40, 2
    r = run("grpc_stop.py", "--floor", "--bare", "--stops", str(stops), "--rounds", str(rounds))
    for result in (r, r["floor"], r["bare"]):
        assert result["c1"]["clients"] == 1 and result["c32"]["clients"] == 32
        assert 0 < result["c32"]["p50_ms"] <= result["c32"]["p99_ms"]
    assert r["rpc_log_lines"] == 2 * stops * rounds  # both levels, warm-ups included
    assert r["status_log_lines"] == 2 * stops * rounds  # each stop: RUNNING -> STOPPING
    assert r["serve_vs_bare"]["c32"]["stops_per_s"] > 0


def test_replicas_benchmark_runs_serve_over_each_store_beside_its_floor() -> None:
    """replicas.py reports each store's event rate, floors and Stop percentiles at both levels."""
    require_pg()
    r = run(
        "replicas.py",
        *("--replicas", "2", "--clients", "1", "--events", "20", "--stops", "4", "--rounds", "1"),
    )
    assert r["levels"] == ["r1_c1", "r2_c1"] and len(r["load_average_start"]) == 3
    for store in ("sqlite", "postgres"):
        assert r[store]["floor_one_writer_events_per_s"] > 0, store
        for level in ("r1_c1", "r2_c1"):
            events, stop = r[store][level], r[store][level]["stop"]
            assert events["durable_events"] == events["answers"] == 20, (store, level)
            assert events["events_per_s"] > 0 and events["ratio_to_floor"] > 0
            assert stop["durable_events"] == stop["answers"] == 4, (store, level)
            assert 0 < stop["p50_ms"] <= stop["p99_ms"]
            assert events["server_cpu_us_per_call"] > 0 and stop["cpus_busy"] > 0
    assert r["postgres"]["floor_2_writers_events_per_s"] > 0
    assert set(r["postgres_vs_sqlite"]) == {"r1_c1", "r2_c1"}


def test_simulation_benchmark_reports_every_comparison() -> None:
    """simulate.py keeps the hash across worker counts and reports engine-only, floor and sizes."""
    r = run(
        "simulate.py",
        *("--tests", "300", "--big", "0", "--curve", "100", "--engine-only", "200"),
        *("--floor", "200", "--shard-sizes", "100,300"),
    )
    assert r["same_hash_any_workers"] is True
    assert r["one_worker"]["violations"] == 0 and r["one_worker"]["stuck"] == 0
    assert set(r["events_per_s_by_shard_size"]) == {"100", "300"}
    assert set(r["unsharded_us_per_test"]) == {"100"}
    assert r["engine_only"]["engine_calls"] > r["engine_only"]["tests"]
    assert r["floor"]["events"] == 200 * 7


def test_kit_benchmark_reports_checking_rates() -> None:
    """kit.py reports calls checked per second for each client count, both verdicts side by side."""
    r = run(
        "kit.py",
        *("--clients", "2,3", "--calls", "5", "--tests", "2", "--repeat", "1"),
        *("--machine-examples", "2", "--replay-tests", "3"),
    )
    assert set(r["linearizable"]) == set(r["not_linearizable"]) == {"2", "3"}
    assert all(v["linearizable"] for v in r["linearizable"].values())
    assert not any(v["linearizable"] for v in r["not_linearizable"].values())
    assert r["linearizable"]["3"]["calls"] == 3 * 5 + 2 and r["linearizable"]["3"]["calls_per_s"]
    assert r["machine"]["steps"] > 0 and r["replay"]["ok"] is True


@pytest.mark.parametrize(
    "script",
    [
        "core.py",
        "engine.py",
        "grpc_stop.py",
        "http_stop.py",
        "kit.py",
        "replicas.py",
        "simulate.py",
        "store_commit.py",
    ],
)
def test_every_benchmark_has_a_json_flag(script: str) -> None:
    """Each benchmark documents --json in its help."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--json" in out.stdout


def test_http_benchmark_compares_servers_side_by_side() -> None:
    """http_stop.py --servers reports each server's medians and its ratios to the first."""
    r = run("http_stop.py", "--requests", "60", "--servers", "http,http-uvicorn")
    assert set(r["servers"]) == {"http", "http-uvicorn"}
    other = r["servers"]["http-uvicorn"]
    assert other["throughput_vs_first"] > 0 and other["p99_vs_first"] > 0


def test_hostile_benchmark_measures_each_attack_against_the_unloaded_probes() -> None:
    """hostile.py reports memory, open files and probe p99 ratios for every attack it ran."""
    only = "slowloris_headers,malformed_http,undecodable_protobuf_no_token"
    r = run("hostile.py", "--seconds", "1", "--scale", "0.02", "--only", only)
    assert set(r["attacks"]) == set(only.split(","))
    assert set(r["unloaded"]) == {"healthz", "http_stop", "grpc_stop"}
    for attack in r["attacks"].values():
        assert attack["open_files_peak"] > 0 and "rss_growth_peak_mib" in attack
        assert all(p["n"] > 0 for p in attack["probes"].values())
    assert r["traceback_on_stderr"] is False
