"""`vllm bench serve` as a client of a running server: one run, its result as vLLM saves it."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class VllmBench:
    """Runs against one server and model, on the chat endpoint, with vLLM's random dataset (the prompts
    tokenized by `tokenizer`, the local model's own) and `ignore_eos`: every request generates exactly
    `output_len` tokens."""

    def __init__(self, base_url: str, model: str, tokenizer: str, input_len: int, output_len: int):
        self._base_url, self._model, self._tokenizer = base_url, model, tokenizer
        self._input_len, self._output_len = input_len, output_len
        self._dir = Path(tempfile.mkdtemp(prefix="vllm-bench-"))
        self._runs = 0

    def run(self, concurrency: int, prompts: int, extra_body: dict | None = None) -> dict:
        self._runs += 1
        name = f"run{self._runs}.json"
        command = [
            str(Path(sys.executable).parent / "vllm"),
            "bench",
            "serve",
            *("--backend", "openai-chat", "--endpoint", "/v1/chat/completions"),
            *("--base-url", self._base_url, "--model", self._model, "--tokenizer", self._tokenizer),
            *("--dataset-name", "random", "--random-input-len", str(self._input_len)),
            *("--random-output-len", str(self._output_len), "--num-prompts", str(prompts)),
            *("--max-concurrency", str(concurrency), "--ignore-eos", "--temperature", "1.0", "--seed", "0"),
            *("--percentile-metrics", "ttft,tpot,itl", "--metric-percentiles", "50,99", "--disable-tqdm"),
            *("--save-result", "--result-dir", str(self._dir), "--result-filename", name),
        ]
        if extra_body:
            command += ["--extra-body", json.dumps(extra_body)]
        label = f"concurrency {concurrency}{' + ' + ', '.join(extra_body) if extra_body else ''}"
        subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        result = json.loads((self._dir / name).read_text())
        if result.get("completed") != prompts:
            raise SystemExit(
                f"vllm bench serve, {label}: only {result.get('completed')} of {prompts} requests succeeded"
            )
        return result
