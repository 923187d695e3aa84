"""The decision: start with prompting; recommend fine-tuning only when it is needed. Each reason cites numbers.

One set of facts (the `Evidence`: each arm's decision metric and the paired comparisons, on all test
items or on the clean ones when inputs leaked) feeds the recommendation, its reasons and the mistakes,
so a warning never condemns the arm that is recommended.
"""

from __future__ import annotations

from .costs import break_even, money
from .curves import extrapolate
from .model import Decision, Evidence, MetricValue, Mistake, RunReport

COST_NOISE = 1.1                 # measured seconds vary about ±10%: closer costs are not a difference
LEAK_SHARE = 0.05                # above this share of leaked test items the clean items decide
MIN_CLEAN = 20                   # fewer clean items than this cannot carry a verdict
KINDS = {"prompt": "prompting",  # how the verdict names each family
         "fine-tune": "fine-tuning", "hybrid": "hybrid", "retrieval": "retrieval"}


def evidence(report: RunReport) -> tuple[Evidence | None, str | None]:
    """The facts the verdict uses, and why it uses the clean subset (or withholds one: evidence None)."""
    main = report.main_arms()
    n = main[0].summary.n if main else 0
    everything = Evidence(basis=f"all {n} test items", n=n,
                          values={a.name: a.summary.metrics[report.metric] for a in main},
                          comparisons=report.comparisons)
    if report.stability is not None:
        everything = report.stability.pooled  # re-splits: every seed's answers decide together
    leak = report.info.get("leakage") or {}
    total = leak.get("test_items") or everything.n
    if not report.leaked or not total or report.leaked / total <= LEAK_SHARE:
        return everything, None
    note = f"{report.leaked} of {total} test inputs also occur in train/dev"
    if report.clean is not None and report.clean.n >= MIN_CLEAN:
        return report.clean, f"Decided on {report.clean.basis}: {note}, and scores on those measure recall."
    return None, note


