"""Turn the raw samples of a benchmark session into a markdown table, a PNG chart and JSON.

Input shape (what ``bench/run.py`` collects): ``samples[server][figure] = [value per run]``,
where a figure is named ``<workload>/<quantity>``, e.g. ``resp get -P16/rps`` or
``idle/rss_per_conn@19000``. Every figure is reported as its median with the min-max range
over the runs; ratios divide a server's median by the asyncio-Protocol and uvloop medians of
the same session (> 1 means "more": more req/s, or more CPU per request).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Samples = dict[str, dict[str, list[float]]]

#: The two baselines every ratio is computed against.
BASELINES = ("asyncio-protocol", "uvloop-protocol")
VERSUS = ["vs asyncio", "vs uvloop"]


def summary(values: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the runs of one figure."""
    return statistics.median(values), min(values), max(values)


def _num(value: float) -> str:
    """A compact human number: 1234567 -> 1.23M, 52341 -> 52.3k, 12.345 -> 12.3."""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.2f}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.1f}k"
    if magnitude >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if magnitude < 10 else f"{value:.1f}"


def _cell(values: list[float] | None, scale: float = 1.0) -> str:
    """``median (min-max)``, or ``median`` alone for a single run, or n/a."""
    if not values:
        return "n/a"
    med, low, high = (v * scale for v in summary(values))
    if len(values) == 1:
        return _num(med)
    return f"{_num(med)} ({_num(low)}-{_num(high)})"


def _ratio(samples: Samples, server: str, figure: str, baseline: str) -> str:
    """``1.23x``: this server's median over the baseline's median for one figure."""
    mine, theirs = samples.get(server, {}).get(figure), samples.get(baseline, {}).get(figure)
    if not mine or not theirs or statistics.median(theirs) == 0:
        return "n/a"
    return f"{statistics.median(mine) / statistics.median(theirs):.2f}x"


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown(samples: Samples, servers: list[str], meta: dict, notes: list[str]) -> str:
    """The whole report as markdown: throughput, idle crowd and churn tables plus notes."""
    base_a, base_u = BASELINES
    out = [
        f"# muxserver benchmark ({meta['mode']}, {meta['runs']} run(s) per figure)",
        "",
        f"{meta['date']} · {meta['cpu']} · Python {meta['python']} · Linux {meta['kernel']}",
        "",
        "Servers pinned to CPU 0, load generators to CPU 1. Each cell: median (min-max) over "
        "the runs. vs asyncio / vs uvloop: this server's median divided by that baseline's median "
        "in the same session. CPU = the server's user+system CPU time per request served.",
        "",
        "## Request/response throughput (50 connections)",
        "",
    ]
    workloads = sorted(
        {f.split("/")[0] for per in samples.values() for f in per if f.endswith("/rps")},
        key=_workload_order,
    )
    rows = []
    for workload in workloads:
        for server in servers:
            rps, cpu = f"{workload}/rps", f"{workload}/cpu_us"
            if rps not in samples.get(server, {}):
                continue
            rows.append(
                [
                    workload,
                    server,
                    _cell(samples[server][rps]),
                    _ratio(samples, server, rps, base_a),
                    _ratio(samples, server, rps, base_u),
                    _cell(samples[server].get(cpu)),
                    _ratio(samples, server, cpu, base_a),
                    _ratio(samples, server, cpu, base_u),
                ]
            )
    out += _table(
        ["workload", "server", "req/s", *VERSUS, "CPU µs/req", *VERSUS],
        rows,
    )
    stages = sorted(
        {
            int(f.split("@")[1])
            for per in samples.values()
            for f in per
            if f.startswith("idle/rss_per_conn@")
        }
    )
    if stages:
        out += [
            "",
            "## Idle connections (RSS growth per connection; PING latency of one more client)",
            "",
        ]
        header = ["server"]
        header += [f"RSS B/conn @{n}" for n in stages]
        header += [*VERSUS, "p50/p99 µs, no crowd"]
        header += [f"p50/p99 µs @{n}" for n in stages]
        last = f"idle/rss_per_conn@{stages[-1]}"
        rows = []
        for server in servers:
            per = samples.get(server, {})
            if "idle/p50_us@0" not in per:
                continue
            row = [server]
            row += [_cell(per.get(f"idle/rss_per_conn@{n}")) for n in stages]
            row += [_ratio(samples, server, last, base_a), _ratio(samples, server, last, base_u)]
            for n in (0, *stages):
                row.append(
                    f"{_cell(per.get(f'idle/p50_us@{n}'))} / {_cell(per.get(f'idle/p99_us@{n}'))}"
                )
            rows.append(row)
        out += _table(header, rows)
    churn_rows = []
    for server in servers:
        per = samples.get(server, {})
        if "churn/cps" not in per:
            continue
        churn_rows.append(
            [
                server,
                _cell(per["churn/cps"]),
                _ratio(samples, server, "churn/cps", base_a),
                _ratio(samples, server, "churn/cps", base_u),
                _cell(per.get("churn/cpu_us")),
                _ratio(samples, server, "churn/cpu_us", base_a),
                _ratio(samples, server, "churn/cpu_us", base_u),
            ]
        )
    if churn_rows:
        out += ["", "## Connection churn (connect, one PING, close)", ""]
        out += _table(
            ["server", "conn/s", *VERSUS, "CPU µs/conn", *VERSUS],
            churn_rows,
        )
    if notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(out) + "\n"


