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

from typing import Any, Mapping

import orjson

from .._common import (
    assistant_message, chat_completion, chat_messages, choice, inline_image, invalid, new_call_id, new_completion_id,
    sampling_params, text_of, tool_call_arguments, tool_functions,
)
from .schema import to_gemini_schema

__all__ = ["to_generate_request", "from_generate_response", "usage_from_gemini", "finish_reason", "function_call_to_tool_call"]

_SAMPLING = (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
             ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"))
_FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE"}


def finish_reason(reason: str | None, *, tool_calls: bool) -> str:
    """Gemini FinishReason → OpenAI finish_reason (STOP with function calls means tool_calls)."""
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if tool_calls else "stop"


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise invalid("message content must be a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            media_type, data = inline_image(part, "gemini")
            parts.append({"inlineData": {"mimeType": media_type, "data": data}})
        else:
            raise invalid(f"content part type {kind!r} is not supported by gemini")
    return parts


def _function_call_part(tool_call: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool_call.get("function") or {}
    args = tool_call_arguments(tool_call)
    part: dict[str, Any] = {"functionCall": {"name": fn.get("name") or "", "args": args if isinstance(args, dict) else {}}}
    google = (tool_call.get("extra_content") or {}).get("google") or {}
    if google.get("thought_signature"):
        part["thoughtSignature"] = google["thought_signature"]
    return part


def _function_response_part(message: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    name = names.get(str(message.get("tool_call_id"))) or message.get("name")
    if not name:
        raise invalid(f"tool message {message.get('tool_call_id')!r} answers no tool call of an earlier assistant message")
    text = text_of(message.get("content"))
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
            raise invalid(f"messages[{i}] must be an object")
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend({"text": t} for t in [text_of(m.get("content"))] if t)
        elif role == "user":
            append("user", _parts(m.get("content")))
        elif role == "assistant":
            parts = _parts(m.get("content") if isinstance(m.get("content"), (str, type(None))) else text_of(m.get("content")))
            for tc in m.get("tool_calls") or ():
                names[str(tc.get("id"))] = (tc.get("function") or {}).get("name") or ""
                parts.append(_function_call_part(tc))
            append("model", parts)
        elif role in ("tool", "function"):
            append("user", [_function_response_part(m, names)])
        else:
            raise invalid(f"messages[{i}].role {role!r} is not supported")
    return system, contents


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return {"functionCallingConfig": {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}}
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}}
    raise invalid(f"tool_choice {choice!r} is not supported", "tool_choice")


def _generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    cfg = sampling_params(body, _SAMPLING, max_tokens="maxOutputTokens", stop="stopSequences")
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
    system, contents = _contents(chat_messages(body))
    req: dict[str, Any] = {"contents": contents}
    if system:
        req["systemInstruction"] = {"parts": system}
    if body.get("tools"):
        decls = []
        for fn in tool_functions(body["tools"]):
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
        "id": fc.get("id") or new_call_id(),
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
        message = assistant_message("".join(texts) if texts or not calls else None, calls)
        choices.append(choice(cand.get("index", pos), message, finish_reason(cand.get("finishReason"), tool_calls=bool(calls))))
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason)
        choices.append(choice(0, assistant_message("", []), "content_filter"))
    cid = resp.get("responseId") or new_completion_id()
    return chat_completion(cid, resp.get("modelVersion") or model, choices, usage_from_gemini(resp.get("usageMetadata")))
