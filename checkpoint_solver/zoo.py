"""A zoo of architecture families, built from configs with random weights (nothing downloaded), for
tests and benchmarks: every family a user trains, small enough for a CPU.

Each builder returns ``(model, inputs)``: the model in training mode with dropout on, and the
example inputs (a dict of keyword arguments or a tuple of positional ones) whose output gives the
loss the profiler's `default_loss` takes (Hugging Face models get ``labels``). ``size`` picks one
of a few configs per family (0 is the smallest), so a family is checked beyond one example.

Hugging Face families need ``transformers`` (the ``[hf]`` extra):

========== ==================================================================================
name       family
========== ==================================================================================
llama      decoder-only LLM: RoPE, grouped-query attention, SDPA, RMSNorm, SwiGLU
bert       encoder-only transformer with token-type and position embeddings, MLM head
t5         encoder-decoder (both stacks, relative position bias, cross-attention)
vit        vision transformer (patch convolution, class token)
gpt2       GPT-2 at a long context (``size`` 0: 512 tokens; 1: 2,048)
resnet     ResNet-50 layout (bottlenecks, BatchNorm in training mode)
convnext   ConvNeXt (depthwise 7x7 convolutions, LayerNorm, layer scale, downsampling between)
========== ==================================================================================

Hand-written families (torch only):

========== ==================================================================================
unet       diffusion-style U-Net denoiser: time embedding, skips across levels, GroupNorm
rnn        one `nn.LSTMCell` applied T times in a Python loop (an unrolled RNN)
rnn_steps  a `nn.ModuleList` of T step modules sharing one cell
========== ==================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FAMILIES", "HF_FAMILIES", "build"]

Built = tuple[nn.Module, Any]


def _config(cls: Any, **fields: Any) -> Any:
    return cls(**fields)


def _seed(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def llama(size: int = 0, seed: int = 0) -> Built:
    from transformers import LlamaConfig, LlamaForCausalLM

    g = _seed(seed)
    layers, dim, heads, kv, seq = [(4, 64, 4, 2, 64), (6, 96, 6, 2, 128)][size]
    cfg = _config(
        LlamaConfig,
        vocab_size=256,
        hidden_size=dim,
        intermediate_size=dim * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=seq,
        attention_dropout=0.1,
        attn_implementation="sdpa",
        use_cache=False,
    )
    model = LlamaForCausalLM(cfg).train()
    ids = torch.randint(0, 256, (2, seq), generator=g)
    return model, {"input_ids": ids, "labels": ids}


def bert(size: int = 0, seed: int = 0) -> Built:
    from transformers import BertConfig, BertForMaskedLM

    g = _seed(seed)
    layers, dim, seq = [(4, 64, 64), (6, 96, 128)][size]
    cfg = _config(
        BertConfig,
        vocab_size=256,
        hidden_size=dim,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=dim * 2,
        max_position_embeddings=seq,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    model = BertForMaskedLM(cfg).train()
    ids = torch.randint(0, 256, (2, seq), generator=g)
    return model, {"input_ids": ids, "labels": ids}


def t5(size: int = 0, seed: int = 0) -> Built:
    from transformers import T5Config, T5ForConditionalGeneration

    g = _seed(seed)
    layers, dim, seq = [(3, 64, 32), (4, 96, 64)][size]
    cfg = _config(
        T5Config,
        vocab_size=256,
        d_model=dim,
        d_kv=16,
        d_ff=dim * 2,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=4,
        dropout_rate=0.1,
        decoder_start_token_id=0,
        pad_token_id=0,
        use_cache=False,  # training: a KV cache the forward fills would change every rerun
    )
    model = T5ForConditionalGeneration(cfg).train()
    ids = torch.randint(1, 256, (2, seq), generator=g)
    labels = torch.randint(1, 256, (2, seq // 2), generator=g)
    return model, {"input_ids": ids, "labels": labels}


def vit(size: int = 0, seed: int = 0) -> Built:
    from transformers import ViTConfig, ViTForImageClassification

    g = _seed(seed)
    layers, dim, image = [(4, 64, 32), (6, 96, 64)][size]
    cfg = _config(
        ViTConfig,
        hidden_size=dim,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=dim * 2,
        image_size=image,
        patch_size=8,
        num_labels=10,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    model = ViTForImageClassification(cfg).train()
    pixels = torch.randn(2, 3, image, image, generator=g)
    return model, {"pixel_values": pixels, "labels": torch.randint(0, 10, (2,), generator=g)}


def gpt2(size: int = 0, seed: int = 0) -> Built:
    from transformers import GPT2Config, GPT2LMHeadModel

    g = _seed(seed)
    layers, dim, seq = [(4, 64, 512), (4, 64, 2048)][size]
    cfg = _config(
        GPT2Config,
        vocab_size=256,
        n_positions=seq,
        n_embd=dim,
        n_layer=layers,
        n_head=4,
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.1,
        use_cache=False,
    )
    model = GPT2LMHeadModel(cfg).train()
    ids = torch.randint(0, 256, (1, seq), generator=g)
    return model, {"input_ids": ids, "labels": ids}


def resnet(size: int = 0, seed: int = 0) -> Built:
    from transformers import ResNetConfig, ResNetForImageClassification

    g = _seed(seed)
    widths, depths, image = [
        ((16, 32, 64, 128), (1, 2, 2, 1), 32),
        ((16, 32, 64, 128), (3, 4, 6, 3), 32),  # ResNet-50's 16 bottlenecks, narrow
    ][size]
    cfg = _config(
        ResNetConfig,
        embedding_size=16,
        hidden_sizes=list(widths),
        depths=list(depths),
        layer_type="bottleneck",
        num_labels=10,
    )
    model = ResNetForImageClassification(cfg).train()
    pixels = torch.randn(2, 3, image, image, generator=g)
    return model, {"pixel_values": pixels, "labels": torch.randint(0, 10, (2,), generator=g)}


def convnext(size: int = 0, seed: int = 0) -> Built:
    from transformers import ConvNextConfig, ConvNextForImageClassification

    g = _seed(seed)
    widths, depths, image = [
        ((16, 32, 64, 64), (1, 1, 2, 1), 32),
        ((16, 32, 48, 64), (2, 2, 4, 2), 64),
    ][size]
    cfg = _config(
        ConvNextConfig,
        hidden_sizes=list(widths),
        depths=list(depths),
        num_labels=10,
        drop_path_rate=0.0,
    )
    model = ConvNextForImageClassification(cfg).train()
    pixels = torch.randn(2, 3, image, image, generator=g)
    return model, {"pixel_values": pixels, "labels": torch.randint(0, 10, (2,), generator=g)}


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(4, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(4, cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, dropout: float, last: bool) -> None:
        super().__init__()
        self.res = nn.ModuleList(
            [_ResBlock(cin, cout, tdim, dropout), _ResBlock(cout, cout, tdim, dropout)]
        )
        self.down = None if last else nn.Conv2d(cout, cout, 3, stride=2, padding=1)

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for r in self.res:
            x = r(x, temb)
            skips.append(x)
        if self.down is not None:
            x = self.down(x)
            skips.append(x)
        return x, skips


class _Up(nn.Module):
    def __init__(
        self, cin: int, cskips: list[int], cout: int, tdim: int, dropout: float, last: bool
    ) -> None:
        super().__init__()
        self.res = nn.ModuleList()
        c = cin
        for cs in cskips:
            self.res.append(_ResBlock(c + cs, cout, tdim, dropout))
            c = cout
        self.last = last

    def forward(
        self, x: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor
    ) -> torch.Tensor:
        for r in self.res:
            x = r(torch.cat([x, skips.pop()], dim=1), temb)
        if not self.last:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x


class UNet(nn.Module):
    """A diffusion denoiser's U-Net: sinusoidal time embedding and its MLP, ``len(widths)`` down
    levels of two residual blocks (each block's output is a skip), a middle block, and up levels
    that concatenate the skips of the matching level; predicts the noise (MSE loss)."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), dropout: float = 0.1) -> None:
        super().__init__()
        tdim = widths[0] * 4
        self.base = widths[0]
        self.time_mlp = nn.Sequential(nn.Linear(widths[0], tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.conv_in = nn.Conv2d(3, widths[0], 3, padding=1)
        self.downs = nn.ModuleList()
        chans = [widths[0]]
        c = widths[0]
        for i, w in enumerate(widths):
            last = i == len(widths) - 1
            self.downs.append(_Down(c, w, tdim, dropout, last))
            chans += [w, w] if last else [w, w, w]
            c = w
        self.mid = _ResBlock(c, c, tdim, dropout)
        self.ups = nn.ModuleList()
        for i, w in enumerate(reversed(widths)):
            n = 3
            skip_chans = [chans.pop() for _ in range(n)]
            self.ups.append(_Up(c, skip_chans, w, tdim, dropout, i == len(widths) - 1))
            c = w
        self.norm_out = nn.GroupNorm(4, c)
        self.conv_out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        half = self.base // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device) / half)
        angles = t.float()[:, None] * freqs[None]
        temb = self.time_mlp(torch.cat([angles.sin(), angles.cos()], dim=1))
        h = self.conv_in(x)
        skips = [h]
        for d in self.downs:
            h, s = d(h, temb)
            skips.extend(s)
        h = self.mid(h, temb)
        for u in self.ups:
            h = u(h, skips, temb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        loss: torch.Tensor = F.mse_loss(out, noise)
        return loss


def unet(size: int = 0, seed: int = 0) -> Built:
    g = _seed(seed)
    widths, image = [((16, 32, 64), 16), ((16, 32, 48, 64), 32)][size]
    model = UNet(widths).train()
    x = torch.randn(2, 3, image, image, generator=g)
    t = torch.randint(0, 1000, (2,), generator=g)
    return model, (x, t, torch.randn(2, 3, image, image, generator=g))


class UnrolledRNN(nn.Module):
    """One `nn.LSTMCell` applied to each time step in a Python loop, a linear head on every
    step's hidden state, cross-entropy over the sequence."""

    def __init__(self, inp: int, hidden: int, classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(inp, hidden)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, classes)
        self.hidden = hidden

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        c = x.new_zeros(x.shape[0], self.hidden)
        outs = []
        for t in range(x.shape[1]):
            h, c = self.cell(self.drop(x[:, t]), (h, c))
            outs.append(h)
        logits = self.head(torch.stack(outs, dim=1))
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())


def rnn(size: int = 0, seed: int = 0) -> Built:
    g = _seed(seed)
    steps, inp, hidden = [(16, 32, 64), (32, 48, 96)][size]
    model = UnrolledRNN(inp, hidden, 10).train()
    x = torch.randn(4, steps, inp, generator=g)
    return model, (x, torch.randint(0, 10, (4, steps), generator=g))


class _Step(nn.Module):
    def __init__(self, cell: nn.GRUCell, dropout: float) -> None:
        super().__init__()
        self.cell = cell
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.cell(self.drop(x), h)


class StepRNN(nn.Module):
    """A `nn.ModuleList` of step modules that share one `nn.GRUCell` (step modules hold no
    parameters of their own), the last hidden state classified."""

    def __init__(self, steps: int, inp: int, hidden: int, classes: int) -> None:
        super().__init__()
        cell = nn.GRUCell(inp, hidden)
        self.steps = nn.ModuleList(_Step(cell, 0.1) for _ in range(steps))
        self.head = nn.Linear(hidden, classes)
        self.hidden = hidden

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        for t, step in enumerate(self.steps):
            h = step(x[:, t], h)
        return F.cross_entropy(self.head(h), labels)


def rnn_steps(size: int = 0, seed: int = 0) -> Built:
    g = _seed(seed)
    steps, inp, hidden = [(12, 16, 32), (24, 32, 64)][size]
    model = StepRNN(steps, inp, hidden, 10).train()
    x = torch.randn(4, steps, inp, generator=g)
    return model, (x, torch.randint(0, 10, (4,), generator=g))


FAMILIES: dict[str, Callable[..., Built]] = {
    "llama": llama,
    "bert": bert,
    "t5": t5,
    "vit": vit,
    "gpt2": gpt2,
    "resnet": resnet,
    "convnext": convnext,
    "unet": unet,
    "rnn": rnn,
    "rnn_steps": rnn_steps,
}
HF_FAMILIES = frozenset({"llama", "bert", "t5", "vit", "gpt2", "resnet", "convnext"})


def build(name: str, size: int = 0, seed: int = 0) -> Built:
    """The model and inputs of family `name` at config `size` (0 or 1)."""
    try:
        fn = FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r}; the zoo has {', '.join(FAMILIES)}") from None
    if size not in (0, 1):
        raise ValueError(f"size must be 0 or 1, got {size!r}")
    return fn(size, seed)
