"""The judge: a model that scores answers against the user's rubric, or compares two arms' answers.

Guarded against the judge biases the literature names (Zheng et al., 2023, "Judging LLM-as-a-judge"):
position bias (a pair is asked in both orders; orders that disagree count as a tie), verbosity bias (each
arm's answer length is reported beside its score, with their rank correlation) and self-preference (the
runner warns when the judge is a judged arm's model). Its requests go through the store-cached backend like
any other, its raw answer and rationale are stored with every score, and its tokens and seconds are costed.
Where people scored some answers by hand, its rank correlation with them is measured before it is trusted.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ..backends.base import Backend, GenParams, GenRequest, Message
from ..task import Criterion, JudgeConfig, Task
from ..task.parsing import parse_json
from .metrics import resample_counts

SYSTEM = ("You are an impartial expert grader. Judge the answer only against the criteria given. Length is not "
          "a merit in itself: a longer answer is better only where the criteria ask for what it adds. Reply with "
          "one JSON object and nothing else.")


# -- prompts ---------------------------------------------------------------------------------
def rubric_messages(task: Task, criteria: list[Criterion], question: str, answer: str) -> list[Message]:
    lines = "\n".join(f"- {c.name} ({c.scale[0]} to {c.scale[1]}): {c.description.strip()}" for c in criteria)
    shape = ", ".join(f'"{c.name}": <{c.scale[0]}-{c.scale[1]}>' for c in criteria)
    user = (f"The task given to the model:\n{task.instruction.strip()}\n\nThe input:\n{question}\n\n"
            f"The answer to grade:\n<answer>\n{answer}\n</answer>\n\nScore the answer on each criterion:\n{lines}\n\n"
            f'Reply as {{"rationale": "<one or two sentences>", "scores": {{{shape}}}}}')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def pair_messages(task: Task, question: str, first: str, second: str) -> list[Message]:
    user = (f"The task given to two models:\n{task.instruction.strip()}\n\nThe input:\n{question}\n\n"
            f"Answer 1:\n<answer_1>\n{first}\n</answer_1>\n\nAnswer 2:\n<answer_2>\n{second}\n</answer_2>\n\n"
            f"Which answer fulfils the task better? The order they are shown in says nothing. "
            f'Reply as {{"rationale": "<one or two sentences>", "winner": "1" | "2" | "tie"}}')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


# -- reading the judge's answers -----------------------------------------------------------------
def parse_rubric(raw: str, criteria: list[Criterion]) -> tuple[dict[str, int] | None, str]:
    """Each criterion's score and the rationale; None when a score is missing or off its scale."""
    found = parse_json(raw) or {}
    table = found.get("scores") if isinstance(found.get("scores"), dict) else found
    scores = {}
    for c in criteria:
        value = table.get(c.name)
        if value is None:  # not JSON: "clarity: 4" or "Clarity - 4/5"
            match = re.search(rf"{re.escape(c.name)}\W{{0,4}}(-?\d+(?:\.\d+)?)", raw, re.I)
            value = match.group(1) if match else None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None, _rationale(found, raw)
        if not c.scale[0] <= number <= c.scale[1]:
            return None, _rationale(found, raw)
        scores[c.name] = number
    return scores, _rationale(found, raw)


def _rationale(found: dict, raw: str) -> str:
    text = found.get("rationale") if isinstance(found.get("rationale"), str) else None
    return (text or raw).strip()


def rubric_score(scores: dict[str, float] | None, criteria: list[Criterion]) -> float | None:
    """The mean over criteria of each score placed on 0..1 by its scale."""
    if scores is None:
        return None
    return float(np.mean([(scores[c.name] - c.scale[0]) / (c.scale[1] - c.scale[0]) for c in criteria]))


def parse_winner(raw: str) -> str | None:
    """"1", "2" or "tie" as the judge stated it; None when it stated none."""
    found = parse_json(raw) or {}
    value = str(found.get("winner", "")).strip().lower().removeprefix("answer").strip()
    if value in ("1", "2", "tie"):
        return value
    match = re.search(r"\b(?:winner\W+(?:answer\s*)?|answer\s*)([12])\b|\b(tie)\b", raw, re.I)
    if match:
        return (match.group(1) or match.group(2)).lower()
    return None


# -- statistics ------------------------------------------------------------------------------------
def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their mean rank."""
    order = np.argsort(values, kind="mergesort")
    out = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        out[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation; None when either side is constant or there are fewer than 3 pairs."""
    if len(x) < 3:
        return None
    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial test of wins against losses (ties left out)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


