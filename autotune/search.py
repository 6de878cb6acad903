"""Search strategies over a :class:`~.space.ConfigSpace`, and the head-to-head final.

* ``exhaustive`` measures every valid config (small spaces, or ``full`` effort on medium ones);
* ``guided`` starts from seeds (the baked nearest-shape winner, the kernel's default) and a
  spread-out initial sample, then alternates a surrogate's best guess (ridge regression of
  log-time over one-hot features and their pairwise products, numpy only; a second ridge model
  learns which configs fail, so failures teach the search too) with a hill-climbing step to the
  incumbent's most promising unmeasured neighbour.

Nothing here touches a GPU: an :class:`Evaluator` measures configs, which lets the tests run
every strategy against synthetic cost functions with known optima, failures and noise.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .space import Config, ConfigSpace, TuneContext, canonical_json

EFFORTS = ("none", "quick", "full")
#: Failure kinds recorded for a config that may not win.
FAILURE_KINDS = ("fatal", "timeout", "error", "wrong", "invalid")


@dataclass
class Outcome:
    config: Config
    time_ms: float | None
    failure: str | None = None
    detail: str = ""
    source: str = "search"

    @property
    def ok(self) -> bool:
        return self.failure is None and self.time_ms is not None and math.isfinite(self.time_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "time_ms": self.time_ms,
            "failure": self.failure,
            "detail": self.detail[:500],
            "source": self.source,
        }


class Evaluator(Protocol):
    def evaluate(self, configs: Sequence[Config]) -> list[Outcome]:
        """Check and time each config (interleaved); a failing one gets ``failure`` set."""
        ...

    def retime(self, configs: Sequence[Config], rounds: int) -> list[list[float | None]]:
        """Time ``configs`` head to head: ``rounds`` interleaved rounds, one median per round."""
        ...


@dataclass
class SearchResult:
    strategy: str
    outcomes: list[Outcome]
    #: Convergence: best time against configs tried and seconds elapsed.
    log: list[dict[str, float]]
    space_size: int | None
    stopped_by: str = "done"  # "done" | "evaluations" | "budget"

    @property
    def successes(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def best(self, count: int = 1) -> list[Outcome]:
        """The fastest successes, ties broken by canonical JSON so the order is reproducible."""
        return sorted(self.successes, key=lambda o: (o.time_ms, canonical_json(o.config)))[:count]


@dataclass
class SearchPlan:
    strategy: str  # "seeds" | "exhaustive" | "guided"
    max_evaluations: int


#: Evaluations of a guided search over a space too large to list, by effort.
QUICK_UNLISTED = 192
FULL_UNLISTED = 600
#: Spaces at most this large are searched exhaustively at each effort.
EXHAUSTIVE_UP_TO = {"none": 0, "quick": 48, "full": 400}


def plan_search(effort: str, valid_count: int | None) -> SearchPlan:
    if effort not in EFFORTS:
        raise ValueError(f"effort: expected one of {EFFORTS}, got {effort!r}")
    if effort == "none":
        return SearchPlan("seeds", 1)
    if valid_count is not None and valid_count <= EXHAUSTIVE_UP_TO[effort]:
        return SearchPlan("exhaustive", valid_count)
    if valid_count is None:
        # Too many configs to list (over LISTABLE_UP_TO distinct launches, or a space another
        # tool owns): any count we can afford is far under 10% of it, so the wall-clock budget
        # is the real limit.  At 96 the Triton matmul search (~6 configs/s with 12 compile
        # workers) stopped at half of a 30 s budget while still improving (d2c248c).
        return SearchPlan("guided", QUICK_UNLISTED if effort == "quick" else FULL_UNLISTED)
    n = valid_count
    if effort == "quick":
        return SearchPlan("guided", int(min(96, max(24, math.ceil(0.09 * n)))))
    return SearchPlan("guided", int(min(600, max(100, math.ceil(0.25 * n)))))


class _Run:
    """Book-keeping shared by the strategies: dedup, budget, convergence log."""

    def __init__(
        self,
        space: ConfigSpace,
        evaluator: Evaluator,
        context: TuneContext,
        max_evaluations: int,
        budget_s: float | None,
        clock: Callable[[], float],
        on_progress: Callable[[SearchResult], None] | None,
        result: SearchResult,
    ) -> None:
        self.space, self.evaluator, self.context = space, evaluator, context
        self.max_evaluations, self.budget_s, self.clock = max_evaluations, budget_s, clock
        self.start = clock()
        self.seen: set[str] = set()
        self.on_progress = on_progress
        self.result = result
        self.best_ms = math.inf

    def key(self, config: Mapping[str, Any]) -> str:
        return self.space.effective_key(config, self.context)

    def exhausted(self) -> bool:
        if len(self.result.outcomes) >= self.max_evaluations:
            self.result.stopped_by = "evaluations"
            return True
        if self.budget_s is not None and self.clock() - self.start >= self.budget_s:
            self.result.stopped_by = "budget"
            return True
        return False

    def fresh(self, config: Mapping[str, Any]) -> bool:
        return self.key(config) not in self.seen

    def run(self, configs: Sequence[Config], source: str = "search") -> list[Outcome]:
        batch: list[Config] = []
        keys: set[str] = set()
        room = self.max_evaluations - len(self.result.outcomes)
        for config in configs:
            key = self.key(config)
            if key in self.seen or key in keys or len(batch) >= room:
                continue
            keys.add(key)
            batch.append(dict(config))
        if not batch:
            return []
        self.seen |= keys
        outcomes = self.evaluator.evaluate(batch)
        for outcome in outcomes:
            outcome.source = source
            if outcome.ok and outcome.time_ms < self.best_ms:
                self.best_ms = outcome.time_ms
        self.result.outcomes.extend(outcomes)
        self.result.log.append(
            {
                "t_s": round(self.clock() - self.start, 4),
                "configs_tried": len(self.result.outcomes),
                "best_ms": self.best_ms if math.isfinite(self.best_ms) else None,
            }
        )
        if self.on_progress is not None:
            self.on_progress(self.result)
        return outcomes


#: Spaces up to this many configs are listed (validity and effective keys are cheap to compute).
LISTABLE_UP_TO = 100_000


def distinct_configs(space: ConfigSpace, context: TuneContext) -> list[Config]:
    """One valid config per distinct launch (effective key), in enumeration order."""
    seen: set[str] = set()
    distinct = []
    for config in space.enumerate(context):
        key = space.effective_key(config, context)
        if key not in seen:
            seen.add(key)
            distinct.append(config)
    return distinct


def count_valid(space: ConfigSpace, context: TuneContext, limit: int = LISTABLE_UP_TO) -> int | None:
    """How many distinct valid configs there are, None when too many to list."""
    size = space.size()
    if size is None or size > limit:
        return None
    # Configs that launch the same kernel (same effective key) count once: a row-wise kernel on
    # short rows ignores most of its parameters, and its space collapses to a handful.
    return len(distinct_configs(space, context))


def search(
    space: ConfigSpace | None,
    evaluator: Evaluator,
    context: TuneContext | None = None,
    *,
    effort: str = "quick",
    budget_s: float | None = None,
    seeds: Sequence[Mapping[str, Any]] = (),
    max_evaluations: int | None = None,
    rng_seed: int = 0,
    batch_size: int = 4,
    clock: Callable[[], float] = time.monotonic,
    on_progress: Callable[[SearchResult], None] | None = None,
) -> SearchResult:
    """Measure configs of ``space`` until the plan, ``max_evaluations`` or ``budget_s`` stop it.

    Seeds are measured first (an empty space means one run of the kernel as it is).
    """
    context = context or TuneContext()
    seed_configs = [dict(s) for s in seeds if space is None or space.invalid_reason(s, context) is None]
    if space is None:
        result = SearchResult("seeds", [], [], 1)
        _Run(NullSpace(), evaluator, context, 1, budget_s, clock, on_progress, result).run([{}], "default")
        return result
    size = space.size()
    # Listed once per search: one config per distinct launch (listing costs seconds for a space
    # of ~1e5 configs, and the GPU waits meanwhile).
    listed = distinct_configs(space, context) if size is not None and size <= LISTABLE_UP_TO else None
    valid_count = None if listed is None else len(listed)
    plan = plan_search(effort, valid_count)
    limit = plan.max_evaluations if max_evaluations is None else min(max_evaluations, plan.max_evaluations)
    limit = max(limit, 1)
    result = SearchResult(plan.strategy, [], [], valid_count)
    run = _Run(
        space,
        evaluator,
        context,
        limit + (len(seed_configs) if plan.strategy != "seeds" else 0),
        budget_s,
        clock,
        on_progress,
        result,
    )
    if plan.strategy == "seeds":
        run.run(seed_configs[:1] or [{}], "default")
        return result
    if seed_configs:
        run.run(seed_configs, "seed")
    if plan.strategy == "exhaustive":
        configs = listed or []
        for start in range(0, len(configs), batch_size):
            if run.exhausted():
                break
            run.run(configs[start : start + batch_size])
        if valid_count is not None and len(run.seen) >= valid_count:
            result.stopped_by = "done"
        return result
    _guided(run, random.Random(rng_seed), batch_size, listed)
    return result


class NullSpace:
    """The space of a kernel with nothing to tune: one empty config."""

    def size(self) -> int:
        return 1

    def enumerate(self, context: TuneContext):
        yield {}

    def sample(self, rng: random.Random, context: TuneContext) -> Config:
        return {}

    def neighbours(self, config: Mapping[str, Any], context: TuneContext) -> list[Config]:
        return []

    def invalid_reason(self, config: Mapping[str, Any], context: TuneContext | None = None) -> str | None:
        return None if not config else "this kernel takes no config"

    def features(self, config: Mapping[str, Any]) -> list[float]:
        return []

    def effective_key(self, config: Mapping[str, Any], context: TuneContext) -> str:
        return canonical_json(config)


# --- the guided search -----------------------------------------------------------------------


def _spread_sample(space: ConfigSpace, rng: random.Random, context: TuneContext, count: int) -> list[Config]:
    """Random valid configs, drawn so each value of each parameter shows up early (a Latin
    hypercube over the discrete parameters, invalid draws resampled)."""
    params: Mapping[str, Sequence[Any]] | None = getattr(space, "params", None)
    picks: list[Config] = []
    if params:
        columns = {}
        for name, values in params.items():
            column = [values[i % len(values)] for i in range(count)]
            rng.shuffle(column)
            columns[name] = column
        for i in range(count):
            config = {name: column[i] for name, column in columns.items()}
            if space.invalid_reason(config, context) is None:
                picks.append(config)
    while len(picks) < count:
        config = space.sample(rng, context)
        if config is None:
            break
        picks.append(config)
    return picks


class Surrogate:
    """Ridge regression of log(time) and of failure, over one-hot features and their pairwise
    products (kernel times are mostly products of per-parameter factors, plus interactions such
    as tile size against warps). The penalty is picked by leave-one-out error."""

    PENALTIES = (0.03, 0.3, 3.0, 30.0)

    def __init__(self, space: ConfigSpace) -> None:
        self.space = space
        self.scale: np.ndarray | None = None
        self.width: int | None = None

    def design(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        rows = [self.space.features(c) for c in configs]
        # Spaces owned by other tools may give rows of different lengths: pad them.
        width = max((len(r) for r in rows), default=0)
        if self.width is not None:
            width = self.width
        base = np.zeros((len(rows), width))
        for i, row in enumerate(rows):
            base[i, : min(width, len(row))] = row[:width]
        self.width = width
        if width == 0:
            return np.ones((len(configs), 1))
        upper = np.triu_indices(base.shape[1], k=1)
        pairs = (base[:, :, None] * base[:, None, :])[:, upper[0], upper[1]]
        x = np.concatenate([base, pairs], axis=1)
        if self.scale is None:
            self.scale = np.maximum(np.abs(x).max(axis=0), 1e-9)
        return x / self.scale

    @staticmethod
    def _fit(x: np.ndarray, y: np.ndarray, penalties: Sequence[float]) -> tuple[np.ndarray, float]:
        """Dual-form ridge (n samples << features): weights and intercept."""
        mean = float(y.mean())
        yc = y - mean
        gram = x @ x.T
        best: tuple[float, np.ndarray] | None = None
        for lam in penalties:
            inverse = np.linalg.inv(gram + lam * np.eye(len(y)))
            alpha = inverse @ yc
            # Leave-one-out residuals of kernel ridge in closed form: alpha_i / inverse_ii.
            loo = float(np.mean((alpha / np.diag(inverse)) ** 2))
            if best is None or loo < best[0]:
                best = (loo, x.T @ alpha)
        assert best is not None
        return best[1], mean

    def fit(self, outcomes: Sequence[Outcome]) -> bool:
        ok = [o for o in outcomes if o.ok and o.time_ms > 0]
        if len(ok) < 4:
            return False
        self.scale = self.width = None
        x_all = self.design([o.config for o in outcomes])
        index = {id(o): i for i, o in enumerate(outcomes)}
        x_ok = x_all[[index[id(o)] for o in ok]]
        self.time_w, self.time_b = self._fit(x_ok, np.log([o.time_ms for o in ok]), self.PENALTIES)
        failed = np.asarray([0.0 if o.ok else 1.0 for o in outcomes])
        if failed.any():
            self.fail_w, self.fail_b = self._fit(x_all, failed, (1.0,))
        else:
            self.fail_w, self.fail_b = None, 0.0
        return True

    def score(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted log-time plus a penalty for the predicted chance of failing."""
        x = self.design(configs)
        score = x @ self.time_w + self.time_b
        if self.fail_w is not None:
            p_fail = np.clip(x @ self.fail_w + self.fail_b, 0.0, 1.0)
            score = score + 3.0 * p_fail
        return score


