"""Evaluation of a language model: perplexity, KL divergence against a reference, speed, generation.

The perplexity protocol (the one every quantcore number uses):

1. Text: `quantcore.assets.evaluation_text()`, the plain article text of the gensim wheel's
   shortened English Wikipedia dump (markup stripped; 106 articles).
2. The whole text is tokenized once with the model's tokenizer, without BOS, and cut into
   consecutive non-overlapping windows of WINDOW = 512 tokens (the ragged tail is dropped).
3. `n_windows` of those windows are used, evenly spaced over the text (window indices
   round(linspace(0, K - 1, n_windows)) of the K available), so a few windows still sample
   many articles rather than only the first one.
4. Each window runs alone from an empty KV cache; its tokens 1..511 are scored, each predicted
   from the tokens before it in the window: 511 scored tokens per window.
5. perplexity = exp(mean NLL over all scored tokens), accumulated in float64.

DEFAULT_WINDOWS = 32 windows (16,352 scored tokens) take about a minute for the float32
SmolLM2-135M forward pass on 2 idle cores (about 1.8 s per window).

With SmolLM2's tokenizer the text is 629,691 tokens, K = 1229 windows. The float model
(Q4_1 weights dequantized to float32) measures perplexity 21.2060 with 32 windows and
24.0182 with 2 windows (`python -m quantcore.models --windows N`).

Tokenizing the text takes a few seconds: when comparing several models, call
evaluation_windows once and pass the windows to perplexity / kl_divergence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

WINDOW = 512
DEFAULT_WINDOWS = 32


def _progress(iterable, desc: str, enabled: bool, total: int | None = None):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


def evaluation_windows(tokenizer, n_windows: int = DEFAULT_WINDOWS, *, window: int = WINDOW,
                       text: str | None = None) -> np.ndarray:
    """The token windows of the perplexity protocol (see the module docstring).

    Args:
        tokenizer: a quantcore.models.Tokenizer (the model's).
        n_windows: how many windows, evenly spaced over the text.
        window: tokens per window.
        text: the text to cut; default quantcore.assets.evaluation_text().

    Returns:
        int64 [n_windows, window].

    Raises:
        ValueError: n_windows or window is not positive, or the text has fewer than n_windows windows.
    """
    if not isinstance(n_windows, (int, np.integer)) or n_windows <= 0:
        raise ValueError(f"evaluation_windows: n_windows must be a positive integer (got {n_windows!r})")
    if not isinstance(window, (int, np.integer)) or window < 2:
        raise ValueError(f"evaluation_windows: window must be an integer >= 2 (got {window!r})")
    if text is None:
        from quantcore import assets

        text = assets.evaluation_text()
    ids = tokenizer.encode(text, add_bos=False)
    available = ids.size // window
    if n_windows > available:
        raise ValueError(f"evaluation_windows: the text holds {available} windows of {window} tokens "
                         f"(asked for n_windows={n_windows})")
    chosen = np.round(np.linspace(0, available - 1, n_windows)).astype(np.int64)
    return ids[: available * window].reshape(available, window)[chosen].copy()


def _log_softmax64(logits: np.ndarray) -> np.ndarray:
    """float64 log-softmax over the last axis of float32 logits."""
    x = logits.astype(np.float64)
    x -= np.max(x, axis=-1, keepdims=True)
    x -= np.log(np.sum(np.exp(x), axis=-1, keepdims=True))
    return x


def token_nll(logits: np.ndarray, targets: np.ndarray, *, chunk: int = 128) -> np.ndarray:
    """Negative log-likelihood of each target under the logits.

    Args:
        logits: float32 [T, vocab].
        targets: int [T], the token each row predicts.

    Returns:
        float64 [T], -log softmax(logits[t])[targets[t]].
    """
    out = np.empty(targets.shape[0], dtype=np.float64)
    for s in range(0, targets.shape[0], chunk):
        lp = _log_softmax64(logits[s : s + chunk])
        out[s : s + chunk] = -lp[np.arange(lp.shape[0]), targets[s : s + chunk]]
    return out


def window_nll(model, window: np.ndarray) -> np.ndarray:
    """Per-token NLL of one window: tokens 1.. each predicted from those before it.

    Args:
        model: a LlamaModel (anything with forward(tokens) -> float32 [T, vocab]).
        window: int [T] token ids.

    Returns:
        float64 [T - 1].
    """
    window = np.asarray(window)
    logits = model.forward(window)
    return token_nll(logits[:-1], window[1:])


@dataclass
class EvalResult:
    """Perplexity over evaluation windows.

    Attributes:
        perplexity: exp(mean NLL) over all scored tokens.
        nll: float64 [n_windows, window - 1], the NLL of every scored token.
        seconds: wall time of the forward passes.
    """

    perplexity: float
    nll: np.ndarray
    seconds: float

    @property
    def n_windows(self) -> int:
        return self.nll.shape[0]

    @property
    def n_tokens(self) -> int:
        return self.nll.size

    @property
    def window_perplexities(self) -> np.ndarray:
        """float64 [n_windows], exp of each window's mean NLL."""
        return np.exp(self.nll.mean(axis=1))


def perplexity(model, windows: np.ndarray | None = None, *, n_windows: int = DEFAULT_WINDOWS,
               progress: bool = True) -> EvalResult:
    """Perplexity of `model` by the module's protocol.

    Args:
        model: a LlamaModel with a tokenizer (used only when windows is None).
        windows: int [n_windows, window] token windows; default
            evaluation_windows(model.tokenizer, n_windows).
        n_windows: number of windows when `windows` is None.
        progress: show a tqdm progress bar.

    Returns:
        EvalResult.

    Example:
        >>> perplexity(model, n_windows=4).perplexity
    """
    if windows is None:
        if getattr(model, "tokenizer", None) is None:
            raise ValueError("perplexity: the model has no tokenizer; pass windows")
        windows = evaluation_windows(model.tokenizer, n_windows)
    windows = np.asarray(windows)
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise ValueError(f"perplexity: windows must be [n_windows, window >= 2] token ids (got shape {windows.shape})")
    start = time.perf_counter()
    nll = np.stack([window_nll(model, w) for w in _progress(windows, "perplexity", progress)])
    seconds = time.perf_counter() - start
    return EvalResult(float(np.exp(nll.mean())), nll, seconds)


@dataclass
class KLResult:
    """Token-distribution divergence of a model Q from a reference P over evaluation windows.

    Attributes:
        kl: mean over positions of KL(P || Q) = sum_v p_v (log p_v - log q_v), in nats.
        top1_agreement: fraction of positions where argmax P == argmax Q.
        kl_per_window: float64 [n_windows], mean KL of each window.
    """

    kl: float
    top1_agreement: float
    kl_per_window: np.ndarray = field(repr=False)


def kl_divergence(reference, model, windows: np.ndarray, *, progress: bool = True, chunk: int = 128) -> KLResult:
    """KL(reference || model) of the next-token distributions, and top-1 agreement.

    Every position of every window is compared (including the last, which predicts past
    the window). Log-probabilities and sums are float64.

    Args:
        reference: model P (e.g. the float model); anything with forward(tokens) -> float32 [T, vocab].
        model: model Q (e.g. a quantized one), same vocabulary.
        windows: int [n_windows, window] token ids (see evaluation_windows).
        progress: show a tqdm progress bar.

    Returns:
        KLResult.
    """
    windows = np.asarray(windows)
    if windows.ndim != 2:
        raise ValueError(f"kl_divergence: windows must be 2-D [n_windows, window] (got shape {windows.shape})")
    per_window = np.empty(windows.shape[0], dtype=np.float64)
    agree = 0
    for i, w in enumerate(_progress(windows, "kl divergence", progress)):
        lp_all, lq_all = reference.forward(w), model.forward(w)
        if lp_all.shape != lq_all.shape:
            raise ValueError(f"kl_divergence: the models' logits differ in shape ({lp_all.shape} vs {lq_all.shape})")
        total = 0.0
        for s in range(0, w.size, chunk):
            lp = _log_softmax64(lp_all[s : s + chunk])
            lq = _log_softmax64(lq_all[s : s + chunk])
            total += float(np.sum(np.exp(lp) * (lp - lq)))
            agree += int(np.sum(np.argmax(lp, axis=-1) == np.argmax(lq, axis=-1)))
        per_window[i] = total / w.size
    return KLResult(float(per_window.mean()), agree / windows.size, per_window)


def generate(model, prompt, max_new_tokens: int, *, stop_at_eos: bool = True) -> np.ndarray:
    """Greedy continuation with a KV cache: one prefill of the prompt, then one token per step.

    Args:
        model: a LlamaModel.
        prompt: int [T] token ids.
        max_new_tokens: tokens to produce at most.
        stop_at_eos: stop after the tokenizer's eos_id is produced (it is included).

    Returns:
        int64 [n_new], the new tokens only.
    """
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be a non-negative integer (got {max_new_tokens!r})")
    prompt = np.asarray(prompt, dtype=np.int64)
    eos = getattr(getattr(model, "tokenizer", None), "eos_id", None) if stop_at_eos else None
    cache = model.new_cache(prompt.size + max_new_tokens)
    out: list[int] = []
    if max_new_tokens == 0:
        return np.zeros(0, dtype=np.int64)
    logits = model.forward(prompt, cache)
    for _ in range(max_new_tokens):
        nxt = int(np.argmax(logits[-1]))
        out.append(nxt)
        if eos is not None and nxt == eos or len(out) == max_new_tokens:
            break
        logits = model.forward(np.array([nxt]), cache)
    return np.asarray(out, dtype=np.int64)


@dataclass
class SpeedResult:
    """Throughput of one prefill and the decode steps after it.

    Attributes:
        prefill_tokens_per_s: prompt tokens / seconds of the single prefill forward.
        decode_tokens_per_s: decode steps / seconds, each step one token through the KV cache.
        prompt_tokens, decode_tokens: how many of each were timed.
    """

    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    prompt_tokens: int
    decode_tokens: int


def speed(model, prompt: np.ndarray | None = None, *, prompt_tokens: int = 256, decode_tokens: int = 32,
          repeats: int = 3) -> SpeedResult:
    """Time a prefill of the prompt, then `decode_tokens` greedy one-token steps; best of `repeats`.

    The fastest of several runs is reported because other processes on a shared machine only
    ever make a run slower (with multi-threaded BLAS, much slower).

    Args:
        model: a LlamaModel.
        prompt: int [T] token ids; default the first `prompt_tokens` tokens of the
            evaluation text (needs model.tokenizer).
        prompt_tokens: prompt length when prompt is None (at most WINDOW).
        decode_tokens: number of timed decode steps.
        repeats: runs of prefill + decode, each from an empty cache.

    Returns:
        SpeedResult.
    """
    if prompt is None:
        if not 0 < prompt_tokens <= WINDOW:
            raise ValueError(f"speed: prompt_tokens must be in [1, {WINDOW}] (got {prompt_tokens})")
        from quantcore import assets

        # 40 characters per token is far more text than needed; only the head is tokenized.
        prompt = model.tokenizer.encode(assets.evaluation_text()[: 40 * prompt_tokens], add_bos=False)[:prompt_tokens]
    prompt = np.asarray(prompt, dtype=np.int64)
    if decode_tokens <= 0:
        raise ValueError(f"speed: decode_tokens must be positive (got {decode_tokens})")
    if repeats <= 0:
        raise ValueError(f"speed: repeats must be positive (got {repeats})")
    model.forward(prompt[:8])  # warm-up: BLAS threads and first-touch allocations stay out of the timing
    prefill_s = decode_s = float("inf")
    for _ in range(repeats):
        cache = model.new_cache(prompt.size + decode_tokens)
        start = time.perf_counter()
        logits = model.forward(prompt, cache)
        prefill_s = min(prefill_s, time.perf_counter() - start)
        nxt = int(np.argmax(logits[-1]))
        start = time.perf_counter()
        for _ in range(decode_tokens):
            logits = model.forward(np.array([nxt]), cache)
            nxt = int(np.argmax(logits[-1]))
        decode_s = min(decode_s, time.perf_counter() - start)
    return SpeedResult(prompt.size / prefill_s, decode_tokens / decode_s, int(prompt.size), int(decode_tokens))


def main(argv: list[str] | None = None) -> int:
    """`python -m quantcore.models [MODEL.gguf] [--windows N]`: perplexity, speed, memory."""
    import argparse

    from quantcore.models.llama import load_model

    parser = argparse.ArgumentParser(prog="python -m quantcore.models",
                                     description="Perplexity (the documented protocol), tokens/s and weight "
                                                 "memory of a llama GGUF in the float32 numpy forward pass.")
    parser.add_argument("model", nargs="?", default=None, help="GGUF file (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--windows", type=int, default=DEFAULT_WINDOWS, help=f"windows of {WINDOW} tokens")
    parser.add_argument("--decode-tokens", type=int, default=32, help="timed one-token decode steps")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    result = perplexity(model, n_windows=args.windows)
    print(f"perplexity {result.perplexity:.4f} over {result.n_windows} windows x {WINDOW - 1} scored tokens "
          f"({result.seconds:.1f} s)")
    s = speed(model, decode_tokens=args.decode_tokens)
    print(f"prefill {s.prefill_tokens_per_s:.1f} tokens/s ({s.prompt_tokens} tokens), "
          f"decode {s.decode_tokens_per_s:.1f} tokens/s ({s.decode_tokens} steps), best of 3")
    print(f"weight memory {model.weight_nbytes() / 2**20:.1f} MiB")
    return 0
