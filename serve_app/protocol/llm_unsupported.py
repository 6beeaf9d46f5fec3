"""Request fields OpenAI or vLLM define that would change the answer and that neither engine here honours.

Requests ignore fields they do not declare (SDKs send ones this server has no use for, such as
`store` or `metadata`), but ignoring one of these would hand the client an answer other than
the one it asked for, with nothing to say so. So each must be absent or hold its neutral value
(what the field means when it is left out); anything else is a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from serve_app.protocol.common import field_error

_UNSET = (None,)

# Both endpoints: vLLM's sampling extensions beyond the four this server implements.
_SAMPLING: dict[str, tuple[Any, ...]] = {
    "min_p": (None, 0.0),
    "stop_token_ids": (None, []),
    "bad_words": (None, []),
    "allowed_token_ids": _UNSET,
    "include_stop_str_in_output": (None, False),
    "skip_special_tokens": (None, True),
    "spaces_between_special_tokens": (None, True),
    "use_beam_search": (None, False),
    "length_penalty": (None, 1.0),
    "truncate_prompt_tokens": _UNSET,
    "prompt_logprobs": _UNSET,
    "logprob_token_ids": _UNSET,
    "return_tokens_as_token_ids": (None, False),
    "return_token_ids": (None, False),
    "structured_outputs": _UNSET,
    "guided_json": _UNSET,
    "guided_regex": _UNSET,
    "guided_choice": _UNSET,
    "guided_grammar": _UNSET,
}

UNSUPPORTED_IN_CHAT: dict[str, tuple[Any, ...]] = {
    **_SAMPLING,
    # OpenAI's deprecated function calling (tools replace it), audio output and built-in web search.
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "audio": _UNSET,
    "modalities": (None, ["text"]),
    "web_search_options": _UNSET,
    # vLLM's chat-template controls.
    "echo": (None, False),
    "add_generation_prompt": (None, True),
    "continue_final_message": (None, False),
    "add_special_tokens": (None, False),
    "chat_template": _UNSET,
    "chat_template_kwargs": (None, {}),
    "documents": _UNSET,
}

UNSUPPORTED_IN_COMPLETIONS: dict[str, tuple[Any, ...]] = {
    **_SAMPLING,
    "suffix": (None, ""),
    "best_of": (None, 1),
    "add_special_tokens": (None, True),
    "prompt_embeds": _UNSET,
}


def refuse_unsupported(model: str, data: Any, table: dict[str, tuple[Any, ...]]) -> Any:
    """`data` unchanged, unless it sets a field of `table` to other than its neutral value."""
    if not isinstance(data, dict):
        return data
    for field, neutral in table.items():
        if field in data and not _is_neutral(data[field], neutral):
            raise field_error(model, field, f"{field} is not supported by this server; leave it out", data[field])
    return data


def _is_neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    # By type as well as value: True must not pass for 1, nor 0 for False.
    return any(type(value) is type(n) and value == n for n in neutral) or (
        isinstance(value, int) and not isinstance(value, bool) and any(type(n) is float and value == n for n in neutral)
    )
