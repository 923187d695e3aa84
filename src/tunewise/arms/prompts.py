"""Rendering a task into chat messages: instruction, context, output format, constraints, examples."""

from __future__ import annotations

from typing import Callable

from ..backends.base import Message
from ..task import Levers, Task
from ..task.data import Example

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


def build_messages(system: str | None, shots: list[Example], text: str,
                   answer: Callable[[Example], str] | None = None, layout: str = "turns") -> list[Message]:
    """System turn (if any), the examples, then the input. turns: one user/assistant pair per example (`answer`
    renders its answer); list: the examples written out in the input's own user message."""
    messages: list[Message] = []
    if system:
        messages.append({"role": "system", "content": system})
    render = answer or (lambda shot: shot.target_text)
    if layout == "list" and shots:
        listed = "\n\n".join(f"{shot.input}\nAnswer: {render(shot)}" for shot in shots)
        messages.append({"role": "user", "content": f"Examples:\n\n{listed}\n\nNow this one:\n{text}"})
        return messages
    for shot in shots:
        messages.append({"role": "user", "content": shot.input})
        messages.append({"role": "assistant", "content": render(shot)})
    messages.append({"role": "user", "content": text})
    return messages
