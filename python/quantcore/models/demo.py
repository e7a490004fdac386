"""The main job: quantize a model several ways, measure what each way costs, write a report.

run_demo() loads the default model (SmolLM2-135M) and its evaluation text, evaluates the float
model, then for each configuration (method, scheme, group size) quantizes the model, and
measures bits per weight, weight memory, perplexity and its change, KL divergence of the token
distributions from the float model, top-1 agreement, and decode tokens/s. It prints one table
and writes an HTML report with plots (matplotlib).

Every model is run once per evaluation window: the float model's log-probabilities are kept
(float32, about 100 MB per window) so that perplexity, KL and top-1 agreement of a quantized
model come from a single forward pass.
"""

from __future__ import annotations

import base64
import html
import io
import os
import time
from dataclasses import dataclass, field

import numpy as np

from quantcore._io import replace_atomically
from quantcore.models import evaluate
from quantcore.models.llama import LINEAR_NAMES, LlamaModel, load_model
from quantcore.models.quantized import QuantizedLinear, quantize_model


@dataclass(frozen=True)
class Config:
    """One way to quantize a model."""

    method: str
    scheme: str
    group_size: int | None

    @property
    def label(self) -> str:
        g = "" if self.group_size in (None, -1, 0) else f" g{self.group_size}"
        return f"{self.method} {self.scheme}{g}"


DEFAULT_CONFIGS = (
    Config("rtn", "int4", 64),
    Config("gptq", "int4", 64),
    Config("awq", "int4", 64),
    Config("rtn", "int3", 64),
    Config("gptq", "int3", 64),
    Config("awq", "int3", 64),
    Config("fp8", "fp8_e4m3fn", -1),
    Config("rtn", "int8", -1),
)


@dataclass
class Row:
    """One line of the demo table (the float model has method "float")."""

    label: str
    method: str
    scheme: str
    bits_per_weight: float
    weight_bytes: int
    perplexity: float
    delta: float
    kl: float
    top1: float
    decode_tokens_per_s: float
    quantize_seconds: float = 0.0
    layer_errors: dict = field(default_factory=dict, repr=False)


class FloatReference:
    """The float model's per-window log-probabilities and NLL, computed once.

    Args:
        model: the float LlamaModel.
        windows: int [n_windows, window] token ids (evaluate.evaluation_windows).
    """

    def __init__(self, model: LlamaModel, windows: np.ndarray, *, progress: bool = True):
        self.windows = np.asarray(windows)
        self.logprobs = []
        nll = []
        for w in evaluate._progress(self.windows, "float model", progress):
            lp = _log_softmax32(model.forward(w))
            self.logprobs.append(lp)
            nll.append(-lp[np.arange(w.size - 1), w[1:]].astype(np.float64))
        self.nll = np.stack(nll)

    @property
    def perplexity(self) -> float:
        return float(np.exp(self.nll.mean()))

    def compare(self, model, *, progress: bool = True) -> tuple[float, float, float]:
        """(perplexity, mean KL(float || model) in nats, top-1 agreement) of `model`, one pass."""
        nll, kl, agree, count = [], 0.0, 0, 0
        for w, lp in zip(evaluate._progress(self.windows, "evaluate", progress), self.logprobs):
            lq = _log_softmax32(model.forward(w))
            nll.append(-lq[np.arange(w.size - 1), w[1:]].astype(np.float64))
            agree += int(np.sum(np.argmax(lp, axis=-1) == np.argmax(lq, axis=-1)))
            # p * (lp - lq) in float32 (lp - lq is small: an absolute error near 1e-6 per term),
            # summed in float64
            np.subtract(lp, lq, out=lq)
            lq *= np.exp(lp)
            kl += float(np.sum(lq, dtype=np.float64))
            count += w.size
        return float(np.exp(np.mean(nll))), kl / count, agree / count


def _log_softmax32(logits: np.ndarray) -> np.ndarray:
    """float32 log-softmax of float32 logits: x - max - log(sum(exp(x - max))), the sum of each
    row in float64 (so only the float32 rounding of each entry remains)."""
    x = np.subtract(logits, logits.max(axis=-1, keepdims=True), dtype=np.float32)
    e = np.exp(x)
    x -= np.log(np.sum(e, axis=-1, keepdims=True, dtype=np.float64)).astype(np.float32)
    return x


