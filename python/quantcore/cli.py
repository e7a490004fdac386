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


def _cmd_demo(args: argparse.Namespace) -> int:
    from quantcore.models.demo import run_demo

    run_demo(args.model, n_windows=args.windows, report_path=args.report, progress=not args.quiet)
    return 0


def _load_any(path: str | None):
    """A float GGUF model, or a quantized model saved by `quantcore quantize` (.gguf or .safetensors)."""
    from quantcore.models import load_model

    if path is not None and path.endswith(".safetensors"):
        from quantcore.models.export import load_quantized

        return load_quantized(path)
    return load_model(path)


def _cmd_quantize(args: argparse.Namespace) -> int:
    from quantcore.models import load_model
    from quantcore.models.quantized import quantize_model

    if not (args.output.endswith(".gguf") or args.output.endswith(".safetensors")):
        raise ValueError(f"quantize: -o must name a .gguf or .safetensors file (got {args.output!r})")
    model = load_model(args.model)
    qmodel = quantize_model(model, args.method, args.scheme, group_size=args.group_size, symmetric=args.symmetric,
                            embedding_scheme=None if args.embedding_scheme == "float" else args.embedding_scheme,
                            progress=not args.quiet)
    from quantcore.models import export

    if args.output.endswith(".gguf"):
        export.export_gguf(qmodel, args.output)
    else:
        export.save_quantized(qmodel, args.output)
    print(f"wrote {args.output}: {qmodel.weight_nbytes() / 1e6:.1f} MB of weights "
          f"({model.weight_nbytes() / 1e6:.1f} MB in float32)")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from quantcore.models import evaluate

    model = _load_any(args.model)
    if args.activations == "int8":
        from quantcore.models.quantized import set_activations

        set_activations(model, "int8")
    result = evaluate.perplexity(model, n_windows=args.windows, progress=not args.quiet)
    print(f"perplexity {result.perplexity:.4f} over {result.n_windows} windows x {evaluate.WINDOW - 1} scored tokens")
    s = evaluate.speed(model, decode_tokens=args.decode_tokens)
    print(f"prefill {s.prefill_tokens_per_s:.1f} tokens/s, decode {s.decode_tokens_per_s:.1f} tokens/s")
    print(f"weight memory {model.weight_nbytes() / 1e6:.1f} MB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quantcore", description="Quantization toolkit for LLM weights.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("formats", help="show how values are stored in fp32/fp16/bf16/fp8 (and int8/int4)")
    p.add_argument("values", nargs="+", type=float, help="numbers to describe, e.g. 0.1 3.14159 42.5")
    p.add_argument("--scale", type=float, default=None, help="step of a symmetric int8/int4 grid to add those rows")
    p.set_defaults(func=_cmd_formats)

    from quantcore.quantize import SCHEMES

    p = sub.add_parser("demo", help="quantize the default model several ways, compare, write an HTML report")
    p.add_argument("model", nargs="?", default=None, help="llama GGUF (default: SmolLM2-135M-Instruct from PyPI)")
    p.add_argument("--windows", type=int, default=8, help="evaluation windows of 512 tokens (default 8)")
    p.add_argument("--report", default="quantcore-report.html", help="HTML report path")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("quantize", help="quantize a llama GGUF and write .gguf or .safetensors")
    p.add_argument("model", nargs="?", default=None, help="llama GGUF (default: SmolLM2-135M-Instruct)")
    p.add_argument("--method", default="rtn", choices=("rtn", "gptq", "awq", "fp8"), help="default rtn")
    p.add_argument("--scheme", default="int4", choices=SCHEMES, help="weight scheme (default int4)")
    p.add_argument("--group-size", type=int, default=None, help="group size (default: 128; 32 for q4_0/q4_1/q8_0)")
    p.add_argument("--symmetric", action="store_true", help="symmetric integer grid")
    p.add_argument("--embedding-scheme", default="q8_0", help="scheme of the embedding/output matrix, or float")
    p.add_argument("-o", "--output", required=True, help="output file, .gguf or .safetensors")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser("eval", help="perplexity, tokens/s and memory of a model file")
    p.add_argument("model", nargs="?", default=None, help=".gguf or quantcore .safetensors (default: SmolLM2)")
    p.add_argument("--windows", type=int, default=8, help="evaluation windows of 512 tokens (default 8)")
    p.add_argument("--decode-tokens", type=int, default=16, help="timed one-token decode steps")
    p.add_argument("--activations", default="float", choices=("float", "int8"),
                   help="int8: a quantized model's linears on int8 activations (default float)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_eval)
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
