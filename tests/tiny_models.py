"""Tiny random-init transformers models (2–3 layers) and a word-level tokenizer, all built offline."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

WORDS = "the a dog cat horse bird fish runs eats sleeps red blue green big small apple bread cheese car boat train house".split()


def word_tokenizer(kind: str = "bos") -> PreTrainedTokenizerFast:
    """A word-level tokenizer; kind='bos' adds <s> (Llama style), 'cls' adds [CLS]/[SEP] (BERT), 'none' adds nothing (GPT-2)."""
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<s>", "</s>", "<unk>", "[CLS]", "[SEP]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind == "bos":
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    elif kind == "cls":
        tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 4), ("[SEP]", 5)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", cls_token="[CLS]", sep_token="[SEP]")
    if kind != "none":
        fast.pad_token = "<pad>"
    return fast


def tiny_llama(hidden: int = 32, layers: int = 3, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=40, hidden_size=hidden, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(hidden: int = 24, layers: int = 3, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=40, n_embd=hidden, n_layer=layers, n_head=4, n_positions=128, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(cfg).eval()


def tiny_bert(hidden: int = 16, layers: int = 2, seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=40, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32, max_position_embeddings=128, pad_token_id=0)
    return BertModel(cfg).eval()


def write_tiny_pair(root, n_texts: int = 1500, seed: int = 3):
    """A tiny Llama subject and a tiny BERT atlas model saved with their tokenizers under ``root``,
    and a JSONL corpus of ``n_texts`` random 9-word texts: (subject folder, atlas folder, corpus file)."""
    import json
    from pathlib import Path

    root = Path(root)
    subject, atlas = root / "tiny-llama", root / "tiny-bert"
    tiny_llama().save_pretrained(subject)
    word_tokenizer("bos").save_pretrained(subject)
    tiny_bert().save_pretrained(atlas)
    word_tokenizer("cls").save_pretrained(atlas)
    g = torch.Generator().manual_seed(seed)
    corpus = root / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": " ".join(WORDS[j] for j in torch.randint(len(WORDS), (9,), generator=g).tolist())}) for _ in range(n_texts)))
    return subject, atlas, corpus