class Decider:
    """The framework applied to one analysed run."""

    def __init__(self, report: RunReport, facts: Evidence):
        self.report, self.facts = report, facts
        self.metric = report.metric
        self.arms = {a.name: a for a in report.main_arms() if a.name in facts.values
                     and facts.values[a.name].value is not None}
        self.costs = report.costs
        target = report.config.get("target") or {}
        self.target = target.get("value")
        self.target_consistency = target.get("consistency")
        self.min_gain = target.get("min_gain", 0.02)
        self.volume = report.prices.get("requests_per_month")  # None: the task states no volume
        self.currency = report.currency

    # -- lookups --------------------------------------------------------------
    def value(self, name: str) -> float:
        return self.facts.values[name].value

    def interval(self, name: str) -> MetricValue:
        return self.facts.values[name]

    def consistency(self, name: str) -> float | None:
        c = self.arms[name].summary.consistency
        return c.sample_agreement if c else None

    def diff(self, a: str, b: str):
        """The comparison of b against a (diff = b − a)."""
        return self.facts.comparison(a, b)

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

    # -- citations: every number a reason gives comes from here -------------------------
    def score(self, name: str) -> str:
        m = self.interval(name)
        return f"{name} ({self.metric} {m.value:.3f}, 95% CI {ci_text(m)})"

    def cite(self, a: str, b: str) -> str:
        c = self.diff(a, b)
        return (f"{b} − {a} = {c.diff:+.3f} {self.metric} (95% CI {c.low:+.3f} to {c.high:+.3f}, "
                f"{c.test} p = {c.p:.3g}, Holm p = {c.p_holm:.3g})")

    def _money(self, value: float) -> str:
        return money(value, self.currency)

    # -- the framework ------------------------------------------------------------
    def decide(self, note: str | None) -> Decision:
        prompting = [n for n, a in self.arms.items() if a.traits.prompting]
        tuned = [n for n, a in self.arms.items() if a.traits.trains_weights]
        if not self.arms:
            return self._result(None, None, ["No arm finished."])
        reasons = [note] if note else []
        if not prompting:
            best = max(tuned, key=self.value)
            winner, kind = best, KINDS[self.arms[best].family]
            reasons.append(f"Only fine-tuned arms ran; the best is {self.score(best)}.")
        else:
            winner, kind, why = self._framework(prompting, tuned)
            reasons += why + self._uneven_effort(prompting, tuned)
        if self._nothing_meets_target():
            return self._nothing(reasons)
        reasons += self._distance(winner)
        return self._result(winner, kind, reasons)

    def _framework(self, prompting: list[str], tuned: list[str]) -> tuple[str, str, list[str]]:
        best_prompt = max(prompting, key=self.value)
        choice = self._cheapest_tied(best_prompt, prompting)
        reasons = [f"Start with prompting: the best prompting arm is {self.score(best_prompt)}."]
        costlier = [n for n in prompting if n != choice and (n == best_prompt or self.non_inferior(best_prompt, n))
                    and self.costs[n].per_1k > COST_NOISE * self.costs[choice].per_1k]
        if costlier:
            reasons.append(f"{choice} is the cheapest of the prompting arms that score alike (costs within the ±10% "
                           f"that timings vary count as equal), at "
                           f"{self._money(self.costs[choice].per_1k)} per 1,000 requests: " + "; ".join(
                               f"{n} is not significantly different ({self.cite(choice, n)}) and costs "
                               f"{self._money(self.costs[n].per_1k)}" for n in costlier) + ".")
        needs = self._needs_fine_tuning(choice, tuned)
        if not needs:
            return choice, KINDS[self.arms[choice].family], reasons + self._why_prompting_suffices(choice, tuned)
        winner, why = needs
        return winner, KINDS[self.arms[winner].family], reasons + why

    def _cheapest_tied(self, best: str, candidates: list[str]) -> str:
        """Among the arms no worse than `best`, the cheapest; costs within the timing noise count as equal,
        and then the better score decides."""
        tied = [n for n in candidates if n == best or self.non_inferior(best, n)]
        floor = min(self.costs[n].per_1k for n in tied)
        cheap = [n for n in tied if self.costs[n].per_1k <= COST_NOISE * floor]
        return max(cheap, key=lambda n: (self.value(n), -self.costs[n].per_1k))

    def _needs_fine_tuning(self, prompt: str, tuned: list[str]) -> tuple[str, list[str]] | None:
        if not tuned:
            return None
        significant = [n for n in tuned if self.better(prompt, n)]
        if significant:
            best = self._cheapest_tied(max(significant, key=self.value), significant)
            why = [f"{best} is significantly better than {prompt}: {self.cite(prompt, best)}, above the minimum "
                   f"gain of {self.min_gain:g}."]
            if self.target is not None and self.value(prompt) < self.target:
                why.append(f"Prompting misses the target {self.metric} {self.target:g}: {self.score(prompt)}; "
                           f"{self.score(best)}.")
            consistency = self.consistency(prompt)
            if self.target_consistency is not None and consistency is not None \
                    and consistency < self.target_consistency:
                why.append(f"Prompting misses the consistency target {self.target_consistency:g} "
                           f"({prompt}: sample agreement {consistency:.3f}).")
            return best, why + self._cost_lines(best, prompt)
        if self.volume is None:
            return None  # with no stated volume, cost never tips the verdict
        cheaper = [n for n in tuned if self.non_inferior(prompt, n) and self.monthly(n) < self.monthly(prompt)]
        if not cheaper:
            return None
        best = min(cheaper, key=self.monthly)
        return best, [f"Fine-tuning wins on cost alone: {best} is not better than {prompt} but no more than "
                      f"{self.min_gain:g} worse with 95% confidence ({self.cite(prompt, best)}), and at the stated "
                      f"{self.volume:,} requests a month it costs {self._money(self.monthly(best))} against "
                      f"{self._money(self.monthly(prompt))}, training included."] + self._cost_lines(best, prompt)

    def _why_prompting_suffices(self, prompt: str, tuned: list[str]) -> list[str]:
        out = []
        if self.target is not None:
            out.append(f"{prompt} {'meets' if self.value(prompt) >= self.target else 'misses'} the target "
                       f"{self.metric} {self.target:g}: {self.score(prompt)}.")
        for name in tuned:
            c = self.diff(prompt, name)
            if c:
                if c.significant and c.diff < 0:
                    verdict = "significantly worse"
                elif not c.significant or c.diff <= 0:
                    verdict = "not significantly better"
                else:
                    verdict = f"better by less than the minimum gain {self.min_gain:g}"
                out.append(f"{name} is {verdict}: {self.cite(prompt, name)}.")
        out += self._unstated_volume(prompt, tuned)
        if not tuned:
            out.append("No fine-tuned arm ran: add a lora arm to see whether fine-tuning would pay.")
        return out

    def _unstated_volume(self, prompt: str, tuned: list[str]) -> list[str]:
        """A tuned arm that would be cheaper per request: said, but left out of the verdict without a volume."""
        if self.volume is not None:
            return []
        out = []
        for name in tuned:
            volume = break_even(self.costs[name], self.costs[prompt])
            if volume is not None and self.non_inferior(prompt, name):
                out.append(f"{name} costs less per request ({self._money(self.costs[name].per_1k)} against "
                           f"{self._money(self.costs[prompt].per_1k)} per 1,000) and pays back its training after "
                           f"{volume:,.0f} requests; the task states no volume (prices.requests_per_month), so "
                           f"cost did not decide.")
        return out

    def _cost_lines(self, tuned: str, prompt: str) -> list[str]:
        ct, cp = self.costs[tuned], self.costs[prompt]
        line = (f"Costs: {tuned} {self._money(ct.per_1k)} per 1,000 requests plus "
                f"{self._money(ct.one_time)} once for training; {prompt} {self._money(cp.per_1k)} per 1,000.")
        volume = break_even(ct, cp)
        line += f" Training pays for itself after {volume:,.0f} requests." if volume is not None else \
            " Training never pays for itself: the tuned arm costs no less per request."
        return [line]

    # -- when no arm is good enough -----------------------------------------------------
    def _nothing_meets_target(self) -> bool:
        return self.target is not None and all(
            self.interval(n).high is not None and self.interval(n).high < self.target for n in self.arms)

    def _nothing(self, reasons: list[str]) -> Decision:
        closest = max(self.arms, key=self.value)
        reasons = reasons + [
            f"No arm meets the target {self.metric} {self.target:g}: every arm's 95% interval lies below it. "
            f"The closest is {self.score(closest)}, {self.target - self.value(closest):.3f} short."]
        return self._result(None, "nothing meets the target", reasons, closest=closest,
                            next_steps=next_steps(self.report, self.target))

    def _distance(self, winner: str) -> list[str]:
        """How good the winner is, in numbers, so a weak winner is never taken for a good one."""
        if self.target is not None:
            return []
        rest = sorted((n for n in self.arms if n != winner), key=self.value, reverse=True)
        line = f"{winner} is {1 - self.value(winner):.3f} short of a perfect {self.metric} (1.0)"
        if rest:
            gap = self.value(winner) - self.value(rest[0])
            line += (f"; the next best arm, {rest[0]}, is {gap:.3f} behind" if gap >= 0 else
                     f"; {rest[0]} scores {-gap:.3f} more, a difference the reasons above weigh")
        return [line + ". Set a target to have the verdict say whether that is good enough."]

    def _result(self, name: str | None, kind: str | None, reasons: list[str], closest: str | None = None,
                next_steps: list[str] | None = None) -> Decision:
        mistakes = self.mistakes() + (self._not_searched() if kind in ("fine-tuning", "hybrid") else [])
        mistakes += self._no_hybrid() if kind == "fine-tuning" else []
        mistakes += self._tuning_not_searched() if kind in ("prompting", "retrieval", None) else []
        return Decision(recommended=name, kind=kind, metric=self.metric, metric_why=self.report.metric_why,
                        basis=self.facts.basis, value=self.value(name) if name else None, closest=closest,
                        reasons=reasons, next_steps=next_steps or [],
                        mistakes=[m for m in mistakes if name not in m.against])

    # -- common mistakes ------------------------------------------------------------
    def mistakes(self) -> list[Mistake]:
        if not self.arms:
            return []
        out = self._tuned_without_gain() + self._too_few_items() + self._mismatched_hybrids()
        prompting = [n for n, a in self.arms.items() if a.traits.prompting]
        for longer in prompting:
            out += self._longer_prompt(longer, prompting)
        if self.report.leaked:
            out.append(Mistake(kind="leakage", text=(
                f"Leakage between splits: {self.report.leaked} test inputs also appear in train/dev; scores on them "
                f"measure recall of seen inputs. Keep related inputs in one split: splits: {{group_by: FIELD}} or "
                f"{{dedupe: true}}.")))
        return out

    def _no_hybrid(self) -> list[Mistake]:
        """Fine-tuning recommended and no hybrid tried: the combination the framework advises most often."""
        if any(a.traits.hybrid for a in self.arms.values()):
            return []
        tuned = next((n for n, a in self.arms.items() if a.traits.fine_tune), None)
        prompt = next((n for n, a in self.arms.items() if a.traits.prompting), None)
        if tuned is None or prompt is None:
            return []
        return [Mistake(kind="no hybrid", text=(
            f"Hybrids were not tried: a fine-tuned model asked with the task's instructions often does best. Add "
            f"{{type: hybrid, tuned: {tuned}, prompt: {prompt}}}; it trains with that prompt, as it is asked."))]

    def _mismatched_hybrids(self) -> list[Mistake]:
        """A hybrid whose adapter never saw its prompt (training: plain) and that trails that adapter alone."""
        out = []
        for c in self.report.contributions:
            weights = next((p for p in c.parts if p.role == "weights alone"), None)
            if c.training != "plain" or weights is None or c.hybrid not in self.arms or weights.arm not in self.arms:
                continue
            if weights.significant and (weights.gain or 0) < 0:
                out.append(Mistake(kind="train/serve mismatch", against=[c.hybrid], text=(
                    f"A train/serve mismatch: {c.hybrid} asks {weights.arm}'s adapter, trained on the bare input, "
                    f"with a prompt it never saw, and {self.cite(weights.arm, c.hybrid)}. Train the hybrid with "
                    f"its prompt (training: matched, the default).")))
        return out

    def _not_searched(self) -> list[Mistake]:
        """Fine-tuning recommended against hand-written prompts only: say what a search would cost."""
        if any(a.traits.searches for a in self.arms.values()):
            return []
        prompting = [n for n, a in self.arms.items() if a.traits.prompting]
        if not prompting:
            return []
        best = max(prompting, key=self.value)
        rate = self.arms[best].summary.examples_per_s or 0
        cost = f", about {30 * 60 / rate / 60:.0f} min at {best}'s measured {rate:.1f} items/s" if rate else ""
        return [Mistake(kind="prompting not searched", text=(
            f"Prompting was not searched: fine-tuning is compared with hand-written prompts only. Add an arm "
            f"{{type: searched}} (by default 30 trials on 60 dev items{cost}) before paying for training."))]

    def _uneven_effort(self, prompting: list[str], tuned: list[str]) -> list[str]:
        """When one side was searched and the other was not, the verdict compares unequal efforts: say so."""
        if not tuned:
            return []
        effort = self.report.effort
        prompt, weights = max(prompting, key=self.value), max(tuned, key=self.value)
        a, b = effort.get(prompt), effort.get(weights)
        if a is None or b is None or a.searched == b.searched:
            return []
        searched, other = (prompt, weights) if a.searched else (weights, prompt)
        s, o = effort[searched], effort[other]
        return [f"The two sides received unequal effort: {searched} was searched ({s.trials} trials, "
                f"{s.dev_answers:,} dev answers, {s.seconds:,.0f} s) and {other} was not ({o.how}"
                + (f", {o.seconds:,.0f} s" if o.seconds else "") + "); read the comparison with that in mind."]

    def _tuning_not_searched(self) -> list[Mistake]:
        """Prompting recommended after a search, against fine-tuning with one fixed recipe: the mirror image of
        prompting not searched."""
        effort = self.report.effort
        tuned = [n for n, a in self.arms.items() if a.traits.fine_tune]
        prompting = [n for n, a in self.arms.items() if a.traits.prompting]
        if not tuned or not prompting or any(effort.get(n) and effort[n].searched for n in tuned):
            return []
        if not any(effort.get(n) and effort[n].searched for n in prompting):
            return []
        best = max(tuned, key=self.value)
        return [Mistake(kind="fine-tuning not searched", text=(
            f"Fine-tuning was not searched: the prompts were searched on dev, while {best} trained once with fixed "
            f"settings. Give it a search (search: {{trials: 6, learning_rate: [5e-4, 1e-3, 2e-3], epochs: [1, 2]}}) "
            f"before concluding that prompting suffices."))]

    def _tuned_without_gain(self) -> list[Mistake]:
        prompting = [n for n, a in self.arms.items() if a.traits.prompting]
        top = max(self.arms, key=self.value)
        if not self.arms[top].traits.trains_weights or not prompting:
            return []
        best_prompt = max(prompting, key=self.value)
        c = self.diff(best_prompt, top)
        if not c or c.significant:
            return []
        return [Mistake(kind="fine-tuning without gain", against=[top], text=(
            f"Fine-tuning without a significant gain: {top} leads by point estimate but "
            f"{self.cite(best_prompt, top)}. Do not fine-tune for this difference."))]

    def _too_few_items(self) -> list[Mistake]:
        ranked = sorted(self.arms, key=self.value, reverse=True)
        if len(ranked) < 2:
            return []
        c = self.diff(ranked[1], ranked[0])
        if not (c and not c.significant and c.items_needed and c.items_needed > c.n):
            return []
        return [Mistake(kind="too few items", text=(
            f"Too few test items to decide between {ranked[0]} and {ranked[1]}: {c.n} items, about "
            f"{c.items_needed:,} needed to detect a {abs(c.diff):.3f} difference."))]

    def _longer_prompt(self, longer: str, prompting: list[str]) -> list[Mistake]:
        """One line per longer prompt, against the best shorter prompt it does not beat (with many arms, a
        line per pair would bury the report's other warnings)."""
        shorter = [s for s in prompting if self._longer_without_gain(s, longer)]
        if not shorter:
            return []
        best = max(shorter, key=self.value)
        others = len(shorter) - 1
        more = f" (and {others} other shorter prompt{'s' if others > 1 else ''})" if others else ""
        return [Mistake(kind="longer prompt", against=[longer], text=(
            f"A longer prompt with no gain: {longer} uses {self.arms[longer].summary.mean_input_tokens:.0f} input "
            f"tokens against {self.arms[best].summary.mean_input_tokens:.0f} for {best}{more}, and "
            f"{self.cite(best, longer)}."))]

    def _longer_without_gain(self, shorter: str, longer: str) -> bool:
        a, b = self.arms[shorter].summary, self.arms[longer].summary
        if shorter == longer or b.mean_input_tokens < 1.5 * a.mean_input_tokens:
            return False
        if self.arms[shorter].decoding != self.arms[longer].decoding:
            return False
        c = self.diff(shorter, longer)
        return bool(c and not (c.significant and c.diff > 0))


