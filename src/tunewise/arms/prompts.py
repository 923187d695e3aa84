"""Rendering a task into chat messages: instruction, context, output format, constraints, examples."""

from __future__ import annotations

from typing import Callable

from ..backends.base import Message
from ..task import Levers, Task
from ..task.data import Example, transcript

ALL_OFF = Levers(context=False, output_format=False, constraints=False)


def default_output_format(task: Task, labels: list[str]) -> str | None:
    """The explicit output format used when the task file gives none."""
    if task.type == "classification":
        return f"Answer with exactly one word: {' or '.join(labels)}."
    if task.type == "extraction":
        keys = ", ".join(task.json_keys or [])
        return f"Answer with a single JSON object with the keys: {keys}. No other text."
    return None


def system_text(task: Task, labels: list[str], levers: Levers) -> str:
    """The instruction block; each lever adds its part."""
    parts = [task.instruction.strip()]
    if levers.context and task.context:
        parts.append(f"Context:\n{task.context.strip()}")
    if levers.output_format:
        fmt = task.output_format or default_output_format(task, labels)
        if fmt:
            parts.append(f"Output format: {fmt.strip()}")
    if levers.constraints and task.constraints:
        parts.append("Constraints:\n" + "\n".join(f"- {c.strip()}" for c in task.constraints))
    return "\n\n".join(parts)


def build_messages(system: str | None, shots: list[Example], example: Example | str,
                   answer: Callable[[Example], str] | None = None, layout: str = "turns") -> list[Message]:
    """System turn (if any), the examples, then the input: a text as one user turn, a conversation as its own
    turns (its system message, if any, follows the arm's in the system turn). turns: each example a
    user/assistant exchange (a conversation example: its turns, then its answer); list: the examples written
    out in the input's user message (before a conversation: in the system turn)."""
    render = answer or (lambda shot: shot.target_text)
    own_system, turns = split_system(example)
    listed = "\n\n".join(_written_out(shot, render) for shot in shots) if layout == "list" and shots else None
    conversation = isinstance(example, Example) and example.messages is not None
    examples_block = f"Examples:\n\n{listed}" if listed and conversation else None
    system = "\n\n".join(part for part in (system, own_system, examples_block) if part)
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    if listed and not conversation:
        messages.append({"role": "user", "content": f"Examples:\n\n{listed}\n\nNow this one:\n{turns[0]['content']}"})
        return messages
    for shot in shots if not listed else []:
        messages += split_system(shot)[1] + [{"role": "assistant", "content": render(shot)}]
    return messages + turns


def split_system(example: Example | str) -> tuple[str | None, list[Message]]:
    """An input's own system message (a conversation's) and its turns: a text is one user turn."""
    if isinstance(example, str):
        return None, [{"role": "user", "content": example}]
    if example.messages is None:
        return None, [{"role": "user", "content": example.input}]
    own = [m for m in example.messages if m["role"] == "system"]
    turns = [dict(m) for m in example.messages if m["role"] != "system"]
    return (own[0]["content"] if own else None), turns


def _written_out(shot: Example, render: Callable[[Example], str]) -> str:
    if shot.messages is None:
        return f"{shot.input}\nAnswer: {render(shot)}"
    turns = split_system(shot)[1]
    return transcript(turns + [{"role": "assistant", "content": render(shot)}])
