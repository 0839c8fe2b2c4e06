"""The results file drawn as a PNG beside it: ``python -m bench.chart [RESULTS.json]``.

One row per scenario: its figures that have a floor as pairs of bars (system and floor
medians, min to max as error bars) on a log scale, since the figures of one scenario come in
different units and sizes; and, where the scenario recorded one, its series (time per tenancy
window by window) as lines.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS_FILE, load_results

COLOURS = {"system": "#1d70b8", "floor": "#505a5f"}


def chart_path(results: Path) -> Path:
    return results.with_suffix(".png")


def draw(results: Path, out: Path | None = None) -> Path:
    """Draw the results file's scenarios into a PNG (by default beside it); returns its path."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the chart is only ever written to a file
    import matplotlib.pyplot as plt

    scenarios = list(load_results(results)["scenarios"].values())
    out = out or chart_path(results)
    rows = max(1, len(scenarios))
    fig, axes = plt.subplots(rows, 2, figsize=(16, 4.2 * rows), squeeze=False)
    for row, scenario in zip(axes, scenarios, strict=False):
        _bars(row[0], scenario)
        _series(row[1], scenario)
    if not scenarios:
        for ax in axes[0]:
            ax.set_axis_off()
    fig.suptitle(f"Tenancy benchmarks: system vs raw floor ({results.name})", fontsize=14)
    # Leave the top strip to the suptitle, which tight_layout would otherwise overlap.
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (4.2 * rows)))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _compared(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        f
        for f in scenario.get("figures", {}).values()
        if f.get("floor") is not None and f["system"]["median"] > 0 and f["floor"]["median"] > 0
    ]


def _bars(ax: Any, scenario: dict[str, Any]) -> None:
    figures = _compared(scenario)
    repeats = scenario.get("parameters", {}).get("repeat", 1)
    ax.set_title(f"{scenario['name']}: medians of {repeats} repeat(s), min to max", fontsize=11)
    if not figures:
        ax.text(0.5, 0.5, "no figures with a floor", ha="center", transform=ax.transAxes)
        return
    height = 0.38
    for offset, side in ((-height / 2, "system"), (height / 2, "floor")):
        medians = [f[side]["median"] for f in figures]
        errors = [
            [m - f[side]["min"] for m, f in zip(medians, figures, strict=True)],
            [f[side]["max"] - m for m, f in zip(medians, figures, strict=True)],
        ]
        ax.barh(
            [i + offset for i in range(len(figures))],
            medians,
            height,
            xerr=errors,
            color=COLOURS[side],
            label=side,
            capsize=3,
        )
    ax.set_yticks(range(len(figures)))
    ax.set_yticklabels([_label(f) for f in figures], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("value in the figure's unit (log scale)")
    ax.legend(loc="lower right", fontsize=8)


def _label(item: dict[str, Any]) -> str:
    label = str(item["label"])
    short = label if len(label) <= 48 else label[:45] + "…"
    ratio = item.get("ratio")
    suffix = f", ratio {ratio['median']:.2f}" if ratio else ""
    return f"{short} ({item['unit']}{suffix})"


def _series(ax: Any, scenario: dict[str, Any]) -> None:
    series = scenario.get("series") or {}
    if not series.get("system"):
        ax.set_axis_off()
        return
    window = int(series["window"])
    for side in ("system", "floor"):
        values = series.get(side) or []
        ax.plot(
            [window * (i + 1) for i in range(len(values))],
            values,
            marker="o",
            color=COLOURS[side],
            label=side,
        )
    ax.set_title(f"{scenario['name']}: {series['unit']}, window by window of {window}")
    ax.set_xlabel(series.get("x_label", "tenancies provisioned"))
    ax.set_ylabel(series["unit"])
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def main(argv: list[str]) -> int:
    results = Path(argv[0]) if argv else RESULTS_FILE
    print(draw(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
