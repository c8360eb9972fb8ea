"""`fastfc info`."""


def add_info_parser(subparsers):
    parser = subparsers.add_parser("info", help="version, threads, BLAS and SIMD of this build",
                                   description="Print fastfc.show_config().")
    parser.set_defaults(run=run_info)


def run_info(args):
    import fastfc

    fastfc.show_config()
    return 0
