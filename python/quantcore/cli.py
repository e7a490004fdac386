"""The `quantcore` command line."""

from __future__ import annotations

import argparse
import sys

from quantcore import formats


def _cmd_formats(args: argparse.Namespace) -> int:
    for i, value in enumerate(args.values):
        if i:
            print()
        print(formats.format_table(value, formats.describe(value, scale=args.scale)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quantcore", description="Quantization toolkit for LLM weights.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("formats", help="show how values are stored in fp32/fp16/bf16/fp8 (and int8/int4)")
    p.add_argument("values", nargs="+", type=float, help="numbers to describe, e.g. 0.1 3.14159 42.5")
    p.add_argument("--scale", type=float, default=None, help="step of a symmetric int8/int4 grid to add those rows")
    p.set_defaults(func=_cmd_formats)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"quantcore: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
