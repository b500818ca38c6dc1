"""Built-in reference models for tests, demos and benchmarks: random weights, nothing downloaded.

Each builder returns ``(model, example_inputs)`` ready for `checkpoint_solver.profiling.profile`;
the model computes its own loss when given targets, so ``profile(model, inputs)`` needs no
`loss_fn`. Sizes are arguments; the defaults profile in about a second on a laptop CPU.

- `mlp`: an `nn.Sequential` of pre-norm residual MLP blocks between an input and an output layer.
- `resnet`: a ResNet-style CNN (BatchNorm, residual basic blocks, strided stages).
- `gpt`: a GPT-style decoder (token and position embeddings, causal self-attention, GELU MLP,
  dropout), layers in ``model.blocks``.
- `hf_gpt2`: a Hugging Face GPT-2 built from a config (random weights; `pip install transformers`),
  its layers ``"transformer.h"`` as blocks. Built by hand it profiles the same way::

    from transformers import GPT2Config, GPT2LMHeadModel
    model = GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=256, n_head=4, n_positions=128))
    ids = torch.randint(0, model.config.vocab_size, (8, 128))
    prof = profile(model, {"input_ids": ids, "labels": ids}, blocks="transformer.h")
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["GPT", "gpt", "hf_gpt2", "mlp", "resnet"]


class ResidualMLPBlock(nn.Module):
    """``x + W2 GELU(W1 LayerNorm(x))``."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


def mlp(
    *, depth: int = 8, width: int = 512, hidden: int = 2048, batch: int = 64, seed: int = 0
) -> tuple[nn.Sequential, tuple[torch.Tensor]]:
    """An `nn.Sequential`: input layer, `depth` residual blocks, output layer (a chain of
    ``depth + 2`` modules; profiled with the default loss, the output summed)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(width, width),
        *[ResidualMLPBlock(width, hidden) for _ in range(depth)],
        nn.Linear(width, width),
    )
    return model, (torch.randn(batch, width, generator=g),)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, ReLU, identity or 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, ``layers`` of basic blocks (an `nn.Sequential`), pooling, classifier, and the
    cross-entropy loss when labels are given."""

    def __init__(self, widths: tuple[int, ...], blocks_per_stage: int, classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        layers: list[nn.Module] = []
        cin = widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks_per_stage):
                layers.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        h = self.layers(self.stem(images))
        logits = self.fc(h.mean(dim=(2, 3)))
        return logits if labels is None else F.cross_entropy(logits, labels)


def resnet(
    *,
    widths: tuple[int, ...] = (32, 64, 128),
    blocks_per_stage: int = 2,
    image: int = 32,
    batch: int = 16,
    classes: int = 10,
    seed: int = 0,
) -> tuple[ResNet, tuple[torch.Tensor, torch.Tensor]]:
    """A ResNet-style CNN (``len(widths) * blocks_per_stage`` blocks in ``model.layers``)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ResNet(widths, blocks_per_stage, classes)
    images = torch.randn(batch, 3, image, image, generator=g)
    labels = torch.randint(0, classes, (batch,), generator=g)
    return model, (images, labels)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = self.attn_drop(att.masked_fill(~mask, float("-inf")).softmax(dim=-1))
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.resid_drop(self.proj(y))


class GPTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A GPT-style decoder; returns the next-token cross-entropy loss when given targets."""

    def __init__(
        self, vocab: int, context: int, layers: int, dim: int, heads: int, dropout: float
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(context, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(GPTBlock(dim, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> Any:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def gpt(
    *,
    layers: int = 4,
    dim: int = 256,
    heads: int = 4,
    context: int = 128,
    vocab: int = 2048,
    batch: int = 8,
    dropout: float = 0.1,
    seed: int = 0,
) -> tuple[GPT, tuple[torch.Tensor, torch.Tensor]]:
    """A GPT-style transformer (``layers`` blocks in ``model.blocks``) with token inputs and
    next-token targets."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = GPT(vocab, context, layers, dim, heads, dropout)
    idx = torch.randint(0, vocab, (batch, context + 1), generator=g)
    return model, (idx[:, :-1].contiguous(), idx[:, 1:].contiguous())


def hf_gpt2(
    *,
    layers: int = 4,
    dim: int = 256,
    heads: int = 4,
    context: int = 128,
    vocab: int = 50257,
    batch: int = 8,
    seed: int = 0,
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A Hugging Face ``GPT2LMHeadModel`` built from a config (random weights, nothing
    downloaded; needs ``transformers``), in training mode with ``use_cache=False``, and a batch
    ``{"input_ids", "labels"}``. Its blocks are ``"transformer.h"``."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=layers,
        n_embd=dim,
        n_head=heads,
        n_positions=context,
        vocab_size=vocab,
        use_cache=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config).train()
    ids = torch.randint(
        0, vocab, (batch, context), generator=torch.Generator().manual_seed(seed + 1)
    )
    return model, {"input_ids": ids, "labels": ids}
