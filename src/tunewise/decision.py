"""The decision: start with prompting; recommend fine-tuning only when it is needed. Each reason cites numbers."""

from __future__ import annotations

from .costs import break_even
from .reports.format import money
from .reports.model import Decision, RunReport

TUNED = ("fine-tune", "hybrid")  # families answered by a trained model


class Decider:
    """The framework applied to one analysed run (arms, paired comparisons and costs already in the report)."""

    def __init__(self, report: RunReport):
        self.report = report
        self.metric = report.metric
        self.arms = {a.name: a for a in report.main_arms()}
        self.costs = report.costs
        target = report.config.get("target") or {}
        self.target = target.get("value") if target.get("metric", self.metric) == self.metric else None
        self.target_consistency = target.get("consistency")
        self.min_gain = target.get("min_gain", 0.02)
        self.volume = report.prices.get("requests_per_month", 0)
        self.currency = report.currency

    # -- lookups --------------------------------------------------------------
    def value(self, name: str) -> float:
        return self.arms[name].value(self.metric)

    def consistency(self, name: str) -> float | None:
        c = self.arms[name].summary.consistency
        return c.sample_agreement if c else None

    def diff(self, a: str, b: str):
        """The comparison of b against a (diff = b − a)."""
        return self.report.comparison(a, b)

    def better(self, a: str, b: str) -> bool:
        """b is significantly better than a, by at least the minimum gain."""
        c = self.diff(a, b)
        return bool(c and c.significant and c.diff >= self.min_gain)

    def non_inferior(self, a: str, b: str) -> bool:
        """b is at most min_gain worse than a, with 95% confidence (not merely 'not significantly worse')."""
        c = self.diff(a, b)
        return bool(c and c.low >= -self.min_gain)

    def monthly(self, name: str) -> float:
        return self.costs[name].monthly + self.costs[name].one_time / 12  # training paid over a year

    def cite(self, a: str, b: str) -> str:
        c = self.diff(a, b)
        return (f"{b} − {a} = {c.diff:+.3f} {self.metric} (95% CI {c.low:+.3f} to {c.high:+.3f}, "
                f"{c.test} p = {c.p:.3g}, Holm p = {c.p_holm:.3g})")

    # -- the framework ------------------------------------------------------------
    def decide(self) -> Decision:
        prompting = [n for n, a in self.arms.items() if a.family == "prompt"]
        tuned = [n for n, a in self.arms.items() if a.family in TUNED]
        if not prompting and not tuned:
            return Decision(recommended=None, kind=None, reasons=["No arm finished."])
        reasons: list[str] = []
        if not prompting:
            best = max(tuned, key=self.value)
            return self._result(best, "fine-tuning", [f"Only fine-tuned arms ran; {best} scores "
                                                       f"{self.value(best):.3f} {self.metric}."])
        best_prompt = max(prompting, key=self.value)
        choice = self._cheapest_tied(best_prompt, prompting)
        reasons.append(f"Start with prompting: the best prompting arm is {best_prompt} with {self.metric} "
                       f"{self.value(best_prompt):.3f} {self._ci(best_prompt)}.")
        costlier = [n for n in prompting if n != choice and (n == best_prompt or self.non_inferior(best_prompt, n))
                    and self.costs[n].per_1k > self.costs[choice].per_1k]
        if costlier:
            reasons.append(f"{choice} is the cheapest of the prompting arms that score alike, at "
                           f"{self._money(self.costs[choice].per_1k)} per 1,000 requests: " + "; ".join(
                               f"{n} is not significantly different ({self.cite(choice, n)}) and costs "
                               f"{self._money(self.costs[n].per_1k)}" for n in costlier) + ".")
        needs = self._needs_fine_tuning(choice, tuned)
        if not needs:
            reasons += self._why_prompting_suffices(choice, tuned)
            return self._result(choice, "prompting", reasons)
        winner, why = needs
        reasons += why
        return self._result(winner, "hybrid" if self.arms[winner].family == "hybrid" else "fine-tuning", reasons)

    def _cheapest_tied(self, best: str, candidates: list[str]) -> str:
        tied = [n for n in candidates if n == best or self.non_inferior(best, n)]
        return min(tied, key=lambda n: (self.costs[n].per_1k, -self.value(n)))

    def _needs_fine_tuning(self, prompt: str, tuned: list[str]) -> tuple[str, list[str]] | None:
        if not tuned:
            return None
        significant = [n for n in tuned if self.better(prompt, n)]
        meets_target = self.target is None or self.value(prompt) >= self.target
        consistent = (self.target_consistency is None or self.consistency(prompt) is None
                      or self.consistency(prompt) >= self.target_consistency)
        cheaper = [n for n in tuned if self.non_inferior(prompt, n) and self._cheaper_at_volume(n, prompt)]
        if significant:
            best = max(significant, key=self.value)
            best = self._cheapest_tied(best, significant)
            why = [f"{best} is significantly better than {prompt}: {self.cite(prompt, best)}, above the minimum "
                   f"gain of {self.min_gain:g}."]
            if not meets_target:
                why.append(f"Prompting misses the target {self.metric} {self.target:g} "
                           f"({prompt}: {self.value(prompt):.3f}); {best} scores {self.value(best):.3f}.")
            if not consistent:
                why.append(f"Prompting misses the consistency target {self.target_consistency:g} "
                           f"({prompt}: sample agreement {self.consistency(prompt):.3f}).")
            return best, why + self._cost_lines(best, prompt)
        if cheaper:
            best = min(cheaper, key=lambda n: self.monthly(n))
            return best, [f"{best} is no more than {self.min_gain:g} worse than {prompt} with 95% confidence "
                          f"({self.cite(prompt, best)}) and is "
                          f"cheaper at {self.volume:,} requests a month: {self._money(self.monthly(best))} against "
                          f"{self._money(self.monthly(prompt))} a month, training included."] + \
                self._cost_lines(best, prompt)
        return None

    def _cheaper_at_volume(self, tuned: str, prompt: str) -> bool:
        return self.monthly(tuned) < self.monthly(prompt)

    def _why_prompting_suffices(self, prompt: str, tuned: list[str]) -> list[str]:
        out = []
        if self.target is not None:
            out.append(f"{prompt} {'meets' if self.value(prompt) >= self.target else 'misses'} the target "
                       f"{self.metric} {self.target:g} ({self.value(prompt):.3f}).")
        for name in tuned:
            c = self.diff(prompt, name)
            if c:
                verdict = "not significantly better" if not c.significant or c.diff <= 0 else \
                    f"better by less than the minimum gain {self.min_gain:g}"
                out.append(f"{name} is {verdict}: {self.cite(prompt, name)}.")
        if not tuned:
            out.append("No fine-tuned arm ran: add a lora arm to see whether fine-tuning would pay.")
        return out

    def _cost_lines(self, tuned: str, prompt: str) -> list[str]:
        ct, cp = self.costs[tuned], self.costs[prompt]
        line = (f"Costs: {tuned} {self._money(ct.per_1k)} per 1,000 requests plus "
                f"{self._money(ct.one_time)} once for training; {prompt} {self._money(cp.per_1k)} per 1,000.")
        volume = break_even(ct, cp)
        if volume is not None:
            line += f" Training pays for itself after {volume:,.0f} requests."
        return [line]

    def _ci(self, name: str) -> str:
        m = self.arms[name].summary.metrics[self.metric]
        return f"(95% CI {m.low:.3f}–{m.high:.3f})"

    def _money(self, value: float) -> str:
        return money(value, self.currency)

    def _result(self, name: str, kind: str, reasons: list[str]) -> Decision:
        return Decision(recommended=name, kind=kind, metric=self.metric, value=self.value(name), reasons=reasons,
                        mistakes=self.mistakes(name))

    # -- common mistakes ------------------------------------------------------------
    def mistakes(self, chosen: str) -> list[str]:
        out = []
        prompting = [n for n, a in self.arms.items() if a.family == "prompt"]
        top = max(self.arms, key=self.value)
        if self.arms[top].family in TUNED and prompting:
            best_prompt = max(prompting, key=self.value)
            c = self.diff(best_prompt, top)
            if c and not c.significant:
                out.append(f"Fine-tuning without a significant gain: {top} leads by point estimate but "
                           f"{self.cite(best_prompt, top)}. Do not fine-tune for this difference.")
        second = sorted(self.arms, key=self.value, reverse=True)[1:2]
        if second:
            c = self.diff(second[0], top)
            if c and not c.significant and c.items_needed and c.items_needed > c.n:
                out.append(f"Too few test items to decide between {top} and {second[0]}: {c.n} items, about "
                           f"{c.items_needed:,} needed to detect a {abs(c.diff):.3f} difference.")
        for longer in prompting:
            for shorter in prompting:
                if self._longer_without_gain(shorter, longer):
                    out.append(f"A longer prompt with no gain: {longer} uses "
                               f"{self.arms[longer].summary.mean_input_tokens:.0f} input tokens against "
                               f"{self.arms[shorter].summary.mean_input_tokens:.0f} for {shorter}, and "
                               f"{self.cite(shorter, longer)}.")
        leak = (self.report.info.get("leakage") or {}).get("count", 0)
        if leak:
            out.append(f"Leakage between splits: {leak} test inputs also appear in train/dev; "
                       f"fine-tuned and few-shot scores may be inflated.")
        return out

    def _longer_without_gain(self, shorter: str, longer: str) -> bool:
        a, b = self.arms[shorter].summary, self.arms[longer].summary
        if shorter == longer or b.mean_input_tokens < 1.5 * a.mean_input_tokens:
            return False
        if self.arms[shorter].decoding != self.arms[longer].decoding:
            return False
        c = self.diff(shorter, longer)
        return bool(c and not (c.significant and c.diff > 0))


def decide(report: RunReport) -> Decision:
    """The recommendation for an analysed run: its arms, paired comparisons and costs."""
    return Decider(report).decide()