def ci_text(m: MetricValue) -> str:
    return "–" if m.low is None or m.high is None else f"{m.low:.3f}–{m.high:.3f}"


def decide(report: RunReport) -> Decision:
    """The recommendation for an analysed run: its arms, paired comparisons and costs."""
    facts, note = evidence(report)
    if facts is None:
        return withheld(report, note)
    decision = Decider(report, facts).decide(note)
    if report.stability is not None:
        _state_stability(decision, report.stability)
    return decision


def verdict(decision: Decision) -> str:
    """A verdict in a word: the arm recommended, or why none was."""
    return decision.recommended or decision.kind or "none"


def _state_stability(decision: Decision, stability) -> None:
    """Say how many re-splits reach the pooled verdict; when not all do, the verdict says it is tentative
    first, so no later line reads as firmer than the evidence."""
    decision.stability = stability.line
    if stability.stable:
        return
    others = "; ".join(f"seed {seed}: {v}" for seed, v in stability.verdicts.items() if v != verdict(decision))
    decision.stability += (f". Not stable: the verdict changes with the split ({others}); it is the pooled "
                           f"evidence's, and tentative: add test items or seeds before relying on it")
    decision.reasons.insert(0, f"Not stable across re-splits: {stability.line} ({others}). Decided on the pooled "
                               f"evidence of all {len(stability.seeds)} re-splits; treat it as tentative.")


