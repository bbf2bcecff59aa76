"""Pure translation between OpenAI chat completions and Gemini's generateContent.

Wire format: https://ai.google.dev/api/generate-content (request, GenerateContentResponse,
FinishReason, UsageMetadata) and https://ai.google.dev/gemini-api/docs/function-calling
(functionDeclarations, functionCall, functionResponse, toolConfig). No I/O here.

Rules worth knowing:
* roles are ``user`` and ``model``; system prompts go to ``systemInstruction``;
* a tool result is a ``functionResponse`` part naming the *function*, not the call id,
  so the name is looked up from the assistant turn that made the call;
* tool parameters use Gemini's OpenAPI-subset ``Schema``: keys it rejects are dropped;
* Gemini's thought signatures ride on tool calls as ``extra_content.google.thought_signature``
  (the convention of Google's own OpenAI-compatible endpoint) so they survive a round trip.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Mapping

import orjson

from gateway.errors import GatewayError

from .schema import to_gemini_schema

__all__ = ["to_generate_request", "from_generate_response", "usage_from_gemini", "finish_reason", "function_call_to_tool_call"]

_FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE"}


def _invalid(message: str, param: str | None = "messages") -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def finish_reason(reason: str | None, *, tool_calls: bool) -> str:
    """Gemini FinishReason → OpenAI finish_reason (STOP with function calls means tool_calls)."""
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if tool_calls else "stop"


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return "" if content is None else str(content)


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _invalid("message content must be a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = str((image.get("url") if isinstance(image, Mapping) else image) or "")
            header, sep, data = url.partition(",")
            if not (url.startswith("data:") and sep and ";base64" in header):
                raise _invalid("gemini takes images inline: use a data:<media-type>;base64,<data> URL")
            parts.append({"inlineData": {"mimeType": header[5:].split(";", 1)[0], "data": data}})
        else:
            raise _invalid(f"content part type {kind!r} is not supported by gemini")
    return parts


def _function_call_part(tool_call: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool_call.get("function") or {}
    raw = fn.get("arguments") or "{}"
    try:
        args = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except orjson.JSONDecodeError:
        raise _invalid(f"tool call {tool_call.get('id')!r} has arguments that are not JSON") from None
    part: dict[str, Any] = {"functionCall": {"name": fn.get("name") or "", "args": args if isinstance(args, dict) else {}}}
    google = (tool_call.get("extra_content") or {}).get("google") or {}
    if google.get("thought_signature"):
        part["thoughtSignature"] = google["thought_signature"]
    return part


def _function_response_part(message: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    name = names.get(str(message.get("tool_call_id"))) or message.get("name")
    if not name:
        raise _invalid(f"tool message {message.get('tool_call_id')!r} answers no tool call of an earlier assistant message")
    text = _text_of(message.get("content"))
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"result": text}
    return {"functionResponse": {"name": name, "response": response}}


def _contents(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, from assistant turns

    def append(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:  # parallel tool results belong in one turn
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise _invalid(f"messages[{i}] must be an object")
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend({"text": t} for t in [_text_of(m.get("content"))] if t)
        elif role == "user":
            append("user", _parts(m.get("content")))
        elif role == "assistant":
            parts = _parts(m.get("content") if isinstance(m.get("content"), (str, type(None))) else _text_of(m.get("content")))
            for tc in m.get("tool_calls") or ():
                names[str(tc.get("id"))] = (tc.get("function") or {}).get("name") or ""
                parts.append(_function_call_part(tc))
            append("model", parts)
        elif role in ("tool", "function"):
            append("user", [_function_response_part(m, names)])
        else:
            raise _invalid(f"messages[{i}].role {role!r} is not supported")
    return system, contents


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return {"functionCallingConfig": {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}}
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}}
    raise _invalid(f"tool_choice {choice!r} is not supported", "tool_choice")


def _generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
                         ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        if body.get(ours) is not None:
            cfg[theirs] = body[ours]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        cfg["maxOutputTokens"] = int(max_tokens)
    stop = body.get("stop")
    if stop:
        cfg["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if (body.get("n") or 1) != 1:
        cfg["candidateCount"] = int(body["n"])
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        cfg["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            cfg["responseSchema"] = to_gemini_schema(schema)
    return cfg


def to_generate_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI chat request → Gemini ``models/{model}:generateContent`` body (the model goes in the URL)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages must be a non-empty list")
    system, contents = _contents(messages)
    req: dict[str, Any] = {"contents": contents}
    if system:
        req["systemInstruction"] = {"parts": system}
    if body.get("tools"):
        decls = []
        for t in body["tools"]:
            fn = t.get("function") if isinstance(t, Mapping) else None
            if not isinstance(fn, Mapping) or not fn.get("name"):
                raise _invalid("each tool must be {type: function, function: {name, parameters}}", "tools")
            decl: dict[str, Any] = {"name": fn["name"]}
            if fn.get("description"):
                decl["description"] = fn["description"]
            if fn.get("parameters") and (fn["parameters"].get("properties") or fn["parameters"].get("type") != "object"):
                decl["parameters"] = to_gemini_schema(fn["parameters"])
            decls.append(decl)
        req["tools"] = [{"functionDeclarations": decls}]
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config:
            req["toolConfig"] = tool_config
    cfg = _generation_config(body)
    if cfg:
        req["generationConfig"] = cfg
    return req


def usage_from_gemini(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """UsageMetadata → OpenAI usage. Thinking tokens are billed as output, as OpenAI's reasoning tokens are."""
    meta = meta or {}
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if meta.get("cachedContentTokenCount"):
        out["prompt_tokens_details"] = {"cached_tokens": int(meta["cachedContentTokenCount"])}
    if thoughts:
        out["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return out


def function_call_to_tool_call(part: Mapping[str, Any]) -> dict[str, Any]:
    fc = part["functionCall"]
    call: dict[str, Any] = {
        "id": fc.get("id") or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": fc.get("name") or "", "arguments": orjson.dumps(fc.get("args") or {}).decode()},
    }
    if part.get("thoughtSignature"):
        call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return call


def from_generate_response(resp: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """GenerateContentResponse → OpenAI ``chat.completion`` (one choice per candidate)."""
    choices = []
    for pos, cand in enumerate(resp.get("candidates") or ()):
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in (cand.get("content") or {}).get("parts") or ():
            if "functionCall" in part:
                calls.append(function_call_to_tool_call(part))
            elif part.get("text") and not part.get("thought"):  # thought summaries are not the answer
                texts.append(part["text"])
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
        if calls:
            message["tool_calls"] = calls
        reason = finish_reason(cand.get("finishReason"), tool_calls=bool(calls))
        choices.append({"index": cand.get("index", pos), "message": message, "finish_reason": reason, "logprobs": None})
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason)
        choices.append({"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "content_filter", "logprobs": None})
    return {
        "id": resp.get("responseId") or f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": resp.get("modelVersion") or model,
        "choices": choices,
        "usage": usage_from_gemini(resp.get("usageMetadata")),
    }
