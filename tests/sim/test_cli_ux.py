"""``loadtest-core simulate`` respects the user's time: checks first, results first, clear pace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtest_core.cli import main
from loadtest_core.sim._cli import Progress, title
from loadtest_core.sim._plot import COLOURS, figure
from loadtest_core.sim._scenario import Scenario


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "-2"], "--workers must be at least 1"),
        (["--plot", "/nonexistent-dir/p.png"], "no directory /nonexistent-dir"),
        (["--trace", "/nonexistent-dir/t.jsonl"], "no directory /nonexistent-dir"),
        (["--plot", "p.txt"], "unknown image type"),
        (["--trace", "."], "is a directory"),
        (["--tests", "0"], "tests"),
        (["--agents", "0"], "agents"),
        (["--workers", "2", "--trace", "t.jsonl"], "--trace needs --workers 1"),
    ],
)
def test_bad_options_are_refused_before_the_run(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad option exits 2 with one error line, having simulated nothing."""
    started = time.monotonic()
    assert main(["simulate", "--tests", "100000", *argv]) == 2
    assert time.monotonic() - started < 5  # a 100,000-test run would take far longer
    captured = capsys.readouterr()
    assert captured.out == ""
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0]


# Ctrl-C as a terminal sends it: a process started in the background of a shell script
# (nohup, `&`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
_AS_IN_A_TERMINAL = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from loadtest_core.cli import main; sys.argv[0] = 'loadtest-core'; raise SystemExit(main())"
)


def test_a_read_only_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plot into a directory the user may not write exits 2 before the run."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as root, everything is writable
    assert main(["simulate", "--plot", str(tmp_path / "p.png")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_results_are_printed_before_the_plot_can_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """If drawing fails after the run, the results are on stdout and the error is one line."""
    import loadtest_core.sim._plot as plot_module

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(plot_module, "plot", broken)
    code = main(
        ["simulate", "--tests", "20", "--agents", "4", "--json", "--plot", str(tmp_path / "p.png")]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["tests"] == 20
    assert captured.err.strip() == (
        f"loadtest-core simulate: error: --plot {tmp_path / 'p.png'}: disk full"
    )


def test_agents_scale_with_tests_unless_chosen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --agents, 2,000 tests get 200 agents (said on stderr); a flag or file decides."""
    from loadtest_core.cli import build_parser
    from loadtest_core.sim._cli import _default_agents, build_scenario

    parser = build_parser()
    scaled = _default_agents(
        a := parser.parse_args(["simulate", "--tests", "2000"]), build_scenario(a)
    )
    assert scaled.agents == 200
    assert "200 agents (one per 10 tests)" in capsys.readouterr().err
    chosen = parser.parse_args(["simulate", "--tests", "2000", "--agents", "7"])
    assert _default_agents(chosen, build_scenario(chosen)).agents == 7
    path = tmp_path / "s.toml"
    path.write_text("tests = 2000\nagents = 5\n")
    from_file = parser.parse_args(["simulate", "--scenario", str(path)])
    assert _default_agents(from_file, build_scenario(from_file)).agents == 5
    small = parser.parse_args(["simulate", "--tests", "50"])
    assert _default_agents(small, build_scenario(small)).agents == 10
    assert capsys.readouterr().err == ""


def test_progress_is_whole_run_elapsed_and_eta() -> None:
    """The line counts ended tests over the run, with wall-clock elapsed time and an ETA."""
    now = [100.0]
    progress = Progress(clock=lambda: now[0])
    assert progress.line(0, 1000).endswith("0/1,000 tests ended (0.0%), 0:00 elapsed, ETA --:--")
    now[0] = 130.0
    line = progress.line(250, 1000)
    assert "250/1,000 tests ended (25.0%), 0:30 elapsed, ETA 1:30" in line
    assert line.startswith("[" + "#" * 7 + "." * 23 + "]")
    now[0] = 100.0 + 3600.0
    assert "1:00:00 elapsed" in progress.line(100, 1000)  # never backwards: 250 stays
    assert "250/1,000" in progress.line(100, 1000)


def test_ctrl_c_prints_what_ran(tmp_path: Path) -> None:
    """SIGINT during a long run exits 130 quickly with the results so far and no traceback."""
    for workers in ("1", "2"):
        proc = subprocess.Popen(
            [
                *(sys.executable, "-c", _AS_IN_A_TERMINAL, "simulate"),
                *("--tests", "300000", "--workers", workers, "--json"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        assert "agents (one per 10 tests)" in proc.stderr.readline()  # the run is starting
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        summary = json.loads(out)
        assert summary["interrupted"] is True and summary["tests"] < 300000
        if workers == "1":  # the interrupted shard is reported as far as it got
            assert summary["tests"] > 0 and summary["events"] > 0
        assert "interrupted after" in err and "Traceback" not in err


def test_a_closed_pipe_ends_quietly() -> None:
    """`simulate | head -n 0` ends without a traceback."""
    cmd = f"{sys.executable} -m loadtest_core.cli simulate --tests 30 --agents 3 | head -n 0"
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert out.stderr == ""


def test_the_plot_is_readable() -> None:
    """Lifecycle order, one distinct colour a series, the legend outside, the scenario on top."""
    timeline = [
        (0.0, {"CREATED": 1000}),
        (10.0, {"RUNNING": 990, "LOST": 2, "DONE": 8, "CREATED": 0}),
        (20.0, {"DONE": 995, "LOST": 1, "FAILED": 4}),
    ]
    sc = Scenario(tests=1000, agents=100, seed=7).with_overrides(faults={"partition": 0.01})
    fig = figure(timeline, title(sc))
    try:
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["CREATED", "RUNNING", "LOST", "DONE", "FAILED"]
        colours = [line.get_color() for line in ax.get_lines()]
        assert len(set(colours)) == len(colours)
        assert len(set(COLOURS.values())) == len(COLOURS) == 15
        fig.canvas.draw()
        legend = ax.get_legend().get_window_extent()
        assert legend.x0 >= ax.get_window_extent().x1  # outside, right of the plot
        assert ax.get_yscale() == "symlog"  # 1 LOST test is visible beside 990 RUNNING
        assert (
            ax.get_title()
            == "1,000 tests · 100 agents · seed 7 · lost_after 30 s · partition 1% · user stops 10%"
        )
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