NEIGHBOUR_SHARE = 0.75
#: Share of the evaluations spent on the spread-out initial sample.
INITIAL_SHARE = 0.25


def _guided(run: _Run, rng: random.Random, batch_size: int, listed: list[Config] | None) -> None:
    space, context = run.space, run.context
    pool: list[Config] | None = list(listed) if listed is not None and len(listed) <= 20_000 else None
    initial = max(6, int((run.max_evaluations - len(run.result.outcomes)) * INITIAL_SHARE))
    spread = _spread_sample(space, rng, context, initial)
    for start in range(0, len(spread), batch_size):
        if run.exhausted():
            break
        run.run(spread[start : start + batch_size], "sample")
    surrogate = Surrogate(space)
    stall = 0
    while not run.exhausted():
        candidates = pool if pool is not None else _candidate_pool(run, rng)
        fresh = [c for c in candidates if run.fresh(c)]
        if not fresh:
            run.result.stopped_by = "done"
            return
        picks: list[Config] = []
        have_model = surrogate.fit(run.result.outcomes)
        if have_model:
            # Hill-climbing half: the incumbents' unmeasured neighbours, best predicted first.
            neighbours: list[Config] = []
            for incumbent in run.result.best(2):
                for n in space.neighbours(incumbent.config, context):
                    if run.fresh(n) and n not in neighbours:
                        neighbours.append(n)
            local = max(1, round(NEIGHBOUR_SHARE * batch_size))
            if neighbours:
                order = np.argsort(surrogate.score(neighbours), kind="stable")
                picks = [neighbours[i] for i in order[:local]]
            # Surrogate half: the best predicted configs anywhere in the space.
            scores = surrogate.score(fresh)
            for i in np.argsort(scores, kind="stable"):
                if len(picks) >= batch_size:
                    break
                if fresh[i] not in picks:
                    picks.append(fresh[i])
        else:
            picks = [fresh[rng.randrange(len(fresh))] for _ in range(batch_size)]
        # Exploration: a random config now and then keeps a wrong model from trapping the search.
        if stall >= 2 and len(fresh) > len(picks):
            picks[-1] = fresh[rng.randrange(len(fresh))]
        before = run.best_ms
        if not run.run(picks):
            # Everything picked had been measured under another name: drop them and go on.
            if pool is not None:
                pool = [c for c in pool if run.fresh(c)]
            continue
        stall = 0 if run.best_ms < before else stall + 1


