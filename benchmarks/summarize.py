"""Turn a pytest-benchmark JSON file into the Markdown tables of README.md:
one row per group, the median of each side, and fastfc's speedup over the
others (their median divided by fastfc's).

    python -m pytest benchmarks --benchmark-enable --benchmark-json=bench.json
    python benchmarks/summarize.py bench.json
"""
import json
import sys
from collections import defaultdict

SIDES = ("fastfc", "reference", "torch")


def side_of(bench):
    """The contender a test ran: a parameter naming one, else the test's name."""
    for value in (bench.get("params") or {}).values():
        if value in SIDES or str(value).startswith(
                ("blas", "copy", "naive", "numpy", "cs231n", "eecs598", "object", "course")):
            return value
    name = bench["name"]
    return next((s for s in SIDES if s in name), name)


def summarize(path):
    with open(path) as f:
        data = json.load(f)
    groups = defaultdict(dict)
    for bench in data["benchmarks"]:
        groups[bench["group"]][side_of(bench)] = bench["stats"]["median"]
    machine = data.get("machine_info", {})
    lines = [f"Machine: {machine.get('cpu', {}).get('brand_raw', '?')}, "
             f"{machine.get('cpu', {}).get('count', '?')} logical CPUs; "
             f"pytest-benchmark medians, {data.get('datetime', '')[:10]}", "",
             "| group | fastfc | reference | torch | other | vs reference | vs torch |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for group in sorted(groups):
        times = groups[group]
        ours = times.get("fastfc")
        others = {k: v for k, v in times.items() if k not in SIDES}

        def ms(value):
            return f"{value * 1e3:.3g} ms" if value else "-"

        def ratio(key):
            return f"{times[key] / ours:.2f}x" if ours and times.get(key) else "-"

        other = ", ".join(f"{k} {ms(v)}" for k, v in sorted(others.items()))
        lines.append(f"| {group} | {ms(ours)} | {ms(times.get('reference'))} | "
                     f"{ms(times.get('torch'))} | {other or '-'} | {ratio('reference')} | "
                     f"{ratio('torch')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(sys.argv[1] if len(sys.argv) > 1 else "bench.json"))