# -- the judge ----------------------------------------------------------------------------------------
class Judge:
    def __init__(self, config: JudgeConfig, task: Task, backend: Backend):
        self.config, self.task, self.backend = config, task, backend
        self.params = GenParams(config.max_tokens, 0.0, (), task.generation.seed)

    def _ask(self, prompts: list[list[Message]]) -> tuple[list[str], dict[str, float]]:
        """The judge's raw answers, and what they cost."""
        answers = self.backend.generate([GenRequest(m, self.params) for m in prompts]) if prompts else []
        usage = {"calls": len(answers), "cached": sum(a.cached for a in answers),
                 "input_tokens": sum(a.input_tokens for a in answers),
                 "output_tokens": sum(a.output_tokens for a in answers),
                 "seconds": sum(a.latency_s for a in answers if not a.cached)}
        return [a.text for a in answers], usage

    def score_rows(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Score each stored prediction row on the rubric: the score goes to scores["rubric"], the judge's raw
        answer, rationale and criterion scores to extra["judge"]. Returns the usage and the length check."""
        criteria = self.config.rubric
        raws, usage = self._ask([rubric_messages(self.task, criteria, r["input"], r["raw"]) for r in rows])
        for row, raw in zip(rows, raws):
            scores, rationale = parse_rubric(raw, criteria)
            row["scores"]["rubric"] = rubric_score(scores, criteria)
            row["extra"] = dict(row.get("extra") or {}, judge={"raw": raw, "rationale": rationale, "scores": scores})
        words = [len(r["raw"].split()) for r in rows]
        given = [(w, r["scores"]["rubric"]) for w, r in zip(words, rows) if r["scores"]["rubric"] is not None]
        return dict(usage, unparsed=sum(r["scores"]["rubric"] is None for r in rows),
                    mean_words=float(np.mean(words)) if words else 0.0,
                    length_correlation=spearman([w for w, _ in given], [s for _, s in given]))

    def compare(self, a: str, b: str, rows_a: list[dict], rows_b: list[dict], seed: int = 0) -> dict[str, Any]:
        """Arm b against arm a on the items both answered, each asked in both orders."""
        by_id = {r["example_id"]: r for r in rows_b}
        pairs = [(r, by_id[r["example_id"]]) for r in rows_a if r["example_id"] in by_id]
        prompts = []
        for ra, rb in pairs:
            prompts.append(pair_messages(self.task, ra["input"], ra["raw"], rb["raw"]))  # a shown first
            prompts.append(pair_messages(self.task, ra["input"], rb["raw"], ra["raw"]))  # b shown first
        raws, usage = self._ask(prompts)
        items = []
        for i, (ra, _) in enumerate(pairs):
            first, second = parse_winner(raws[2 * i]), parse_winner(raws[2 * i + 1])
            a_first = {"1": a, "2": b}.get(first or "", "tie")
            b_first = {"1": b, "2": a}.get(second or "", "tie")
            items.append({"example_id": ra["example_id"], "a_first": a_first, "b_first": b_first,
                          "winner": a_first if a_first == b_first else "tie",
                          "raw": [raws[2 * i], raws[2 * i + 1]]})
        return dict(pair_summary(a, b, items, seed), items=items, usage=usage)

    def agreement(self, examples) -> dict[str, Any]:
        """The judge's scores of the answers people scored, and its rank correlation with them."""
        scored = [e for e in examples if e.human is not None]
        criteria = self.config.rubric
        raws, usage = self._ask([rubric_messages(self.task, criteria, e.input, e.human[0]) for e in scored])
        items = []
        for e, raw in zip(scored, raws):
            scores, rationale = parse_rubric(raw, criteria)
            items.append({"example_id": e.id, "human": e.human[1], "judge": rubric_score(scores, criteria),
                          "raw": raw, "rationale": rationale})
        both = [(i["human"], i["judge"]) for i in items if i["judge"] is not None]
        rho = spearman([h for h, _ in both], [j for _, j in both])
        return {"n": len(items), "scored": len(both), "spearman": rho, "min_agreement": self.config.min_agreement,
                "trusted": rho is not None and rho >= self.config.min_agreement, "items": items, "usage": usage}


def pair_summary(a: str, b: str, items: list[dict], seed: int = 0) -> dict[str, Any]:
    """Wins, ties, the orders that disagreed, b's win rate (a tie half a win) with a 95% bootstrap interval,
    and the sign test of b's wins against a's."""
    wins_a = sum(i["winner"] == a for i in items)
    wins_b = sum(i["winner"] == b for i in items)
    flips = sum(i["a_first"] != i["b_first"] for i in items)
    outcome = np.array([1.0 if i["winner"] == b else 0.0 if i["winner"] == a else 0.5 for i in items])
    low = high = rate = None
    if len(items):
        rate = float(outcome.mean())
        boot = resample_counts(len(items), 1000, seed) @ outcome / len(items)
        low, high = float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))
    return {"a": a, "b": b, "n": len(items), "wins_a": wins_a, "wins_b": wins_b, "ties": len(items) - wins_a - wins_b,
            "order_disagreements": flips, "win_rate_b": rate, "low": low, "high": high,
            "p_value": sign_test(wins_b, wins_a)}
