"""Language models in numpy: a llama-architecture GGUF loader and forward pass, its tokenizer,
and evaluation (perplexity, KL divergence, speed).

    >>> from quantcore import models
    >>> model = models.load_model()                 # SmolLM2-135M-Instruct from quantcore.assets
    >>> ids = model.tokenizer.encode("The capital of France is")
    >>> model.tokenizer.decode(models.generate(model, ids, max_new_tokens=1))
    ' Paris'
"""

from quantcore.models.llama import (
    LINEAR_NAMES,
    KVCache,
    Linear,
    LlamaBlock,
    LlamaConfig,
    LlamaModel,
    RMSNorm,
    dequantize_tensor,
    load_model,
)
from quantcore.models.tokenizer import Tokenizer
from quantcore.models.evaluate import (
    EvalResult,
    KLResult,
    SpeedResult,
    evaluation_windows,
    generate,
    kl_divergence,
    perplexity,
    speed,
    token_nll,
    window_nll,
)

__all__ = [
    "LINEAR_NAMES",
    "EvalResult",
    "KLResult",
    "KVCache",
    "Linear",
    "LlamaBlock",
    "LlamaConfig",
    "LlamaModel",
    "RMSNorm",
    "SpeedResult",
    "Tokenizer",
    "dequantize_tensor",
    "evaluation_windows",
    "generate",
    "kl_divergence",
    "load_model",
    "perplexity",
    "speed",
    "token_nll",
    "window_nll",
]
