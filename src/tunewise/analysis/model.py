"""The typed run report: what the analysis produces from the store and every renderer consumes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ..registry import traits
from ..traits import Traits


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricValue(_Model):
    value: float | None
    low: float | None = None
    high: float | None = None
    higher_is_better: bool = True


class Consistency(_Model):
    items: int
    samples: int
    temperature: float
    format_ok: float | None = None
    sample_agreement: float | None = None
    sample_similarity: float | None = None  # generation: mean token F1 between two samples of an item
    paraphrase_agreement: float | None = None
    paraphrases: int | None = None
    seconds: float | None = None  # the pass's wall time (runs before this field: unknown)
    model_s: float | None = None  # the model time its answers recorded: what max_share caps


class AnswerGroup(_Model):
    n: int
    metrics: dict[str, MetricValue]


class ArmSummary(_Model):
    """An arm's scores on the test split, as the runner stored them."""
    n: int
    metrics: dict[str, MetricValue]
    format_ok: float | None
    examples_per_s: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    mean_input_tokens: float
    mean_output_tokens: float
    cached: int = 0
    retrieval_hit_rate: float | None = None  # retrieval arms: retrieved passages holding the answer
    consistency: Consistency | None = None
    # generated answers: the metrics on test items whose answer a train example has ("seen") and the others
    by_answer: dict[str, AnswerGroup] | None = None
    engine: dict[str, str] | None = None  # the local engine's path per kind of call: "tree", "plain: why", ...
    predict_s: float | None = None  # wall time of the test split's predictions and scoring
    unit_s: float | None = None  # the whole unit: preparation (training, search) and evaluation
    # the judge's work on this arm's answers: calls, cached, tokens, seconds, unparsed verdicts, and the mean
    # answer length beside its rank correlation with the scores (verbosity bias)
    judge: dict[str, Any] | None = None

    @property
    def consistency_share(self) -> float | None:
        """The consistency pass's share of the arm's evaluation time."""
        c = self.consistency
        if c is None or c.seconds is None or self.predict_s is None or c.seconds + self.predict_s <= 0:
            return None
        return c.seconds / (c.seconds + self.predict_s)


class CurvePoint(_Model):
    """A stored row that varies arm `of`: a learning-curve point (size or k) or the arm on a re-split (seed)."""
    of: str                 # the arm this learning-curve point belongs to
    size: int | None = None  # train examples (fine-tuning)
    k: int | None = None     # examples in the prompt (few-shot)
    draw: int | None = None  # which seeded set of examples (few-shot)
    seed: int | None = None  # the split seed of a re-split (splits.seeds)


class ArmResult(_Model):
    name: str
    type: str
    family: str | None      # prompt | retrieval | fine-tune | hybrid (None: a type this install does not know)
    method: str             # e.g. "prompt: few-shot (scored labels)"
    decoding: str | None
    model: str
    endpoint_model: str | None = None
    status: str
    wall_s: float | None = None
    config: dict[str, Any]
    summary: ArmSummary | None = None
    prompt: list[dict[str, str]] | None = None
    training: dict[str, Any] | None = None  # what training recorded, without per-step losses
    data_required: str = "none"
    curve: CurvePoint | None = None

    @property
    def traits(self) -> Traits:
        """What the arm is (trains weights, changes only the prompt, ...): its registered type's traits, or,
        for a type this install does not register, those its stored family implies."""
        return traits(self.type) or Traits.of_family(self.family)

    @property
    def main(self) -> bool:
        """A finished arm of the task on the main split (not a learning-curve point nor a re-split): the arms
        that are compared."""
        return self.summary is not None and self.curve is None

    def value(self, metric: str) -> float | None:
        m = self.summary.metrics.get(metric) if self.summary else None
        return m.value if m else None


class Comparison(_Model):
    """Arm b against arm a on the same test items: diff = b − a (tunewise.stats computes it)."""
    a: str
    b: str
    metric: str
    test: str                # mcnemar | permutation | permutation (metric recomputed)
    description: str = ""    # the test in words, for the report
    diff: float
    low: float
    high: float
    p: float
    p_holm: float = 1.0
    significant: bool = False
    n: int = 0
    items_needed: int | None = None  # to detect this difference at alpha 0.05 with power 0.8
    n01: int | None = None   # items only b got right (McNemar)
    n10: int | None = None

    def flipped(self) -> "Comparison":
        """The same comparison read the other way round (a against b)."""
        return self.model_copy(update={"a": self.b, "b": self.a, "diff": -self.diff, "low": -self.high,
                                       "high": -self.low, "n01": self.n10, "n10": self.n01})


