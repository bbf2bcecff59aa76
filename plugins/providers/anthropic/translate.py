"""Pure translation between OpenAI chat completions and Anthropic's Messages API.

Wire format: https://docs.anthropic.com/en/api/messages (request/response) and
https://docs.anthropic.com/en/api/errors. Nothing here does I/O; ``provider.py``
sends what ``to_messages_request`` builds and feeds back what arrives.

Rules worth knowing (each one a 400 from Anthropic otherwise):
* there is no ``system`` role: system and developer messages go to the top-level ``system``;
* tool results are ``tool_result`` blocks inside the next *user* message, before any text;
* ``max_tokens`` is required, so a configured default fills it in;
* tool-call arguments are JSON objects (``input``), not strings.
"""
from __future__ import annotations

from typing import Any, Mapping

import orjson

from .._common import (
    assistant_message, chat_completion, chat_messages, choice, image_url_of, invalid, require_one_choice, text_of,
    tool_call_arguments, tool_functions,
)

__all__ = ["to_messages_request", "from_messages_response", "usage_from_anthropic", "FINISH_REASONS", "image_block"]

# Anthropic stop_reason -> OpenAI finish_reason.
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def image_block(url: str) -> dict[str, Any]:
    """An OpenAI ``image_url`` (a data: URL or an http(s) URL) as an Anthropic image block."""
    if url.startswith("data:"):
        header, sep, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0]
        if not sep or ";base64" not in header or not media_type:
            raise invalid("image data URLs must look like data:<media-type>;base64,<data>", "messages")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise invalid("image_url must be a data: URL or an http(s) URL", "messages")


def _content_blocks(content: Any, *, allow_images: bool) -> list[dict[str, Any]]:
    """OpenAI message content (a string or a list of parts) → Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise invalid("message content must be a string or a list of parts", "messages")
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            if not part.get("text"):
                continue
            block: dict[str, Any] = {"type": "text", "text": part["text"]}
            if part.get("cache_control"):  # prompt caching hint, passed through as Anthropic spells it
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url" and allow_images:
            blocks.append(image_block(image_url_of(part)))
        else:
            raise invalid(f"content part type {kind!r} is not supported by anthropic", "messages")
    return blocks


def _tool_use_block(tool_call: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool_call.get("function") or {}
    args = tool_call_arguments(tool_call)
    if not isinstance(args, dict):
        raise invalid(f"tool call {tool_call.get('id')!r} arguments must be a JSON object", "messages")
    return {"type": "tool_use", "id": tool_call.get("id") or "", "name": fn.get("name") or "", "input": args}


def _tool_result_block(message: Mapping[str, Any]) -> dict[str, Any]:
    text = text_of(message.get("content"))
    return {"type": "tool_result", "tool_use_id": message.get("tool_call_id") or message.get("name") or "", "content": text}


def _messages(openai_messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split OpenAI messages into Anthropic ``system`` blocks and alternating ``messages``."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []

    def append(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:  # Anthropic wants one turn per role in a row: merge
            prev = out[-1]["content"]
            # tool_result blocks must open a user turn; keep them ahead of text that followed.
            results = [b for b in blocks if b["type"] == "tool_result"]
            others = [b for b in blocks if b["type"] != "tool_result"]
            head = [b for b in prev if b["type"] == "tool_result"] + results
            out[-1]["content"] = head + [b for b in prev if b["type"] != "tool_result"] + others
        else:
            out.append({"role": role, "content": blocks})

    for i, m in enumerate(openai_messages):
        if not isinstance(m, Mapping):
            raise invalid(f"messages[{i}] must be an object", "messages")
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_content_blocks(m.get("content"), allow_images=False))
        elif role == "user":
            append("user", _content_blocks(m.get("content"), allow_images=True))
        elif role == "assistant":
            blocks = _content_blocks(m.get("content"), allow_images=False)
            blocks += [_tool_use_block(tc) for tc in m.get("tool_calls") or ()]
            append("assistant", blocks)
        elif role in ("tool", "function"):
            append("user", [_tool_result_block(m)])
        else:
            raise invalid(f"messages[{i}].role {role!r} is not supported", "messages")
    return system, out


def _tools(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for fn in tool_functions(tools):
        tool = {"name": fn["name"], "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
        if fn.get("description"):
            tool["description"] = fn["description"]
        out.append(tool)
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        out: dict[str, Any] | None = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        out = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise invalid(f"tool_choice {choice!r} is not supported", "tool_choice")
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def to_messages_request(body: Mapping[str, Any], *, model: str, default_max_tokens: int, stream: bool) -> dict[str, Any]:
    """OpenAI chat request → Anthropic ``POST /v1/messages`` body."""
    messages = chat_messages(body)
    require_one_choice(body, "anthropic")
    system, turns = _messages(messages)
    req: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": int(body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens),
    }
    if system:
        req["system"] = system
    if body.get("temperature") is not None:
        req["temperature"] = min(float(body["temperature"]), 1.0)  # OpenAI allows 0..2, Anthropic 0..1
    if body.get("top_p") is not None:
        req["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        req["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("user"):
        req["metadata"] = {"user_id": str(body["user"])}
    if body.get("tools"):
        req["tools"] = _tools(body["tools"])
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and body.get("tools"):
        req["tool_choice"] = choice
    if stream:
        req["stream"] = True
    return req


def usage_from_anthropic(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Anthropic usage → OpenAI usage.

    Anthropic's ``input_tokens`` excludes cached input; OpenAI's ``prompt_tokens`` counts
    all of it, with cache reads reported again in ``prompt_tokens_details.cached_tokens``.
    """
    usage = usage or {}
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cache_read + cache_write
    completion = int(usage.get("output_tokens") or 0)
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cache_read or cache_write:
        out["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return out


def from_messages_response(resp: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """Anthropic Message → OpenAI ``chat.completion``."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in resp.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            tool_calls.append({"id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": args}})
        # thinking / redacted_thinking blocks have no OpenAI chat equivalent and are dropped.
    message = assistant_message("".join(texts) if texts or not tool_calls else None, tool_calls)
    reason = FINISH_REASONS.get(resp.get("stop_reason") or "", "stop")
    usage = usage_from_anthropic(resp.get("usage"))
    return chat_completion(resp.get("id") or "", resp.get("model") or model, [choice(0, message, reason)], usage)
