"""GPT-style autoregressive prior over the T tokens of an image.

A decoder-only Transformer in the manner of nanoGPT (karpathy/nanoGPT, `model.py`): pre-norm
blocks, causal self-attention with `scaled_dot_product_attention`, learned absolute positions.
The sequence fed in is [start, t0, .., t_{T-2}] and position i predicts t_i; with
`num_classes > 0` a class embedding takes the place of the start token. `generate` samples
with a per-layer KV cache, so each new token costs one step over a single position.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PriorConfig
from .sampling import check_labels, check_sampling, draw, new_generator

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: K, V each (B, nh, T, hs)


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, t, vocab) against tokens (B, t), in float32."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens.reshape(-1))


def sequence_loss(out, tokens: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
    """The prior's training loss: next-token cross-entropy, plus the masks' where the prior predicts them."""
    if masks is None:
        return next_token_loss(out, tokens)
    logits, mask_logits = out
    return next_token_loss(logits, tokens) + next_token_loss(mask_logits, masks)


class SelfAttention(nn.Module):
    """Multi-head self-attention: causal (with an optional KV cache) for the AR prior, bidirectional for MaskGIT."""

    def __init__(self, cfg: PriorConfig, causal: bool = True):
        super().__init__()
        self.n_head, self.dropout, self.causal = cfg.n_head, cfg.dropout, causal
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None, pos: int = 0):
        B, t, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (z.view(B, t, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))  # (B, nh, t, hs)
        if isinstance(pos, torch.Tensor):  # one token at a tensor position over the whole cache: fixed shapes
            k_cache, v_cache = cache  # (B, nh, T, hs), zeros where not yet written
            k_cache.index_copy_(2, pos.view(1), k.to(k_cache.dtype))
            v_cache.index_copy_(2, pos.view(1), v.to(v_cache.dtype))
            seen = (torch.arange(k_cache.shape[2], device=pos.device) <= pos)[None]  # (1, T): one query
            y = F.scaled_dot_product_attention(q, k_cache.to(q.dtype), v_cache.to(q.dtype), attn_mask=seen)
            return self.c_proj(y.transpose(1, 2).reshape(B, t, C))
        if cache is not None:
            k_cache, v_cache = cache  # (B, nh, T, hs)
            k_cache[:, :, pos : pos + t] = k
            v_cache[:, :, pos : pos + t] = v
            if t == 1:  # one new query sees every cached position: no mask needed
                k, v = k_cache[:, :, : pos + 1], v_cache[:, :, : pos + 1]  # (B, nh, pos+1, hs)
            elif pos != 0:
                raise ValueError("a KV cache takes either a prefill at pos 0 or one token at a time")
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=self.causal and t > 1)  # (B, nh, t, hs)
        y = y.transpose(1, 2).reshape(B, t, C)  # (B, t, C)
        return self.resid_drop(self.c_proj(y))


class MLP(nn.Module):
    """nanoGPT's feed-forward block, with its names (c_fc, c_proj)."""

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-norm Transformer block (nanoGPT's), causal or bidirectional."""

    def __init__(self, cfg: PriorConfig, causal: bool = True):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = SelfAttention(cfg, causal)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache=None, pos: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, pos)
        return x + self.mlp(self.ln_2(x))


def init_weights(model: nn.Module, n_layer: int) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases, residual projections scaled down by depth."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * max(n_layer, 1)))


def mask_head(cfg: PriorConfig) -> nn.Module:
    """MVQ with sampled masks: predicts a token's mask from its position's final hidden state plus its code."""
    return nn.Sequential(nn.Linear(cfg.n_embd, cfg.n_embd), nn.GELU(), nn.Linear(cfg.n_embd, cfg.num_masks))


