"""`fastfc bench` (the cases and their timing live in fastfc.bench)."""
import json
import sys

from .. import bench
from ..bench import plot_speedups, run, select_cases
from .options import DTYPES, positive_int


def add_arguments(parser):
    parser.add_argument("--case", action="append", metavar="TEXT",
                        help="run only the cases whose name or shape contains TEXT (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="threads for every side (default: OMP_NUM_THREADS or all cores)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="float type (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer, shorter rounds and a 6000-sample epoch: rougher numbers (2.4 minutes "
                             "measured with PyTorch on 2 busy cores)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when installed")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="bar chart of the speedups as PNG (needs matplotlib)")


def add_bench_parser(subparsers):
    """Register `fastfc bench` (called by fastfc.cli.build_parser)."""
    parser = subparsers.add_parser(
        "bench", help="time fastfc against the NumPy reference and PyTorch",
        description=bench.__doc__.split("\n\n")[0] + " Runs each kernel and training step with every side "
                    "on the same data and threads; prints medians and speedups.")
    add_arguments(parser)
    parser.set_defaults(run=run_bench)


def run_bench(args):
    """The `fastfc bench` command; returns the exit status (1 when a side's
    results disagree with the reference's or a case fails)."""
    from ..plotting import MissingMatplotlibError

    cases = select_cases(args.case)
    if args.list:
        for case in cases:
            print(f"{case.name} {case.shape}")
        return 0
    report = run(cases, threads=args.threads, dtype=args.dtype, quick=args.quick, use_torch=not args.no_torch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"results written to {args.json}")
    if args.plot:
        try:
            plot_speedups(args.plot, report["results"])
            print(f"speedup chart written to {args.plot}")
        except MissingMatplotlibError as exc:
            print(f"fastfc: {exc}; no chart written", file=sys.stderr)
    failed = [r for r in report["results"] if "error" in r or r.get("check", "ok") != "ok"]
    if failed:
        print(f"fastfc: {len(failed)} case(s) failed or disagree with the reference: "
              + ", ".join(f"{r['case']} {r['shape']}" for r in failed), file=sys.stderr)
    return 1 if failed else 0
