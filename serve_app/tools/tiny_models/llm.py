"""The tiny Qwen2 LLM: a trained byte-level BPE, the Qwen2.5 chat template, random weights."""

from __future__ import annotations

import json
import random
from pathlib import Path

from serve_app.tools.tiny_models.offline import force_offline_defaults

LLM_VOCAB_SIZE = 1024
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Qwen2.5-Instruct's chat template, verbatim, so prompt formatting (including tools) is the
# production one. Raw string: the \n escapes are for Jinja to interpret.
QWEN25_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

_NAMES = (
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Oscar Peggy Trent Victor Walter "
    "Maria Kenji Fatima Lucas Priya Olga Tomas Amara"
).split()
_PLACES = (
    "the station|the market|the library|the harbor|the office|the garden|the museum|the airport|"
    "the kitchen|the school|the hospital|the river|the mountain|the city|the village|the server room|"
    "the bakery|the stadium|the theater|the factory|the island|the forest|the bridge|the laboratory"
).split("|")
_THINGS = (
    "a red apple|two blue books|the old map|a cup of coffee|three small boxes|the new laptop|"
    "a long letter|the weather report|a fresh loaf of bread|the train schedule|a broken clock|"
    "the quarterly budget|a paper kite|the GPU cluster|a bowl of soup|the summary|a silver bicycle|"
    "the yellow umbrella|a wooden chair|the monthly invoice|a jar of honey|the spare battery|"
    "a pair of gloves|the database backup|a basket of oranges|the festival poster|a cotton shirt|"
    "the camera lens|a bottle of water|the kitchen scale|a guitar string|the garden hose"
).split("|")
_VERBS = (
    "found|carried|bought|opened|read|painted|sold|fixed|wrote|shared|counted|described|checked|moved|"
    "borrowed|cleaned|delivered|explained|forgot|gathered|hid|improved|joined|kept|lifted|measured|"
    "noticed|ordered|packed|questioned|repaired|scanned|translated|uploaded|visited|washed|weighed|"
    "admired|built|compared|designed|examined|folded|grabbed|heated|inspected|labeled|mailed"
).split("|")
_TIMES = (
    "yesterday|this morning|on Monday|at noon|last week|in 2023|before dinner|after the meeting|"
    "on Friday evening|during the storm|at midnight|in early spring|every Tuesday|since January"
).split("|")
_ADJECTIVES = (
    "quick|quiet|bright|heavy|simple|strange|careful|happy|ancient|modern|useful|gentle|"
    "curious|dusty|elegant|fragile|generous|hollow|jealous|kind|lucky|narrow|obvious|polite|"
    "rapid|shiny|tidy|urgent|vivid|warm|young|zealous|brave|calm|eager|fancy|grumpy|humble"
).split("|")
_ADVERBS = "slowly|quickly|carefully|happily|quietly|suddenly|rarely|often|barely|gladly|loudly|neatly".split("|")
_QUESTIONS = (
    "What is the capital of France?|How many days are in a week?|Why is the sky blue?|"
    "Can you summarize this text?|Where did you put the keys?|Who wrote this report?|"
    "Which model should I deploy?|When does the next train leave?|Could you translate this sentence?|"
    "Is the service healthy?|How long will the upload take?|What does this error mean?"
).split("|")
_FIXED_LINES = (
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs!",
    "0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 3.14 -7 +1 50% $20 #1 @home",
    "Punctuation: ! \" # $ % & ' ( ) * + , - . / : ; < = > ? @ [ \\ ] ^ _ ` { | } ~",
    "def add(a, b):\n    return a + b\n",
    'print("Hello, world!")  # a comment',
    "You are a helpful assistant.",
    "The system sets the rules, the user asks, and the assistant answers.",
    "Hello! How are you today? I'm fine, thanks; and you?",
    "e-mail: user@example.com, URL: https://example.com/path?q=1&x=2",
    "Line one.\nLine two.\n\nA new paragraph starts here.",
)


def _sentence(rng: random.Random) -> str:
    name, other = rng.sample(_NAMES, 2)
    kind = rng.randrange(5)
    if kind == 0:
        return f"{name} {rng.choice(_VERBS)} {rng.choice(_THINGS)} at {rng.choice(_PLACES)} {rng.choice(_TIMES)}."
    if kind == 1:
        return f"{rng.choice(_QUESTIONS)} {other} asked {name} {rng.choice(_ADVERBS)}."
    if kind == 2:
        n = rng.randint(0, 9999)
        return f'The {rng.choice(_ADJECTIVES)} report lists {n} items, and {name} said: "{n % 97} are left!"'
    if kind == 3:
        return f"{name} and {other} walked {rng.choice(_ADVERBS)} to {rng.choice(_PLACES)}; it was {rng.choice(_ADJECTIVES)}."
    return f"Why had {name} {rng.choice(_VERBS)} {rng.choice(_THINGS)}? Because it looked {rng.choice(_ADJECTIVES)}."


def _corpus(seed: int) -> list[str]:
    """A few hundred varied English lines; any other ASCII still tokenizes via the byte alphabet."""
    rng = random.Random(seed)
    return [*_FIXED_LINES, *(_sentence(rng) for _ in range(600))]


def _train_tokenizer(seed: int):
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    # The same normalizer/pre-tokenizer/decoder as transformers' Qwen2Tokenizer: AutoTokenizer picks
    # that class for model_type qwen2 and rebuilds the pipeline from vocab + merges, so training with
    # anything else would give different ids than tokenizer.json (which vLLM and others use as-is).
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=LLM_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        # Every byte is in the base vocabulary, so no input is ever out of vocabulary.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(seed), trainer=trainer)
    return tokenizer


def _wrap_tokenizer(tokenizer):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        # Explicit nulls, as in Qwen2.5's config: Qwen2Tokenizer would otherwise default unk to <|endoftext|>.
        bos_token=None,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=QWEN25_CHAT_TEMPLATE,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )


def build_tiny_llm(out_dir: Path, seed: int = 0) -> None:
    """A 2-layer Qwen2 causal LM with a trained byte-level BPE and the Qwen2.5 chat template."""
    force_offline_defaults()
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = _wrap_tokenizer(_train_tokenizer(seed))
    pad_id, eos_id = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = Qwen2Config(
        vocab_size=LLM_VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        # As the real Qwen2.5 checkpoints; vLLM's GPU attention backends expect half precision.
        dtype="bfloat16",
    )
    # A private RNG stream: the weights depend on the seed alone, and the caller's RNG is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    # Qwen2.5-Instruct stops on either end marker; mirror that so engines stop the same way.
    model.generation_config = GenerationConfig(bos_token_id=pad_id, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def build_tiny_lora(out_dir: Path, base_dir: Path, base_name: str, seed: int) -> None:
    """A rank-8 LoRA adapter for the tiny LLM, built with peft, with random non-zero weights.

    peft initialises B to zero (an adapter that changes nothing) unless told otherwise; random A
    and B make the adapter's answers differ from the base's, which is what the tests check.
    """
    force_offline_defaults()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        lora = LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=["q_proj", "v_proj"],  # peft's default for Qwen2, and the usual choice
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base, lora)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    # The base as the model store names it (peft wrote the build's path): what the LLM deployment checks.
    config_path = out_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out_dir / "README.md").unlink(missing_ok=True)  # peft's model-card stub, naming the build's temp path
