"""Status counts over simulated time, drawn with matplotlib's Agg backend."""

from __future__ import annotations


def plot(timeline: list[tuple[float, dict[str, int]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    statuses = sorted({s for _, counts in timeline for s in counts})
    times = [t for t, _ in timeline]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    ax.set_prop_cycle(color=[plt.get_cmap("tab20")(i) for i in range(20)])
    for status in statuses:
        ax.plot(times, [counts.get(status, 0) for _, counts in timeline], label=status)
    ax.set_xlabel("simulated seconds")
    ax.set_ylabel("tests")
    ax.set_title("test statuses over simulated time")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