def withheld(report: RunReport, note: str) -> Decision:
    """Too few test inputs are unseen in training for any verdict to mean something."""
    clean = report.clean.n if report.clean else 0
    return Decision(
        recommended=None, kind="withheld", metric=report.metric, metric_why=report.metric_why, basis="none",
        reasons=[f"No verdict: {note}, and only {clean} test items are unseen (at least {MIN_CLEAN} are needed). "
                 f"The test measures memorization of seen inputs, not the task."],
        next_steps=["Split so that identical or related inputs stay together: splits: {group_by: FIELD} "
                    "(a field naming the problem, the source or the user) or splits: {dedupe: true}; then run again."],
        mistakes=[Mistake(kind="leakage", text=f"Leakage between splits: {note}.")])


# -- next steps when nothing is good enough ---------------------------------------------
def next_steps(report: RunReport, target: float) -> list[str]:
    """What the run's evidence suggests, strongest first: more data, a larger model, the missing knowledge."""
    steps = []
    needs = report.data_needs
    if needs and len([p for p in needs.fine_tuning if p.value is not None and p.examples]) >= 3:
        steps.append(_more_data(needs, target))
    steps.append(_larger_model(report))
    knowledge = _knowledge_bound(report)
    if knowledge:
        steps.insert(0 if "learned the format" in knowledge else len(steps), knowledge)
    return steps


