"""Pure translation between OpenAI chat completions and Ollama's native ``/api/chat``.

Wire format: https://github.com/ollama/ollama/blob/main/docs/api.md ("Generate a chat
completion", "Generate Embeddings", "List Local Models"). No I/O here.

Rules worth knowing:
* sampling parameters live under ``options`` with Ollama's names (``num_predict``, ``stop``);
* images are a list of bare base64 strings beside the text, not content parts;
* tool-call arguments are JSON objects and Ollama gives calls no ids, so ids are made here;
* a tool result names its function (``tool_name``), looked up from the call it answers.
"""
from __future__ import annotations

from typing import Any, Mapping

import orjson

from .._common import (
    assistant_message, chat_completion, chat_messages, choice, inline_image, invalid, new_call_id, new_completion_id,
    require_one_choice, sampling_params, token_usage, tool_call_arguments,
)

__all__ = ["to_chat_request", "from_chat_response", "usage_from_ollama", "finish_reason", "tool_call_from_ollama"]

_OPTIONS = (("temperature", "temperature"), ("top_p", "top_p"), ("seed", "seed"),
            ("presence_penalty", "presence_penalty"), ("frequency_penalty", "frequency_penalty"))


def _text_and_images(content: Any) -> tuple[str, list[str]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise invalid("message content must be a string or a list of parts")
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            texts.append(str(part.get("text") or ""))
        elif kind == "image_url":
            images.append(inline_image(part, "ollama")[1])
        else:
            raise invalid(f"content part type {kind!r} is not supported by ollama")
    return "".join(texts), images


def _tool_call_to_ollama(tool_call: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool_call.get("function") or {}
    args = tool_call_arguments(tool_call)
    return {"function": {"name": fn.get("name") or "", "arguments": args if isinstance(args, dict) else {}}}


def _messages(messages: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise invalid(f"messages[{i}] must be an object")
        role = m.get("role")
        text, images = _text_and_images(m.get("content"))
        if role in ("system", "developer"):
            out.append({"role": "system", "content": text})
        elif role == "user":
            msg: dict[str, Any] = {"role": "user", "content": text}
            if images:
                msg["images"] = images
            out.append(msg)
        elif role == "assistant":
            msg = {"role": "assistant", "content": text}
            if m.get("tool_calls"):
                for tc in m["tool_calls"]:
                    names[str(tc.get("id"))] = (tc.get("function") or {}).get("name") or ""
                msg["tool_calls"] = [_tool_call_to_ollama(tc) for tc in m["tool_calls"]]
            out.append(msg)
        elif role in ("tool", "function"):
            msg = {"role": "tool", "content": text}
            name = names.get(str(m.get("tool_call_id"))) or m.get("name")
            if name:
                msg["tool_name"] = name
            out.append(msg)
        else:
            raise invalid(f"messages[{i}].role {role!r} is not supported")
    return out


def to_chat_request(
    body: Mapping[str, Any], *, model: str, stream: bool, defaults: Mapping[str, Any] | None = None, keep_alive: str | None = None
) -> dict[str, Any]:
    """OpenAI chat request → Ollama ``POST /api/chat`` body. ``defaults`` are configured options (e.g. num_ctx)."""
    messages = chat_messages(body)
    require_one_choice(body, "ollama")
    req: dict[str, Any] = {"model": model, "messages": _messages(messages), "stream": stream}
    options = {**(defaults or {}), **sampling_params(body, _OPTIONS, max_tokens="num_predict", stop="stop")}
    if options:
        req["options"] = options
    if body.get("tools") and body.get("tool_choice") != "none":  # Ollama has no tool_choice; "none" = offer none
        req["tools"] = [{"type": "function", "function": t.get("function")} for t in body["tools"] if isinstance(t, Mapping)]
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        req["format"] = "json"
    elif fmt.get("type") == "json_schema" and (fmt.get("json_schema") or {}).get("schema"):
        req["format"] = fmt["json_schema"]["schema"]
    if keep_alive is not None:
        req["keep_alive"] = keep_alive
    return req


def usage_from_ollama(resp: Mapping[str, Any]) -> dict[str, Any]:
    return token_usage(int(resp.get("prompt_eval_count") or 0), int(resp.get("eval_count") or 0))


def finish_reason(done_reason: str | None, *, tool_calls: bool) -> str:
    if done_reason == "length":
        return "length"
    return "tool_calls" if tool_calls else "stop"


def tool_call_from_ollama(call: Mapping[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    arguments = args if isinstance(args, str) else orjson.dumps(args or {}).decode()
    return {"id": call.get("id") or new_call_id(), "type": "function", "function": {"name": fn.get("name") or "", "arguments": arguments}}


def from_chat_response(resp: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """A final (``done: true``) ``/api/chat`` object → OpenAI ``chat.completion``."""
    msg = resp.get("message") or {}
    calls = [tool_call_from_ollama(c) for c in msg.get("tool_calls") or ()]
    content = msg.get("content") or ""
    message = assistant_message(content if content or not calls else None, calls)
    reason = finish_reason(resp.get("done_reason"), tool_calls=bool(calls))
    return chat_completion(new_completion_id(), resp.get("model") or model, [choice(0, message, reason)], usage_from_ollama(resp))