def layer_output_errors(float_model: LlamaModel, model: LlamaModel, tokens: np.ndarray) -> dict:
    """Relative output error ||x W^T - x Q^T||^2 / ||x W^T||^2 of every block linear, with the
    float model's own inputs x to that linear (captured on `tokens`)."""
    inputs = {}
    float_model.forward(np.asarray(tokens), capture=lambda name, x: inputs.__setitem__(name, x))
    errors = {}
    for block_f, block_q in zip(float_model.blocks, model.blocks):
        for name in LINEAR_NAMES:
            x = inputs[f"blk.{block_f.index}.{name}"].astype(np.float64)
            ref = x @ block_f.linears[name].weight.astype(np.float64).T
            out = x @ np.asarray(block_q.linears[name].weight, np.float64).T
            errors[f"blk.{block_f.index}.{name}"] = float(np.sum((out - ref) ** 2) / max(np.sum(ref**2), 1e-30))
    return errors


def _bits_per_weight(model: LlamaModel) -> float:
    """Bits per weight over the block linears (what the method quantized)."""
    bits = n = 0
    for block in model.blocks:
        for lin in block.linears.values():
            bits += 8 * lin.nbytes
            n += lin.in_features * lin.out_features
    return bits / n


def run_demo(model_path: str | os.PathLike | None = None, *, configs=DEFAULT_CONFIGS, n_windows: int = 8,
             report_path: str | os.PathLike | None = "quantcore-report.html", decode_tokens: int = 16,
             progress: bool = True, print_fn=print) -> list[Row]:
    """Quantize the model each way in `configs`, evaluate, print a table, write the report.

    Args:
        model_path: a llama GGUF (default: SmolLM2-135M-Instruct from quantcore.assets).
        configs: Config entries (default DEFAULT_CONFIGS).
        n_windows: evaluation windows of 512 tokens (evaluate's protocol).
        report_path: where to write the HTML report (None: no report).
        decode_tokens: timed one-token decode steps per model.
        progress: tqdm progress bars.
        print_fn: where the table goes (print by default).

    Returns:
        The table rows, the float model first.
    """
    start = time.perf_counter()
    float_model = load_model(model_path)
    windows = evaluate.evaluation_windows(float_model.tokenizer, n_windows)
    reference = FloatReference(float_model, windows, progress=progress)
    speed = evaluate.speed(float_model, decode_tokens=decode_tokens, repeats=2)
    block_bytes = sum(lin.nbytes for b in float_model.blocks for lin in b.linears.values())
    rows = [Row("float32", "float", "float32", 32.0, float_model.weight_nbytes(), reference.perplexity, 0.0, 0.0, 1.0,
                speed.decode_tokens_per_s)]
    error_tokens = windows[0][:128]
    models = {}
    for config in configs:
        t0 = time.perf_counter()
        qmodel = quantize_model(float_model, config.method, config.scheme, group_size=config.group_size,
                                progress=progress)
        t_quant = time.perf_counter() - t0
        ppl, kl, top1 = reference.compare(qmodel, progress=progress)
        s = evaluate.speed(qmodel, decode_tokens=decode_tokens, repeats=2)
        rows.append(Row(config.label, config.method, config.scheme, _bits_per_weight(qmodel), qmodel.weight_nbytes(),
                        ppl, ppl - reference.perplexity, kl, top1, s.decode_tokens_per_s, t_quant,
                        layer_output_errors(float_model, qmodel, error_tokens)))
        models[config.label] = qmodel
    print_fn(format_table(rows, n_windows=n_windows, block_bytes=block_bytes))
    if report_path is not None:
        write_report(report_path, rows, float_model, models, n_windows=n_windows)
        print_fn(f"report: {os.fspath(report_path)}")
    print_fn(f"demo took {time.perf_counter() - start:.0f} s")
    return rows