def _workload_order(workload: str) -> tuple[int, int, int, str]:
    """RESP before HTTP, then by pipeline depth, then PING, SET, GET (redis-benchmark order)."""
    words = workload.split()
    depth = int(words[-1][2:]) if words[-1].startswith("-P") else 0
    command = ("ping", "set", "get").index(words[1]) if words[1] in ("ping", "set", "get") else 3
    return (1 if words[0] == "http" else 0, depth, command, workload)


def write_json(path: Path, samples: Samples, meta: dict, notes: list[str]) -> None:
    """Write every raw sample, the session's metadata and its notes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "notes": notes, "samples": samples}, indent=1))


def chart(path: Path, samples: Samples, servers: list[str], meta: dict) -> None:
    """Four panels: req/s and CPU µs/req per workload, idle RSS/conn, churn conn/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = sorted(
        {f.split("/")[0] for per in samples.values() for f in per if f.endswith("/rps")},
        key=_workload_order,
    )
    idle_figures = sorted(
        (f for per in samples.values() for f in per if f.startswith("idle/rss_per_conn@")),
        key=lambda f: int(f.split("@")[1]),
    )
    panels = [
        ("requests per second (higher is better)", [f"{w}/rps" for w in workloads], workloads),
        ("server CPU µs per request (lower is better)", [f"{w}/cpu_us" for w in workloads],
         workloads),
        ("idle: RSS bytes per connection (lower is better)", idle_figures[-1:],
         [f.split("/")[1] for f in idle_figures[-1:]]),
        ("churn: connections per second (higher is better)", ["churn/cps"], ["churn"]),
    ]  # fmt: skip
    fig, axes = plt.subplots(2, 2, figsize=(16, 10))
    for ax, (title, figures, labels) in zip(axes.flat, panels, strict=True):
        _bars(ax, samples, servers, figures, labels)
        ax.set_title(title)
    from matplotlib.patches import Patch

    handles = [Patch(color=_color(servers, name), label=name) for name in servers]
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.965),
        ncol=min(len(servers), 5) or 1,
    )
    fig.suptitle(f"muxserver benchmark, {meta['mode']}, {meta['date']}", y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _color(servers: list[str], server: str) -> str:
    """The server's colour, the same in every panel."""
    return f"C{servers.index(server) % 10}"


def _bars(
    ax: Axes, samples: Samples, servers: list[str], figures: list[str], labels: list[str]
) -> None:
    """Grouped bars: one group per figure, one bar per server, min-max as error bars."""
    present = [s for s in servers if any(f in samples.get(s, {}) for f in figures)]
    if not figures or not present:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    width = 0.8 / len(present)
    for i, server in enumerate(present):
        xs, meds, lows, highs = [], [], [], []
        for x, figure in enumerate(figures):
            values = samples.get(server, {}).get(figure)
            if not values:
                continue
            med, low, high = summary(values)
            xs.append(x + (i - (len(present) - 1) / 2) * width)
            meds.append(med)
            lows.append(med - low)
            highs.append(high - med)
        ax.bar(xs, meds, width, yerr=[lows, highs], capsize=2, color=_color(servers, server))
    if len(figures) == 1:  # one group: name each bar instead
        ticks = [(i - (len(present) - 1) / 2) * width for i in range(len(present))]
        ax.set_xticks(ticks, present, rotation=20, ha="right")
        ax.set_xlabel(labels[0])
    else:
        ax.set_xticks(range(len(figures)), labels, rotation=20, ha="right")
    ax.grid(axis="y", alpha=0.3)
