"""Drives ragplane's /v1/chat/completions with the official `openai` Python client, streaming and
not, and prints what it received as one JSON object for the Rust test (tests/generation.rs) to
check. Exits non-zero when the client raises or the answers are malformed.

usage: python openai_client.py BASE_URL API_KEY COLLECTION
"""

import json
import sys

import openai


def main() -> None:
    base_url, api_key, collection = sys.argv[1:4]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)
    messages = [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "How far away can the Skerry Point light be seen?"},
    ]

    # Non-streaming: the collection is named by `model`.
    c = client.chat.completions.create(model=collection, messages=messages, max_tokens=12)
    extra = c.model_extra or {}
    plain = {
        "object": c.object,
        "model": c.model,
        "role": c.choices[0].message.role,
        "content": c.choices[0].message.content,
        "finish_reason": c.choices[0].finish_reason,
        "completion_tokens": c.usage.completion_tokens,
        "total_tokens": c.usage.total_tokens,
        "sources": extra.get("sources"),
    }

    # Streaming: the collection is named by the extra body field instead.
    stream = client.chat.completions.create(
        model="any-name",
        messages=messages,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"collection": collection},
    )
    deltas, finish, usage, sources, objects = [], None, None, None, set()
    for chunk in stream:
        objects.add(chunk.object)
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        for choice in chunk.choices:
            if choice.delta.content:
                deltas.append(choice.delta.content)
            if choice.finish_reason is not None:
                finish = choice.finish_reason
                sources = (chunk.model_extra or {}).get("sources")
    streamed = {
        "objects": sorted(objects),
        "deltas": len(deltas),
        "content": "".join(deltas),
        "finish_reason": finish,
        "completion_tokens": usage,
        "sources": sources,
    }

    # An unknown collection is an error the client raises as such.
    try:
        client.chat.completions.create(model="no-such-collection", messages=messages)
        missing = None
    except openai.NotFoundError as e:
        missing = e.status_code

    print(json.dumps({"plain": plain, "streamed": streamed, "missing": missing}))


if __name__ == "__main__":
    main()