def format_table(rows: list[Row], *, n_windows: int, block_bytes: int | None = None) -> str:
    header = (f"{'method / scheme':<24}{'bits/w':>8}{'size MB':>9}{'ppl':>9}{'delta':>8}{'KL':>9}"
              f"{'top-1':>8}{'decode tok/s':>14}{'quantize s':>12}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.label:<24}{r.bits_per_weight:>8.3f}{r.weight_bytes / 1e6:>9.1f}{r.perplexity:>9.3f}"
                     f"{r.delta:>+8.3f}{r.kl:>9.4f}{r.top1:>8.3f}{r.decode_tokens_per_s:>14.1f}"
                     f"{r.quantize_seconds:>12.1f}")
    lines.append(f"perplexity over {n_windows} windows x 511 scored tokens; KL(float || quantized) in nats per "
                 "token; bits/w over the block linears; size = all weights (embedding at q8_0 when quantized); "
                 "quantize s = seconds to quantize the whole model (calibration included)")
    return "\n".join(lines)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(rows: list[Row], float_model: LlamaModel, models: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.axhline(rows[0].perplexity, color="black", lw=1, ls="--", label="float32")
    for method in dict.fromkeys(r.method for r in rows[1:]):
        pts = sorted((r.bits_per_weight, r.perplexity) for r in rows[1:] if r.method == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=method)
    ax.set_xlabel("bits per weight (block linears)")
    ax.set_ylabel("perplexity")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Perplexity against bits per weight")
    plots.append(("Perplexity against bits per weight", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    for r in rows[1:]:
        errs = list(r.layer_errors.values())
        ax.semilogy(errs, lw=1, label=r.label)
    ax.set_xlabel("linear layer (blocks in order; q k v o gate up down within each)")
    ax.set_ylabel("relative output error")
    ax.legend(fontsize=7)
    ax.set_title("Per-layer output error on the float model's activations")
    plots.append(("Per-layer output error", _png(fig)))
    plt.close(fig)

    name = "down"
    block = float_model.blocks[len(float_model.blocks) // 2]
    w = block.linears[name].weight.ravel()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].hist(w, bins=200, color="gray")
    axes[0].set_yscale("log")
    axes[0].set_title(f"weights of blk.{block.index}.{name}")
    for label, m in models.items():
        lin = m.blocks[block.index].linears[name]
        if isinstance(lin, QuantizedLinear):
            axes[1].hist((np.asarray(lin.weight).ravel() - w), bins=200, histtype="step", label=label)
    axes[1].set_yscale("log")
    axes[1].set_title("quantization error (quantized - float)")
    axes[1].legend(fontsize=7)
    plots.append(("Weight and error histograms", _png(fig)))
    plt.close(fig)
    return plots


def write_report(path: str | os.PathLike, rows: list[Row], float_model: LlamaModel, models: dict, *,
                 n_windows: int) -> None:
    """An HTML page with the table and the plots, written atomically."""
    table = ["<table><tr><th>method / scheme</th><th>bits/w</th><th>size MB</th><th>perplexity</th><th>delta</th>"
             "<th>KL</th><th>top-1</th><th>decode tok/s</th></tr>"]
    for r in rows:
        table.append(f"<tr><td>{html.escape(r.label)}</td><td>{r.bits_per_weight:.3f}</td>"
                     f"<td>{r.weight_bytes / 1e6:.1f}</td><td>{r.perplexity:.3f}</td><td>{r.delta:+.3f}</td>"
                     f"<td>{r.kl:.4f}</td><td>{r.top1:.3f}</td><td>{r.decode_tokens_per_s:.1f}</td></tr>")
    table.append("</table>")
    figures = "".join(f"<h2>{html.escape(title)}</h2><img src='data:image/png;base64,{data}'>"
                      for title, data in _plots(rows, float_model, models))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>quantcore report</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
        "</head><body><h1>quantcore: what quantization cost</h1>"
        f"<p>Perplexity over {n_windows} windows of 512 tokens (511 scored each); KL divergence of the token "
        "distributions from the float model in nats per token; top-1: share of positions where both models "
        "predict the same next token.</p>" + "".join(table) + figures + "</body></html>"
    )
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(page)

    replace_atomically(path, write)