def _more_data(needs, target: float) -> str:
    points = [(p.examples, p.value) for p in needs.fine_tuning if p.value is not None and p.examples]
    fit = extrapolate(points, target)
    shown = ", ".join(f"{n}: {v:.3f}" for n, v in points)
    if fit.ceiling < target:
        return (f"More data will not reach the target at this model size: a saturating curve fitted to the "
                f"learning curve ({shown}) levels off at {needs.metric} {fit.ceiling:.3f}, below {target:g}.")
    largest = max(n for n, _ in points)
    if fit.needed is None or fit.needed > 100 * largest:
        return (f"More data is unlikely to reach the target at this model size: the curve fitted to the learning "
                f"curve ({shown}) would need over 100 times the largest train size tried.")
    spread = f" (95% interval {fit.low:,.0f}–{fit.high:,.0f})" if fit.low and fit.high else ""
    return (f"More training data: the curve fitted to the learning curve ({shown}) reaches {target:g} at about "
            f"{fit.needed:,.0f} examples{spread}.")


def _larger_model(report: RunReport) -> str:
    base = report.config["model"]
    others = [a for a in report.main_arms() if a.model != base]
    if others:
        best = max(others, key=lambda a: a.value(report.metric))
        return (f"A larger or different model: {best.name} on {best.model} scored {report.metric} "
                f"{best.value(report.metric):.3f}; compare it with the same prompts and a fine-tuned student.")
    return (f"A larger model: every arm ran on {base}. Add a prompting arm on a larger model "
            f"(`model:` on the arm, or an OpenAI-compatible endpoint) to see what model size the task needs.")


