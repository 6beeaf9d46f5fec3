"""The running sequences' KV caches as one batch, so one forward pass decodes them all.

The sequences that arrive together are prefilled in one forward pass, left-padded to the
longest prompt, then join the batch left-padded to its width; padding columns are masked
out (and zeroed: finite whatever the model computed there), and each row gets its own
position ids, so a row attends to its own tokens only. A row that leaves is dropped at
once, and columns that have become padding for every row are trimmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deployments.llm.engines.lora import PeftAdapters


class KVBatch:
    def __init__(self, weights: PeftAdapters):
        import torch

        self._torch = torch
        # The base model, wrapped by peft while adapters are loaded: each forward names every
        # row's adapter (peft mixes adapters in one batch), under the lock loads and unloads take.
        self._weights = weights
        self._cache: Any = None
        self._mask: Any = None  # [rows, columns], 1 where a column holds one of that row's tokens
        self._lengths: list[int] = []  # real tokens per row, i.e. the next position id

    def __len__(self) -> int:
        return len(self._lengths)

    def prefill(self, prompts: Sequence[list[int]], adapters: Sequence[str | None]) -> Any:
        """Add a row per prompt, prefilled together; return their logits [rows, vocab] for the first new tokens."""
        torch = self._torch
        width = max(len(ids) for ids in prompts)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], dtype=torch.long)
        padded = torch.tensor([[0] * (width - len(ids)) + list(ids) for ids in prompts], dtype=torch.long)
        cache = self._new_cache()
        # Only the last position's logits: the others would cost a vocabulary-wide product per prompt token.
        out = self._forward(
            adapters,
            input_ids=padded,
            attention_mask=mask,
            position_ids=(mask.cumsum(1) - 1).clamp(min=0),
            past_key_values=cache,
            logits_to_keep=1,
        )
        if not bool(mask.all()):
            real = mask.bool()[:, None, :, None]
            for layer in cache.layers:
                layer.keys = torch.where(real, layer.keys, 0.0)
                layer.values = torch.where(real, layer.values, 0.0)
        self._join(cache, mask)
        return out.logits[:, -1].float()

    def prefill_scored(self, prompt_ids: list[int], adapter: str | None) -> Any:
        """Add a row for this prompt; return the logits [prompt tokens, vocab] of every position, for scoring
        the prompt: the last row is those for its first new token."""
        torch = self._torch
        out = self._forward(
            [adapter],
            input_ids=torch.tensor([prompt_ids], dtype=torch.long),
            past_key_values=(cache := self._new_cache()),
        )
        self._join(cache, torch.ones(1, len(prompt_ids), dtype=torch.long))
        return out.logits[0]

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        cache = DynamicCache(config=self._weights.base.config)
        if any(getattr(layer, "is_sliding", False) for layer in cache.layers):
            raise NotImplementedError("batched decoding on CPU needs full-attention layers (no sliding window)")
        return cache

    def score(self, prompt_ids: list[int], adapter: str | None) -> Any:
        """The logits [prompt tokens, vocab] of a prompt that is scored, not continued: it gets no row."""
        torch = self._torch
        return self._forward([adapter], input_ids=torch.tensor([prompt_ids], dtype=torch.long), use_cache=False).logits[
            0
        ]

    def decode(self, tokens: Sequence[int], adapters: Sequence[str | None]) -> Any:
        """Feed each row its last sampled token; return the logits [rows, vocab] for the next ones."""
        torch = self._torch
        rows = len(self._lengths)
        mask = torch.cat([self._mask, torch.ones(rows, 1, dtype=torch.long)], dim=1)
        out = self._forward(
            adapters,
            input_ids=torch.tensor(tokens, dtype=torch.long)[:, None],
            attention_mask=mask,
            position_ids=torch.tensor(self._lengths, dtype=torch.long)[:, None],
            past_key_values=self._cache,
        )
        self._mask = mask
        self._lengths = [n + 1 for n in self._lengths]
        return out.logits[:, -1].float()

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only these rows (in this order), freeing the others' keys and values now."""
        if not rows:
            self._cache, self._mask, self._lengths = None, None, []
            return
        index = self._torch.tensor(rows, dtype=self._torch.long)
        for layer in self._cache.layers:
            layer.batch_select_indices(index)
        self._mask = self._mask[index]
        self._lengths = [self._lengths[r] for r in rows]
        # Rows are left-padded: the leading columns no remaining row uses are pure padding.
        unused = self._mask.shape[1] - max(self._lengths)
        if unused > 0:
            for layer in self._cache.layers:
                layer.keys = layer.keys[..., unused:, :]
                layer.values = layer.values[..., unused:, :]
            self._mask = self._mask[:, unused:]

    def _join(self, cache: Any, mask: Any) -> None:
        """Append the rows of a prefilled cache whose columns `mask` [rows, columns] tells real from padding."""
        torch = self._torch
        lengths = mask.sum(1).tolist()
        if self._cache is None:
            self._cache, self._mask, self._lengths = cache, mask, lengths
            return
        width = max(self._mask.shape[1], mask.shape[1])
        pad_batch, pad_new = width - self._mask.shape[1], width - mask.shape[1]
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, pad_batch), _left_pad(theirs.keys, pad_new)])
            mine.values = torch.cat([_left_pad(mine.values, pad_batch), _left_pad(theirs.values, pad_new)])
        self._mask = torch.cat([_left_pad_mask(self._mask, pad_batch), _left_pad_mask(mask, pad_new)])
        self._lengths.extend(lengths)

    def _forward(self, adapters: Sequence[str | None], **inputs: Any) -> Any:
        with self._weights.lock:
            inputs = {"use_cache": True, **inputs}
            return self._weights.model(**inputs, **self._weights.forward_kwargs(list(adapters)))


def _left_pad(states: Any, columns: int) -> Any:
    """[rows, heads, columns, dim] with `columns` zero columns in front (finite, and masked out)."""
    if not columns:
        return states
    import torch.nn.functional as F

    return F.pad(states, (0, 0, columns, 0))


def _left_pad_mask(mask: Any, columns: int) -> Any:
    if not columns:
        return mask
    import torch.nn.functional as F

    return F.pad(mask, (columns, 0))