def _candidate_pool(run: _Run, rng: random.Random, samples: int = 400) -> list[Config]:
    """For spaces too large to list: random samples plus the neighbourhoods of the best."""
    pool = [c for c in (run.space.sample(rng, run.context) for _ in range(samples)) if c is not None]
    for best in run.result.best(5):
        pool.extend(run.space.neighbours(best.config, run.context))
    return pool


# --- the final -------------------------------------------------------------------------------


@dataclass
class Decision:
    winner: Config
    time_ms: float
    noise: float
    #: Finalists in the order they placed: (config, median ms), the winner first.
    standings: list[tuple[Config, float]] = field(default_factory=list)
    tied: int = 1
    #: Rounds the final took: more than asked where the winner's median was not yet known to
    #: ``FINAL_MEDIAN_ERROR``.
    rounds: int = 0
    #: The winner's standard error of the median (``median_error``) over those rounds.
    median_error: float = 0.0


#: How well the final must know the winner's time: its standard error of the median.  The
#: bench checks baked times within 3 %, and a 3-round final whose rounds spread 3 % (a graph-timed
#: 0.019 ms GEMM at 7f64ecb) knows its median only to 2 %: such a final takes more rounds.
FINAL_MEDIAN_ERROR = 0.01


def relative_spread(samples: Sequence[float]) -> float:
    """Relative standard deviation of repeated measurements of one config: its noise."""
    values = [s for s in samples if s is not None and math.isfinite(s) and s > 0]
    if len(values) < 2:
        return 0.0
    return statistics.stdev(values) / statistics.mean(values)