def _knowledge_bound(report: RunReport) -> str | None:
    """Tuned arms that learned the answer's form but not its content point to missing knowledge."""
    main = report.main_arms()
    tuned = [a for a in main if a.traits.trains_weights]
    prompting = [a for a in main if a.traits.prompting]
    if not tuned or not prompting:
        return None
    best_tuned = max(tuned, key=lambda a: a.value(report.metric))
    best_prompt = max(prompting, key=lambda a: a.value(report.metric))
    form_tuned, form_prompt = best_tuned.summary.format_ok or 0, best_prompt.summary.format_ok or 0
    if form_tuned < 0.9 or form_tuned < form_prompt:
        return None
    line = (f"Give the model the knowledge: {best_tuned.name} learned the format (answers in form {form_tuned:.0%}) "
            f"yet scores {report.metric} {best_tuned.value(report.metric):.3f}, so the answers need facts the model "
            f"does not have; fine-tuning on more pairs mostly teaches the form.")
    retrieved = [a for a in main if a.traits.retrieves]
    if not retrieved:
        return line + " Retrieval (passages in the prompt's context) or a larger model supplies facts."
    best = max(retrieved, key=lambda a: a.value(report.metric))
    hits = best.summary.retrieval_hit_rate
    found = f"; its passages held the answer for {hits:.0%} of items" if hits is not None else ""
    return (line + f" Retrieval helps: {best.name} scores {best.value(report.metric):.3f}{found}, so what is left is "
            f"reading the passages — more worked examples, a hybrid trained with the retrieved context, or a "
            f"larger model.")