class Prior(nn.Module):
    def __init__(self, cfg: PriorConfig):
        super().__init__()
        if cfg.vocab_size < 1 or cfg.tokens < 1 or cfg.num_classes < 0 or cfg.n_embd % cfg.n_head:
            raise ValueError("prior needs vocab_size >= 1, tokens >= 1, num_classes >= 0, n_embd divisible by n_head")
        self.cfg = cfg
        self.start_id = cfg.vocab_size  # one id past the vocabulary; never predicted
        self.wte = nn.Embedding(cfg.vocab_size + 1, cfg.n_embd)
        self.wce = nn.Embedding(cfg.num_classes, cfg.n_embd) if cfg.num_classes > 0 else None
        self.wpe = nn.Embedding(cfg.tokens, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size)
        # MVQ with sampled masks: the mask of token t is predicted from the sequence so far and the code k_t,
        # and fed back as input beside the code (mask id num_masks stands for "none" at the start).
        self.wme = nn.Embedding(cfg.num_masks + 1, cfg.n_embd) if cfg.num_masks else None
        self.mask_code = nn.Embedding(cfg.vocab_size, cfg.n_embd) if cfg.num_masks else None
        self.mask_head = mask_head(cfg) if cfg.num_masks else None
        init_weights(self, cfg.n_layer)

    @staticmethod
    def upgrade_state_dict(state: dict) -> dict:
        """Weights saved before the MLP took nanoGPT's names (blocks.i.mlp.0 / .2) under today's names."""
        old = {".mlp.0.": ".mlp.c_fc.", ".mlp.2.": ".mlp.c_proj."}
        out = {}
        for key, value in state.items():
            for was, now in old.items():
                key = key.replace(was, now)
            out[key] = value
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_labels(self, labels, batch: int) -> torch.Tensor | None:
        return check_labels(labels, self.cfg.num_classes, batch, self.wte.weight.device)

    def _run(self, ids: torch.Tensor, labels, cache: KVCache | None = None, pos: int = 0, last_only: bool = False,
             mask_ids: torch.Tensor | None = None, hidden: bool = False):
        """ids (B, t): input ids (start id at position 0) placed at positions pos..pos+t-1; mask_ids (B, t) the
        masks beside them (priors with a mask head). Returns logits, or (logits, final hidden states)."""
        t = ids.shape[1]
        x = self.wte(ids)  # (B, t, C)
        if self.wme is not None:
            x = x + self.wme(mask_ids)
        if self.wce is not None and pos == 0:  # the class takes the start token's place
            x = torch.cat([self.wce(labels)[:, None], x[:, 1:]], dim=1)
        x = self.drop(x + self.wpe(torch.arange(pos, pos + t, device=ids.device)))  # (B, t, C)
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache[i], pos)
        if last_only:
            x = x[:, -1:]  # (B, 1, C)
        h = self.ln_f(x)
        return (self.head(h), h) if hidden else self.head(h)  # logits (B, t or 1, vocab)

    def mask_logits(self, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, t, M) of codes (B, t) at positions whose final hidden states are h (B, t, C)."""
        return self.mask_head(h + self.mask_code(codes))

    def _static_step(self, ids: torch.Tensor, pos: torch.Tensor, cache: KVCache,
                     mask_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, 1, vocab), final hidden state (B, 1, C)) of one token ids (B, 1) (and its mask ids) at
        position pos (a 0-d long tensor, >= 1) attending over the whole preallocated cache with a mask: every
        shape is fixed, so it can be captured as one graph."""
        x = self.wte(ids) + self.wpe(pos.view(1))
        if self.wme is not None:
            x = x + self.wme(mask_ids)
        for block, layer_cache in zip(self.blocks, cache):
            x = block(x, layer_cache, pos)
        h = self.ln_f(x)
        return self.head(h), h

    def _graph_step(self):
        """`_static_step` compiled with torch.compile(mode="reduce-overhead"): CUDA graphs on a GPU, fused
        kernels on a CPU; built once per model (kept out of the state dict)."""
        if "_compiled_step" not in self.__dict__:
            self.__dict__["_compiled_step"] = torch.compile(self._static_step, mode="reduce-overhead",
                                                            fullgraph=True, dynamic=False)
        return self.__dict__["_compiled_step"]

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor | None = None, masks: torch.Tensor | None = None):
        """tokens (B, t<=T) -> logits (B, t, vocab); logits[:, i] predicts tokens[:, i] from tokens[:, :i].

        A prior with a mask head takes the tokens' masks (B, t) too and returns (logits, mask logits (B, t, M)):
        mask logits[:, i] predict masks[:, i] from tokens[:, :i+1] and masks[:, :i]."""
        if tokens.dim() != 2 or not 1 <= tokens.shape[1] <= self.cfg.tokens:
            raise ValueError(f"tokens must have shape (B, t), 1 <= t <= {self.cfg.tokens}, got {tuple(tokens.shape)}")
        if (masks is None) != (self.mask_head is None):
            raise ValueError("masks go with a prior that has a mask head (num_masks > 0), and only with one")
        labels = self._check_labels(labels, tokens.shape[0])
        start = torch.full_like(tokens[:, :1], self.start_id)
        ids = torch.cat([start, tokens[:, :-1]], dim=1)  # (B, t): [start, t0, .., t_{t-2}]
        if masks is None:
            return self._run(ids, labels)
        mask_ids = torch.cat([torch.full_like(masks[:, :1], self.cfg.num_masks), masks[:, :-1]], dim=1)  # (B, t)
        logits, h = self._run(ids, labels, mask_ids=mask_ids, hidden=True)
        return logits, self.mask_logits(h, tokens)

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor | None = None,
             masks: torch.Tensor | None = None) -> torch.Tensor:
        return sequence_loss(self(tokens, labels, masks), tokens, masks)

    def _new_cache(self, batch: int, dtype: torch.dtype) -> KVCache:
        shape = (batch, self.cfg.n_head, self.cfg.tokens, self.cfg.n_embd // self.cfg.n_head)  # (B, nh, T, hs)
        device = self.wte.weight.device
        return [(torch.empty(shape, device=device, dtype=dtype), torch.empty(shape, device=device, dtype=dtype))
                for _ in self.blocks]

    @torch.inference_mode()
    def _sample_chunk(self, b: int, labels, use_cache: bool, g: torch.Generator, graph: bool = False,
                      mask_temperature: float = 1.0, **sampling) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sample b sequences -> ids (b, T) and, with a mask head, masks (b, T); with a cache each step runs
        the network over one position only.

        graph: steps after the first run `_graph_step` (fixed shapes, masked attention over the whole cache);
        random numbers are drawn outside it, so the same seed gives the same tokens as eager sampling."""
        on_cuda = self.wte.weight.device.type == "cuda"
        cache = self._new_cache(b, torch.bfloat16 if on_cuda else self.wte.weight.dtype) if use_cache or graph else None
        if graph:
            for k, v in cache:  # masked positions must hold numbers (0 * NaN is NaN)
                k.zero_(), v.zero_()
            step = self._graph_step()
            positions = torch.arange(self.cfg.tokens, device=self.wte.weight.device)
        ids = torch.full((b, 1), self.start_id, dtype=torch.long, device=self.wte.weight.device)  # (b, 1)
        masks = torch.full_like(ids, self.cfg.num_masks) if self.mask_head is not None else None  # (b, 1)
        for i in range(self.cfg.tokens):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
                if graph and i > 0:
                    logits, h = (t.clone() for t in step(ids[:, -1:], positions[i], cache,
                                                         None if masks is None else masks[:, -1:]))  # graph outputs
                elif use_cache or graph:
                    logits, h = self._run(ids[:, -1:], labels, cache, pos=i, hidden=True,
                                          mask_ids=None if masks is None else masks[:, -1:])  # (b, 1, vocab)
                else:  # recompute the whole prefix: the reference path for tests and benchmarks
                    logits, h = self._run(ids, labels, last_only=True, mask_ids=masks, hidden=True)  # (b, 1, vocab)
            nxt = draw(logits[:, -1].float(), g=g, **sampling)  # (b, 1)
            ids = torch.cat([ids, nxt], dim=1)  # (b, i+2)
            if masks is not None:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
                    mask_logits = self.mask_logits(h[:, -1:], nxt)  # (b, 1, M)
                m = draw(mask_logits[:, -1].float(), mask_temperature, None, None, g)  # (b, 1)
                masks = torch.cat([masks, m], dim=1)
        return ids[:, 1:], None if masks is None else masks[:, 1:]  # (b, T) each

    def generate(
        self,
        n: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        labels=None,
        use_cache: bool = True,
        batch_size: int | None = None,
        mask_temperature: float = 1.0,
        return_masks: bool = False,
        on_batch: Callable[[int], None] | None = None,
        graph: bool = False,
    ):
        """Sample n token sequences -> LongTensor (n, T). The same seed gives the same samples.

        temperature 0 is greedy (argmax); top_k keeps the k largest logits; top_p keeps the smallest set of
        tokens whose probability reaches p. labels (int or (n,) ints) are required iff num_classes > 0.
        A prior with a mask head draws each token's mask after its code (mask_temperature, 0 = argmax);
        return_masks gives (ids, masks), masks None for a prior without a mask head.
        graph=True runs each step after the first as one compiled graph (torch.compile, "reduce-overhead":
        CUDA graphs on a GPU) over a fixed-shape KV cache: the same tokens as eager sampling for the same seed,
        after a compile of some seconds to a minute, so it pays off for long runs (many batches of one size).
        on_batch(k) is called as each batch of k sequences is done.
        """
        check_sampling(n, temperature, top_k, top_p, batch_size, mask_temperature)
        labels = self._check_labels(labels, int(n))
        g = new_generator(seed, self.wte.weight.device)
        sampling = dict(temperature=float(temperature), top_k=None if top_k is None else int(top_k), top_p=top_p,
                        mask_temperature=float(mask_temperature))
        n, step = int(n), int(batch_size or n)
        was_training = self.training
        self.eval()
        try:
            chunks = []
            for lo in range(0, n, step):
                lab = None if labels is None else labels[lo : lo + step]
                chunks.append(self._sample_chunk(min(step, n - lo), lab, use_cache, g, graph, **sampling))
                if on_batch is not None:
                    on_batch(len(chunks[-1][0]))
        finally:
            self.train(was_training)
        ids = torch.cat([c[0] for c in chunks], dim=0).clone()  # (n, T); cloned outside inference mode
        if not return_masks:
            return ids
        return ids, None if self.mask_head is None else torch.cat([c[1] for c in chunks], dim=0).clone()
