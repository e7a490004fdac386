"""Write smollm2_transformers_reference.npz: golden logits of SmolLM2-135M-Instruct from Hugging Face
transformers, an implementation independent of quantcore (its own GGUF reader, de-permutation of
q/k, rotate_half RoPE, torch kernels), for tests/test_models.py.

Not run by the tests. Needs torch and transformers (+ accelerate), e.g. in a scratch venv:
    pip install torch==2.13.0 transformers accelerate
    python tests/data/make_transformers_reference.py
"""

import os
import pathlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from quantcore import assets

TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower "
    "from 1887 to 1889. Locally nicknamed \"La dame de fer\" (French for \"Iron Lady\"), it was "
    "constructed as the centrepiece of the 1889 World's Fair."
)
TOP = 16


def main() -> None:
    path = assets.default_model_path()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    model.eval()
    ids = np.asarray(tok(TEXT, add_special_tokens=False)["input_ids"], dtype=np.int64)
    with torch.no_grad():
        logits = model(torch.tensor(ids[None])).logits[0].double().numpy()
    top_ids = np.argsort(-logits, axis=1)[:, :TOP]
    out = pathlib.Path(__file__).with_name("smollm2_transformers_reference.npz")
    np.savez_compressed(
        out,
        text=np.array(TEXT),
        tokens=ids,
        top_ids=top_ids.astype(np.int32),
        top_logits=np.take_along_axis(logits, top_ids, axis=1).astype(np.float32),
        logsumexp=np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1),
        versions=np.array(f"transformers {transformers.__version__}, torch {torch.__version__}"),
    )
    print(f"wrote {out} ({len(ids)} tokens)")


if __name__ == "__main__":
    main()
