"""One sequence's sampling on the CPU engine: logits of its batch row in, the next token out.

Every sequence in a batch carries its own settings, its own seeded `torch.Generator`
(so a seed reproduces the same text whatever else runs beside it), its token counts for
the penalties and, when constrained, its own xgrammar matcher. The order follows vLLM's
sampler: logprobs of the raw model output, then the logit bias, penalties, the grammar mask,
min_tokens, temperature, top-k and top-p. `prompt_logprobs` scores a prompt from its prefill's logits.

`sample_rows` samples a whole step: the rows whose only setting is a temperature (what
most traffic sends) in one tensor op, the others one by one. Either way a row draws its
token as vLLM does, the argmax of its probabilities over exponential noise; a seeded
row's noise comes from its own generator, so its text depends on its logits and its
seed, never on its neighbours.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from deployments.llm.engines.base import SamplingSettings, TokenLogprob


class RowSampler:
    def __init__(
        self, settings: SamplingSettings, prompt_ids: list[int], vocab_size: int, eos_ids: list[int], matcher: Any
    ):
        import torch

        self._torch = torch
        self.settings = settings
        self._eos = torch.tensor(eos_ids, dtype=torch.long)
        seed = settings.seed if settings.seed is not None else random.getrandbits(63)
        self._rng = torch.Generator().manual_seed(seed)
        self._vocab_size = vocab_size
        self._counted = bool(
            settings.frequency_penalty or settings.presence_penalty or settings.repetition_penalty != 1.0
        )
        self._output_counts = torch.zeros(vocab_size, dtype=torch.float32)
        self._seen = torch.zeros(vocab_size, dtype=torch.bool)  # prompt and output: the repetition penalty's set
        if settings.repetition_penalty != 1.0:
            self._seen[torch.tensor(prompt_ids, dtype=torch.long)] = True
        self._bias = None  # OpenAI's logit_bias, over the whole vocabulary
        if settings.logit_bias:
            ids, values = zip(*settings.logit_bias, strict=True)
            self._bias = torch.zeros(vocab_size, dtype=torch.float32)
            self._bias[torch.tensor(ids, dtype=torch.long)] = torch.tensor(values, dtype=torch.float32)
        self._matcher = matcher
        self._bitmask = None
        if matcher is not None:
            import xgrammar

            self._bitmask = xgrammar.allocate_token_bitmask(1, vocab_size)
        self.generated = 0

    @property
    def plain(self) -> bool:
        """Only a temperature shapes this row's next token: it can be sampled with other such rows at once."""
        s = self.settings
        return (
            not self._counted
            and self._matcher is None
            and self._bias is None
            and s.logprobs is None
            and s.top_p >= 1.0
            and not 0 < s.top_k < self._vocab_size
            and self.generated >= s.min_tokens
        )

    @property
    def grammar_finished(self) -> bool:
        return self._matcher is not None and self._matcher.is_terminated()

    def sample(self, logits: Any) -> tuple[int, TokenLogprob | None]:
        """The next token for this row's float32 logits [vocab], and its logprob entry if asked for."""
        torch = self._torch
        s = self.settings
        raw = logits  # untouched: the logprobs are the model's own, whatever constrains the sampling
        logits = logits.clone() if self._bias is None else logits + self._bias
        logits = self._penalize(logits)
        if self._matcher is not None:
            import xgrammar

            self._matcher.fill_next_token_bitmask(self._bitmask)
            xgrammar.apply_token_bitmask_inplace(logits[None, :], self._bitmask)
        if self.generated < s.min_tokens:
            logits[self._eos] = -float("inf")
        if s.temperature == 0.0:
            token = int(torch.argmax(logits))
        else:
            token = int(torch.argmax(self._probabilities(logits) / self.noise()))
        self.record(token)
        return token, self._logprob(raw, token)

    def noise(self) -> Any:
        """Exponential noise [vocab] from this row's generator: the argmax of probabilities over it is a draw."""
        return self._torch.empty(self._vocab_size).exponential_(generator=self._rng)

    def _penalize(self, logits: Any) -> Any:
        s = self.settings
        # OpenAI's penalties count the output so far; the repetition penalty (vLLM's, as in CTRL)
        # also covers the prompt and divides positive logits, multiplies negative ones.
        if s.frequency_penalty or s.presence_penalty:
            counts = self._output_counts
            logits = logits - s.frequency_penalty * counts - s.presence_penalty * (counts > 0)
        if s.repetition_penalty != 1.0:
            seen = self._seen
            penalized = self._torch.where(logits > 0, logits / s.repetition_penalty, logits * s.repetition_penalty)
            logits = self._torch.where(seen, penalized, logits)
        return logits

    def _probabilities(self, logits: Any) -> Any:
        torch = self._torch
        s = self.settings
        scores = logits / s.temperature
        if 0 < s.top_k < scores.shape[-1]:
            kth = torch.topk(scores, s.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, -float("inf"))
        if s.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=True)
            cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
            # Drop a token once the ones before it already reach top_p; the first always stays.
            drop = (cumulative - torch.softmax(ordered, dim=-1)) >= s.top_p
            scores = scores.scatter(0, order, ordered.masked_fill(drop, -float("inf")))
        return torch.softmax(scores, dim=-1)

    def record(self, token: int) -> None:
        self.generated += 1
        if self._counted:
            self._output_counts[token] += 1
            self._seen[token] = True
        if self._matcher is not None and not self._matcher.is_terminated():
            self._matcher.accept_token(token)

    def _logprob(self, raw: Any, token: int) -> TokenLogprob | None:
        k = self.settings.logprobs
        if k is None:
            return None
        return _entries(self._torch.log_softmax(raw, dim=-1)[None, :], [token], k)[0]