class ArmCost(_Model):
    per_1k: float            # per 1,000 requests
    basis: str               # tokens (a priced model) or seconds (measured compute × hardware price)
    one_time: float          # training
    monthly: float | None    # at the stated volume; None when the task states none
    train_flops: float | None = None
    judge: float | None = None  # judging this arm's test answers (an evaluation cost, not one per request)


class PlanRow(_Model):
    """One unit of the run: the plan's estimate beside the time it took."""
    unit: str
    parts: str                 # what the plan counted in it: "search, test, consistency"
    estimated_s: float
    actual_s: float | None     # None: not measured apart (a model's loading is inside the first unit using it)


class PlanCheck(_Model):
    """The plan made before the run against the run: the estimator's error, visible."""
    rows: list[PlanRow]
    estimated_s: float
    actual_s: float
    error: float | None        # (actual − estimate) / estimate, over the units that finished
    cuts: list[str] = []       # what a budget cut
    budget: dict[str, float] | None = None


class Effort(_Model):
    """The work that found an arm, before its test answers: the framework table's effort row."""
    how: str                 # written by hand | one training, fixed settings | searched
    searched: bool = False
    trials: int = 0          # prompts tried, or trainings
    dev_answers: int = 0     # dev answers scored to choose (trials × items, or epochs × items)
    seconds: float = 0.0     # compute spent choosing (searching or training)
    tokens: int | None = None  # tokens trained on, or sent by the search, where recorded
    money: float = 0.0       # what that compute cost at the stated prices
    shared_with: str | None = None  # trained with the settings this arm's search chose (its search counted too)


class Evidence(_Model):
    """What a verdict is decided on: each arm's decision metric and the paired comparisons, on a set of items."""
    basis: str                           # e.g. "all 200 test items", "the 150 clean test items"
    n: int
    values: dict[str, MetricValue]
    comparisons: list[Comparison] = []

    def comparison(self, a: str, b: str) -> Comparison | None:
        return find_comparison(self.comparisons, a, b)


def find_comparison(comparisons: list[Comparison], a: str, b: str) -> Comparison | None:
    """b against a (diff = b − a), whichever order the pair was stored in."""
    for c in comparisons:
        if (c.a, c.b) == (a, b):
            return c
        if (c.a, c.b) == (b, a):
            return c.flipped()
    return None


class Mistake(_Model):
    """A common mistake the run shows; `against` names the arms it advises against."""
    kind: str
    text: str
    against: list[str] = []


class SeedSpread(_Model):
    """One arm's decision metric on each re-split."""
    values: dict[int, float | None]   # seed -> value
    mean: float | None
    sd: float | None                  # sample standard deviation across seeds
    low: float | None                 # the lowest and highest seed's value
    high: float | None


class Stability(_Model):
    """The comparison repeated on re-splits: each arm's metric per seed, each seed's verdict, and the
    pooled evidence the verdict is decided on."""
    seeds: list[int]
    metric: str
    arms: dict[str, SeedSpread]
    verdicts: dict[int, str]          # seed -> the arm recommended on that split alone (or why none was)
    pooled: Evidence                  # every seed's test answers together
    agree: int = 0                    # seeds whose verdict is the pooled verdict
    stable: bool = True
    line: str = ""                    # e.g. "lora recommended on 3 of 3 re-splits"


class Decision(_Model):
    recommended: str | None
    kind: str | None         # prompting | fine-tuning | hybrid | retrieval | nothing meets the target | withheld
    metric: str | None = None
    metric_why: str | None = None
    basis: str | None = None
    value: float | None = None
    closest: str | None = None   # the best arm when nothing is recommended
    reasons: list[str]
    next_steps: list[str] = []
    mistakes: list[Mistake] = []
    stability: str | None = None  # across re-splits: "lora recommended on 3 of 3 re-splits" (and what that means)


class FrameworkRow(_Model):
    label: str               # method | quality | consistency | facts not in training | cost | speed | ...  | use case
    cells: list[str]


class FrameworkTable(_Model):
    """The framework's trade-off table, measured on this task: one column per leading arm of each kind."""
    columns: list[str]       # e.g. "prompting: few_shot"
    rows: list[FrameworkRow]


class TuningPoint(_Model):
    arm: str
    examples: int | None
    value: float | None
    train_s: float | None = None


class ShotPoint(_Model):
    arm: str
    k: int | None
    value: float | None      # the mean over the example sets drawn at this k
    low: float | None = None   # the lowest and highest set
    high: float | None = None
    draws: int = 1


