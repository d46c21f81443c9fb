"""Byte-level BPE tokenizers trained here on a pipeline's prompt template and the data set's captions
(the Qwen-Image- and HunyuanVideo-class models' text encoders): any text tokenizes, no byte fall-back."""

from __future__ import annotations

from collections.abc import Iterable

#: Qwen2's (and Llama-3's) pre-tokenizer pattern.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


def train_byte_bpe(corpus: Iterable[str], special_tokens: Iterable[str], vocab_size: int = 1024):
    """A ``tokenizers.Tokenizer``: NFC, the Qwen2 split then byte-level, BPE trained on ``corpus`` with
    ``special_tokens`` first in the vocabulary (no post-processor: the caller adds one if it needs it)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return tok


def word_corpus(words: list[str], repeats: int = 20) -> list[str]:
    """The words as one line, and capitalised as another, each line ``repeats`` times (so that every
    word becomes a merge)."""
    return [" ".join(words), " ".join(w.capitalize() for w in words)] * repeats