def sample_rows(samplers: Sequence[RowSampler], logits: Any) -> list[tuple[int, TokenLogprob | None]]:
    """The next token, and its logprob entry if asked for, of every row of a step's logits [rows, vocab]."""
    import torch

    drawn: dict[int, int] = {}
    plain = [row for row, sampler in enumerate(samplers) if sampler.plain]
    if plain:
        rows = logits if len(plain) == len(samplers) else logits[torch.tensor(plain)]
        temperatures = torch.tensor([samplers[row].settings.temperature for row in plain])
        greedy = temperatures == 0.0
        # The same operations RowSampler.sample makes on one row, on all of them at once. A seeded row draws
        # its noise from its own generator; the unseeded ones share one draw, as in vLLM's sampler.
        probabilities = torch.softmax(rows / torch.where(greedy, 1.0, temperatures)[:, None], dim=-1)
        noise = torch.empty_like(rows).exponential_()
        for at, (row, is_greedy) in enumerate(zip(plain, greedy.tolist(), strict=True)):
            if samplers[row].settings.seed is not None and not is_greedy:
                noise[at] = samplers[row].noise()
        tokens = torch.where(greedy, rows.argmax(dim=-1), (probabilities / noise).argmax(dim=-1)).tolist()
        for row, token in zip(plain, tokens, strict=True):
            samplers[row].record(token)
            drawn[row] = token
    return [(drawn[row], None) if row in drawn else sampler.sample(logits[row]) for row, sampler in enumerate(samplers)]


# Prompt positions scored per pass: bounds the float32 copy of the logits to this many rows.
_SCORED_ROWS = 256


def prompt_logprobs(logits: Any, prompt_ids: list[int], k: int) -> tuple[TokenLogprob, ...]:
    """Each prompt token's logprob given the tokens before it, with the k most likely there, from the
    logits [prompt tokens, vocab] of the prompt's forward pass. The first token has none (logprob None)."""
    import torch

    entries = [TokenLogprob(prompt_ids[0], None)]
    scored = len(prompt_ids) - 1  # row i predicts token i + 1; the last row predicts what follows the prompt
    for start in range(0, scored, _SCORED_ROWS):
        end = min(start + _SCORED_ROWS, scored)
        # A float32 log-softmax, as RowSampler takes it for the generated tokens.
        rows = torch.log_softmax(logits[start:end].float(), dim=-1)
        entries.extend(_entries(rows, prompt_ids[start + 1 : end + 1], k))
    return tuple(entries)


def _entries(logprobs: Any, tokens: list[int], k: int) -> list[TokenLogprob]:
    """One entry per row of `logprobs` [rows, vocab]: that row's token's logprob, and the top k."""
    import torch

    chosen = logprobs.gather(1, torch.tensor(tokens, dtype=torch.long)[:, None])[:, 0].tolist()
    if k == 0:
        return [TokenLogprob(t, lp) for t, lp in zip(tokens, chosen, strict=True)]
    values, ids = torch.topk(logprobs, k, dim=-1)
    return [
        TokenLogprob(t, lp, tuple(zip(row_ids, row_values, strict=True)))
        for t, lp, row_ids, row_values in zip(tokens, chosen, ids.tolist(), values.tolist(), strict=True)
    ]