class BestArm(_Model):
    arm: str
    value: float | None


class DataNeeds(_Model):
    metric: str
    fine_tuning: list[TuningPoint]
    few_shot: list[ShotPoint]
    best_prompting: BestArm | None
    to_match_prompting: int | None = None
    to_reach_target: int | None = None
    target: float | None = None
    statements: list[str] = []


class Confusion(_Model):
    labels: list[str]
    predicted: list[str]     # the labels, then "(none)"
    counts: dict[str, dict[str, int]]  # target -> predicted -> items

    @property
    def max_count(self) -> int:
        return max((v for row in self.counts.values() for v in row.values()), default=0)


class Disagreement(_Model):
    id: str
    input: str
    target: Any
    answers: dict[str, Any]
    raw: dict[str, str]


class SearchSummary(_Model):
    """A searched arm's search: its trials on dev, what each choice contributed, the winner on dev and test."""
    arm: str
    kind: str = "prompt"                             # prompt | fine-tune: what was searched
    metric: str
    dev_items: int
    dev_score: float | None
    test_score: float | None
    seconds: float
    best: dict[str, Any]
    trials: list[dict[str, Any]]                     # number, state (complete | pruned), value, params
    contributions: dict[str, dict[str, float]]       # choice -> value -> mean dev score of the finished trials
    overfit: str | None = None                       # said when test falls well below dev


class Part(_Model):
    """One part of a hybrid measured alone: its prompt on the base model, or its tuned weights."""
    role: str                    # "prompt alone" | "weights alone"
    arm: str
    value: float | None
    gain: float | None = None    # the hybrid's value minus this part's, on the same test items
    low: float | None = None     # 95% interval of the gain
    high: float | None = None
    p_holm: float | None = None
    significant: bool = False


class Contribution(_Model):
    """What a hybrid's prompt and its weights each added: the hybrid against each part alone."""
    hybrid: str
    value: float | None
    training: str                # matched (trained with its prompt) | plain (the tuned arm's adapter)
    parts: list[Part]
    steps: list[dict[str, Any]] = []  # alternation: step, model, dev score on the search's dev items
    statement: str = ""


class RunReport(_Model):
    """One run, analysed: everything the HTML, Markdown, JSON and terminal renderers show."""
    run_id: str
    task: str
    status: str
    created_at: float
    info: dict[str, Any]
    config: dict[str, Any]   # the resolved task configuration the run used
    data_fingerprint: str | None = None  # a hash of the rows the run read
    metrics: list[str]
    arms: list[ArmResult]
    data_needs: DataNeeds | None = None
    comparisons: list[Comparison] = []
    clean: Evidence | None = None  # the same analysis on the test items not seen in train/dev, when some leaked
    costs: dict[str, ArmCost] = {}
    effort: dict[str, Effort] = {}
    plan_check: PlanCheck | None = None
    decision: Decision | None = None
    framework: FrameworkTable | None = None
    confusion: dict[str, Confusion] = {}
    field_accuracy: dict[str, dict[str, float]] = {}  # extraction: arm -> key -> share of items right
    searches: list[SearchSummary] = []
    contributions: list[Contribution] = []
    disagreements: list[Disagreement] = []
    loss_curves: dict[str, list[tuple[int, float]]] = {}
    stability: Stability | None = None  # splits.seeds: the comparison on each re-split
    warnings: list[str] = []  # rows left out, prompts cut or past the context: never silent
    judge: dict[str, Any] | None = None  # pairwise verdicts and agreement with human scores (the run's info)
    # each assertion metric (and the judge's rubric), every pair of arms paired-tested on it
    declared_tests: dict[str, list[Comparison]] = {}

    @property
    def metric(self) -> str:
        """The metric arms are ranked, compared and decided on (runs before it was stored: the first)."""
        return (self.config.get("decision_metric") or {}).get("name") or self.metrics[0]

    @property
    def metric_why(self) -> str:
        return (self.config.get("decision_metric") or {}).get("why") or "the first metric listed"

    @property
    def leaked(self) -> int:
        return (self.info.get("leakage") or {}).get("count", 0)

    @property
    def currency(self) -> str:
        return self.prices.get("currency", "USD")

    @property
    def prices(self) -> dict[str, Any]:
        return self.config.get("prices") or {}

    def main_arms(self) -> list[ArmResult]:
        """The arms that finished, learning-curve points left out."""
        return [a for a in self.arms if a.main]
