"""Byte-level BPE tokenizer built from a GGUF file's `tokenizer.ggml.*` vocabulary.

Supported: `tokenizer.ggml.model == "gpt2"` (byte-level BPE) with the pre-tokenizers
(`tokenizer.ggml.pre`) that llama.cpp splits as

    "gpt2", "default":                    the GPT-2 regex
        's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    "smollm", "starcoder", "refact",
    "codeshell", "command-r":             every digit split off alone (\\p{N}), then the GPT-2 regex

The `tokenizers` library's ByteLevel pre-tokenizer is that GPT-2 regex followed by the
byte-to-unicode mapping, and its Digits(individual_digits=True) is the \\p{N} split.
Decoding maps the byte symbols back, so decode(encode(text)) == text for any string.
"""

from __future__ import annotations

import numpy as np

# llama_token_type in llama.cpp: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte.
_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4

_DIGITS_THEN_GPT2 = ("smollm", "starcoder", "refact", "codeshell", "command-r")
_GPT2 = ("gpt2", "default")


class Tokenizer:
    """Text <-> token ids.

    Attributes:
        vocab_size: number of token ids.
        bos_id, eos_id: ids of the begin/end-of-sequence tokens, or None.
        add_bos: whether the model expects bos_id before a text (`tokenizer.ggml.add_bos_token`).
        pre: the GGUF pre-tokenizer name.
    """

    def __init__(self, tokens: list[str], merges: list[str], token_types: list[int] | None = None, *,
                 pre: str = "gpt2", bos_id: int | None = None, eos_id: int | None = None, add_bos: bool = False):
        from tokenizers import AddedToken, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as _HFTokenizer

        if pre in _DIGITS_THEN_GPT2:
            pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ])
        elif pre in _GPT2:
            pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        else:
            raise ValueError(f"Tokenizer: pre-tokenizer {pre!r} (tokenizer.ggml.pre) is not supported; "
                             f"supported: {', '.join(_GPT2 + _DIGITS_THEN_GPT2)}")
        vocab = {tok: i for i, tok in enumerate(tokens)}
        if len(vocab) != len(tokens):
            raise ValueError("Tokenizer: tokens contains duplicates")
        pairs = []
        for m in merges:
            left, sep, right = m.partition(" ")
            if not sep or not left or not right:
                raise ValueError(f"Tokenizer: merge {m!r} is not two symbols separated by one space")
            pairs.append((left, right))
        tk = _HFTokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
        tk.pre_tokenizer = pre_tokenizer
        tk.decoder = decoders.ByteLevel()
        if token_types is not None:
            special = [AddedToken(tokens[i], special=True, normalized=False)
                       for i, t in enumerate(token_types) if t == _TOKEN_TYPE_CONTROL]
            user = [AddedToken(tokens[i], special=False, normalized=False)
                    for i, t in enumerate(token_types) if t == _TOKEN_TYPE_USER_DEFINED]
            if special:
                tk.add_special_tokens(special)
            if user:
                tk.add_tokens(user)
        self._tk = tk
        self._tokens = list(tokens)
        self.vocab_size = len(tokens)
        self.pre = pre
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.add_bos = bool(add_bos)

    @classmethod
    def from_gguf_reader(cls, reader) -> "Tokenizer":
        """Build from an open `gguf.GGUFReader` (keys tokenizer.ggml.*); see from_gguf_fields."""
        return cls.from_gguf_fields({key: field.contents() for key, field in reader.fields.items()
                                     if key.startswith("tokenizer.ggml.")})

    @classmethod
    def from_gguf_fields(cls, fields) -> "Tokenizer":
        """Build from GGUF tokenizer key/values: a mapping "tokenizer.ggml.*" -> value as
        `field.contents()` gives it (LlamaModel.tokenizer_metadata holds one).

        Raises:
            ValueError: the tokenizer model is not "gpt2" (byte-level BPE) or its
                pre-tokenizer is not supported.
        """

        def get(key, default=None):
            return fields.get(key, default)

        kind = get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise ValueError(f"Tokenizer: tokenizer.ggml.model {kind!r} is not supported (only 'gpt2', byte-level BPE)")
        bos, eos = get("tokenizer.ggml.bos_token_id"), get("tokenizer.ggml.eos_token_id")
        return cls(get("tokenizer.ggml.tokens"), get("tokenizer.ggml.merges", []),
                   get("tokenizer.ggml.token_type"), pre=get("tokenizer.ggml.pre", "default"),
                   bos_id=None if bos is None else int(bos), eos_id=None if eos is None else int(eos),
                   add_bos=bool(get("tokenizer.ggml.add_bos_token", False)))

    def encode(self, text: str, *, special: bool = False, add_bos: bool | None = None) -> np.ndarray:
        """Token ids of `text`.

        Args:
            text: any string.
            special: True matches control tokens written in the text (e.g. "<|im_start|>")
                as single ids; False (default) encodes such text as ordinary characters.
            add_bos: prepend bos_id; None follows the file (`add_bos`).

        Returns:
            int64 [n_tokens].

        Raises:
            TypeError: text is not a str.
        """
        if not isinstance(text, str):
            raise TypeError(f"Tokenizer.encode: text must be a str (got {type(text).__name__})")
        self._tk.encode_special_tokens = not special
        ids = self._tk.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return np.asarray(ids, dtype=np.int64)

    def encode_batch(self, texts: list[str], *, special: bool = False) -> list[np.ndarray]:
        """`encode` of each text (no BOS), run in parallel by the tokenizers library."""
        self._tk.encode_special_tokens = not special
        return [np.asarray(e.ids, dtype=np.int64) for e in self._tk.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids) -> str:
        """Text of token ids (int [n]); control tokens are written out, not skipped."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"Tokenizer.decode: ids must be 1-D (got shape {ids.shape})")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"Tokenizer.decode: ids must lie in [0, {self.vocab_size})")
        return self._tk.decode([int(i) for i in ids], skip_special_tokens=False)

    def token(self, token_id: int) -> str:
        """The vocabulary entry (byte-level symbols) of one id."""
        return self._tokens[token_id]

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, pre={self.pre!r})"
