"""Language models in numpy: a llama-architecture GGUF loader and forward pass, its tokenizer,
evaluation (perplexity, KL divergence, speed), and export (export_gguf for llama.cpp;
save_quantized / load_quantized, quantcore's own safetensors format).

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
from quantcore.models.export import export_gguf, load_quantized, save_quantized
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
    "export_gguf",
    "generate",
    "kl_divergence",
    "load_model",
    "load_quantized",
    "perplexity",
    "save_quantized",
    "speed",
    "token_nll",
    "window_nll",
]
