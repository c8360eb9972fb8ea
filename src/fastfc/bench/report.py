"""The benchmark table, the machine description and the speedup chart."""
import platform

import numpy as np

from .. import _config


COLUMNS = (("case", 26), ("shape", 26), ("fastfc ms", 10), ("ref ms", 10), ("torch ms", 10),
           ("vs ref", 7), ("vs torch", 8), ("efficiency", 11))


def _cell(value, width, left=False):
    return f"{value:<{width}}" if left else f"{value:>{width}}"


def format_row(record):
    """One table line for a result record."""
    name, shape = record["case"], record["shape"]
    if "error" in record:
        return f"{_cell(name, 26, True)} {_cell(shape, 26, True)} error: {record['error']}"
    times = record["median_ms"]

    def ms(side):
        return f"{times[side]:.4g}" if side in times else "-"

    def ratio(side):
        value = record.get(f"vs_{side}")
        return f"{value:.2f}x" if value else "-"
    efficiency = record.get("efficiency")
    eff = f"{'GEMM' if efficiency['kind'] == 'gemm' else 'copy'} {efficiency['fraction']:.0%}" if efficiency else "-"
    cells = [_cell(name, 26, True), _cell(shape, 26, True), _cell(ms("fastfc"), 10), _cell(ms("reference"), 10),
             _cell(ms("torch"), 10), _cell(ratio("reference"), 7), _cell(ratio("torch"), 8), _cell(eff, 11)]
    line = " ".join(cells)
    return line if record["check"] == "ok" else f"{line}  MISMATCH: {record['check']}"


def header():
    cells = [_cell(title, width, i < 2) for i, (title, width) in enumerate(COLUMNS)]
    return " ".join(cells) + "\n" + " ".join("-" * width for _, width in COLUMNS)


def machine_description():
    """CPU model and core count, for the report."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {_config._default_num_threads()} usable cores"


def plot_speedups(path, records):
    """Bar chart of fastfc's speedup over the reference and over torch, per
    case; a side with no timings (torch left out or not installed) has no
    bars and no legend entry. Returns the matplotlib Figure.
    Raises plotting.MissingMatplotlibError without matplotlib."""
    from ..plotting import PLOT_INSTALL_HINT, MissingMatplotlibError

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingMatplotlibError(f"--plot needs matplotlib: {PLOT_INSTALL_HINT}") from exc
    timed = [r for r in records if "median_ms" in r]
    labels = [f"{r['case']} {r['shape']}" for r in timed]
    figure = Figure(figsize=(9, 0.32 * len(timed) + 1.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    rows = np.arange(len(timed))
    sides = [(side, color) for side, color in (("reference", "tab:blue"), ("torch", "tab:orange"))
             if any(r.get(f"vs_{side}") for r in timed)]
    height = 0.8 / max(1, len(sides))
    for i, (side, color) in enumerate(sides):
        values = [r.get(f"vs_{side}") or 0.0 for r in timed]
        offset = (i - (len(sides) - 1) / 2) * height
        axes.barh(rows + offset, values, height=height, color=color, label=f"vs {side}")
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_yticks(rows, labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("speedup of fastfc (other side's median time / fastfc's; > 1 is faster)")
    if sides:
        axes.legend(loc="lower right")
    axes.grid(axis="x", alpha=0.3)
    figure.savefig(path)
    return figure
