"""Tiny random-init transformers models with a local word-level tokenizer, saved to a directory.

No downloads: configs are built here, weights are random (seeded), and the tokenizer is a
``tokenizers`` WordLevel model over a 60-word vocabulary wrapped in ``PreTrainedTokenizerFast``.
Sizes: 2 layers (or as asked), hidden size 32, 4 heads, 64 positions.
"""
from __future__ import annotations

from pathlib import Path

import torch

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "a", "big", "red"] + [f"w{i}" for i in range(50)]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
VOCAB = {tok: i for i, tok in enumerate(SPECIAL + WORDS)}
E, HEADS, POSITIONS = 32, 4, 64


def tokenizer(bert: bool):
    """A fast tokenizer over :data:`VOCAB`; BERT style wraps texts in [CLS] ... [SEP], else <s> ...."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    if bert:
        tk.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", VOCAB["[CLS]"]), ("[SEP]", VOCAB["[SEP]"])])
        return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", VOCAB["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="<s>", eos_token="</s>")


def build(kind: str, layers: int = 2, window: int | None = None, positions: int = POSITIONS):
    """``(model, tokenizer)`` for kind in gpt2, llama (GQA), mistral (sliding window), qwen2, bert,
    gemma2 (soft-capped attention scores);
    ``positions``: the longest sequence the config allows (default 64)."""
    import transformers as tf

    V = len(VOCAB)
    common = dict(vocab_size=V, hidden_size=E, num_hidden_layers=layers, num_attention_heads=HEADS,
                  intermediate_size=2 * E, max_position_embeddings=positions)
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = tf.GPT2Config(vocab_size=V, n_embd=E, n_layer=layers, n_head=HEADS, n_positions=positions,
                            bos_token_id=VOCAB["<s>"], eos_token_id=VOCAB["</s>"])
        model = tf.GPT2LMHeadModel(cfg)
    elif kind == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(num_key_value_heads=2, **common))
    elif kind == "mistral":
        model = tf.MistralForCausalLM(tf.MistralConfig(num_key_value_heads=2, sliding_window=window or 4, **common))
    elif kind == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(num_key_value_heads=2, **common))
    elif kind == "gemma2":                   # soft-capped scores: not plain softmax attention
        model = tf.Gemma2ForCausalLM(tf.Gemma2Config(num_key_value_heads=2, head_dim=E // HEADS,
                                                     attn_logit_softcapping=50.0, **common))
    elif kind == "bert":
        model = tf.BertModel(tf.BertConfig(**common, pad_token_id=VOCAB["[PAD]"]), add_pooling_layer=False)
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}")
    return model.eval(), tokenizer(bert=kind == "bert")


def save(kind: str, path: Path, layers: int = 2, window: int | None = None, positions: int = POSITIONS) -> Path:
    """Build a tiny model and save it with its tokenizer (safetensors) to ``path``."""
    model, tok = build(kind, layers, window, positions)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