def median_error(spread: float, rounds: int) -> float:
    """Relative standard error of the median of ``rounds`` samples whose relative standard
    deviation is ``spread`` (1.2533 sigma / sqrt(n) for normal samples)."""
    return 1.2533 * spread / math.sqrt(max(rounds, 1))


def median_difference_noise(spread: float, rounds: int) -> float:
    """Two standard errors of the difference of two medians of ``rounds`` samples each whose
    relative standard deviation is ``spread``: a smaller difference is noise."""
    return 2.0 * math.sqrt(2.0) * median_error(spread, rounds)


def _standings(
    finalists: Sequence[Config], rounds_ms: Sequence[Sequence[float | None]], min_noise: float
) -> Decision | None:
    rounds = max((len(samples) for samples in rounds_ms), default=0)
    medians: list[tuple[Config, float, float, int]] = []
    for config, samples in zip(finalists, rounds_ms):
        values = [s for s in samples if s is not None and math.isfinite(s)]
        if len(values) * 2 < len(samples) or not values:
            continue  # failed in the final (flaky): it may not win
        medians.append((config, statistics.median(values), relative_spread(values), len(values)))
    if not medians:
        return None
    medians.sort(key=lambda m: (m[1], canonical_json(m[0])))
    noise = max(min_noise, median_difference_noise(statistics.median(m[2] for m in medians), rounds))
    fastest = medians[0][1]
    tied = [m for m in medians if m[1] <= fastest * (1.0 + noise)]
    winner = min(tied, key=lambda m: canonical_json(m[0]))
    standings = [(winner[0], winner[1])] + [(m[0], m[1]) for m in medians if m[0] is not winner[0]]
    return Decision(
        winner[0], winner[1], noise, standings, len(tied), rounds, median_error(winner[2], winner[3])
    )


def decide(
    finalists: Sequence[Config],
    evaluator: Evaluator,
    rounds: int = 5,
    min_noise: float = 0.005,
    max_rounds: int | None = None,
    target_error: float = FINAL_MEDIAN_ERROR,
) -> Decision | None:
    """Re-time the finalists head to head (interleaved rounds); the fastest median wins, and
    configs within the measured noise of it are a tie, broken by canonical JSON so that the
    same inputs pick the same winner.  Up to ``max_rounds`` in all (default: ``rounds``), more
    rounds are added, ``rounds`` at a time, while the winner's median is known less well than
    ``target_error``: its time is what the store promises the bench."""
    finalists = list(finalists)
    if not finalists:
        return None
    limit = max(rounds, max_rounds or rounds)
    rounds_ms = [list(samples) for samples in evaluator.retime(finalists, rounds)]
    decision = _standings(finalists, rounds_ms, min_noise)
    while decision is not None and decision.rounds < limit and decision.median_error > target_error:
        more = evaluator.retime(finalists, min(rounds, limit - decision.rounds))
        for samples, extra in zip(rounds_ms, more):
            samples.extend(extra)
        decision = _standings(finalists, rounds_ms, min_noise)
    return decision
