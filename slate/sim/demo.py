"""``slate demo``: the whole idea, end to end, on the simulated world.

:func:`run_demo` builds a world, logs uniform-random exploration for four weeks (written as
``slate.impressions/1`` Parquet files and read back through the validating reader), trains a
non-contextual take-rate bandit and a contextual bandit (hybrid LinUCB over member-by-image
features) on the first three weeks, and replays four policies on the held-out fourth week:

* **random** -- one image at random per title;
* **take-rate bandit** -- the image with the best overall take rate (no context);
* **contextual bandit** -- the image with the best predicted take rate for this member;
* **contextual + page optimizer** -- the contextual scores, images chosen for the whole page
  (visual diversity between layout neighbours, stability between sessions).

Each replay estimate (self-normalised IPS by default: the take fraction over the held-out events
where the log shows the policy's image, weighted by the inverse logging propensity; with a
bootstrap interval over pages) stands beside two true values the simulator knows: the value *on
the logged pages* (what per-title replay estimates: the policy's
image for one title, the rest of the page and the session state as logged) and the value *if
deployed* (on-policy, the policy's own neighbours and session history, common random numbers).
Page diversity and churn are the deployed ones. The difference between the two truths is what
per-title replay cannot see: page and session effects.

It also prints the Netflix post's Figure 3 example: a comedy-inclined and a romance-inclined
profile, *Good Will Hunting*, the Robin Williams image and the couple image, the contextual
bandit's two scores for each profile and the image each gets. Outputs go to ``output_dir``:
``results.csv``, ``results.md``, ``results.json``, ``take_fraction.png`` and the two logs.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.errors import InvalidProblemError
from slate.sim.features import SimFeatures, bandit_scorer
from slate.sim.policies import ArgmaxPolicy, PageOptimizerPolicy, UniformRandomLogging
from slate.sim.response import PageBatch, candidate_probabilities
from slate.sim.schedule import make_schedule
from slate.sim.simulate import Run, counterfactual_value, policy_value, simulate
from slate.sim.world import World, make_world

__all__ = ["DemoOptions", "DemoReport", "DemoRow", "ExampleRow", "run_demo"]

POLICIES = ("random", "take-rate bandit", "contextual bandit", "contextual + page optimizer")


@dataclass(frozen=True)
class DemoRow:
    """One policy's line of the demo table.

    Attributes
    ----------
    policy : str
    replay, low, high, se : float
        Replay estimate of the take fraction on the held-out log, its bootstrap interval and
        standard error.
    n_matched : int
        Held-out rows whose logged image is the policy's image.
    truth_logged : float
        True take fraction on the logged pages (replay's estimand).
    truth_deployed : float
        True take fraction if deployed on the held-out days (on-policy).
    diversity, churn : float
        Deployed page diversity (``1 -`` neighbour similarity) and churn.
    page_aware, page_aware_low, page_aware_high : float
        The ``page-aware`` estimate (:class:`~slate.replay.MarginalizedNeighbourhood`, images
        grouped by aesthetic, grid neighbours) and its interval; it targets the value if
        deployed's page effects (not the session effects). NaN when not computed.
    """

    policy: str
    replay: float
    low: float
    high: float
    se: float
    n_matched: int
    truth_logged: float
    truth_deployed: float
    diversity: float
    churn: float
    page_aware: float = float("nan")
    page_aware_low: float = float("nan")
    page_aware_high: float = float("nan")

    @property
    def page_aware_covers_deployed(self) -> bool:
        """The page-aware interval covers the true value if deployed."""
        return self.page_aware_low <= self.truth_deployed <= self.page_aware_high

    @property
    def covered(self) -> bool:
        """The replay interval covers the true value on the logged pages."""
        return self.low <= self.truth_logged <= self.high


@dataclass(frozen=True)
class ExampleRow:
    """Figure 3 of the Netflix post: one profile, the two images' scores and the choice."""

    profile: str
    member_id: int
    score_comedian: float
    score_couple: float
    true_comedian: float
    true_couple: float
    chosen: str


@dataclass(frozen=True)
class DemoReport:
    """What :func:`run_demo` returns; ``str(report)`` is the printed table and example."""

    output_dir: Path
    seed: int
    rows: tuple[DemoRow, ...]
    example: tuple[ExampleRow, ...]
    example_title: str
    example_images: tuple[str, str]
    files: Mapping[str, Path]
    seconds: float
    info: Mapping[str, Any] = field(default_factory=dict)

    def row(self, policy: str) -> DemoRow:
        """The row of ``policy``."""
        for r in self.rows:
            if r.policy == policy:
                return r
        raise KeyError(policy)

    @property
    def ordering_holds(self) -> bool:
        """Replay ranks random < take-rate bandit < contextual bandit."""
        r = [self.row(p).replay for p in POLICIES[:3]]
        return r[0] < r[1] < r[2]

    @property
    def all_covered(self) -> bool:
        """Every replay interval covers its true value on the logged pages."""
        return all(r.covered for r in self.rows)

    def to_markdown(self) -> str:
        """The table and the example as Markdown."""
        lines = [
            "| policy | replay take fraction | 95% interval | true (logged pages) | covered "
            "| true (deployed) | diversity | churn | page-aware | 95% interval | covers deployed |",
            "|---|---:|---:|---:|:---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.policy} | {r.replay:.4f} | [{r.low:.4f}, {r.high:.4f}] | {r.truth_logged:.4f} "
                f"| {'yes' if r.covered else 'NO'} | {r.truth_deployed:.4f} | {r.diversity:.3f} | {r.churn:.3f} "
                f"| {r.page_aware:.4f} | [{r.page_aware_low:.4f}, {r.page_aware_high:.4f}] "
                f"| {'yes' if r.page_aware_covers_deployed else 'NO'} |"
            )
        a, b = self.example_images
        lines += [
            "",
            f"Figure 3 example: *{self.example_title}*, image A = `{a}`, image B = `{b}` "
            "(contextual bandit's predicted take rate, in %; true value in parentheses)",
            "",
            "| profile | score image A | score image B | image shown |",
            "|---|---:|---:|---|",
        ]
        for e in self.example:
            lines.append(
                f"| {e.profile} | {100 * e.score_comedian:.1f} ({100 * e.true_comedian:.1f}) "
                f"| {100 * e.score_couple:.1f} ({100 * e.true_couple:.1f}) | `{e.chosen}` |"
            )
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        head = (
            f"{'policy':<30}{'replay':>8}{'95% interval':>20}{'true@log':>10}{'cov':>5}"
            f"{'deployed':>10}{'divers.':>9}{'churn':>7}{'page-aware':>11}{'95% interval':>20}{'cov':>5}"
        )
        lines = [
            f"slate demo (seed {self.seed}): {self.info.get('summary', '')}",
            f"take fraction on the held-out week: replay estimate ({self.info.get('estimator', '')}) vs the simulator's truth "
            "(true@log: on the logged pages, replay's target; deployed: on-policy; page-aware: "
            "marginalised neighbourhood IPS, images grouped by aesthetic, cov = covers deployed)",
            head,
            "-" * len(head),
        ]
        for r in self.rows:
            lines.append(
                f"{r.policy:<30}{r.replay:>8.4f}{f'[{r.low:.4f}, {r.high:.4f}]':>20}{r.truth_logged:>10.4f}"
                f"{'yes' if r.covered else 'NO':>5}{r.truth_deployed:>10.4f}{r.diversity:>9.3f}{r.churn:>7.3f}"
                f"{r.page_aware:>11.4f}{f'[{r.page_aware_low:.4f}, {r.page_aware_high:.4f}]':>20}"
                f"{'yes' if r.page_aware_covers_deployed else 'NO':>5}"
            )
        a, b = self.example_images
        lines += [
            "",
            f"Figure 3: {self.example_title}; A = {a}, B = {b} (predicted take rate %, truth in parentheses)",
            f"{'profile':<22}{'score A':>14}{'score B':>14}  image shown",
        ]
        for e in self.example:
            lines.append(
                f"{e.profile:<22}{f'{100 * e.score_comedian:.1f} ({100 * e.true_comedian:.1f})':>14}"
                f"{f'{100 * e.score_couple:.1f} ({100 * e.true_couple:.1f})':>14}  {e.chosen}"
            )
        lines += ["", f"wrote {', '.join(str(p) for p in self.files.values())} in {self.seconds:.0f} s"]
        return "\n".join(lines)


class _Steps:
    """A progress bar over the demo's steps (tqdm when available and wanted)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc="slate demo", unit="step")
            except ImportError:  # pragma: no cover - tqdm is an optional extra
                self.bar = None
        self.times: dict[str, float] = {}
        self._last = time.perf_counter()

    def step(self, label: str) -> None:
        now = time.perf_counter()
        self.times[label] = round(now - self._last, 2)
        self._last = now
        if self.bar is not None:
            self.bar.set_postfix_str(label)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _global_arms(world: World, log: Any) -> NDArray[np.int64]:
    lookup = np.array([world.image_index[i] for i in log.image_ids], dtype=np.int64)
    return np.asarray(lookup[log.image])


def _read_back(world: World, run: Run, path: Path) -> Any:
    """Write the run as a log, read it back validated, check it lines up with the run."""
    from slate.logs import read_impressions

    run.write(path, include_propensities=True)
    log, report = read_impressions(path, known_images=world.image_ids)
    if report.n_rejected or not np.array_equal(log.source_row, np.arange(run.n_impressions)):
        raise InvalidProblemError(f"The simulated log {path} did not read back whole: {report}")
    if not np.array_equal(log.shown, run.images.ravel()):
        raise InvalidProblemError(f"The simulated log {path} does not line up with the simulation.")
    return log


def _example(world: World, scorer: Any, day: int) -> tuple[ExampleRow, ...]:
    ex = world.example
    if ex is None:
        return ()
    members = np.array([ex.comedy_member, ex.romance_member], dtype=np.int64)
    others = [t for t in range(world.n_titles) if t != ex.title and world.launch_day[t] <= day]
    titles = np.empty((2, world.n_slots), dtype=np.int64)
    titles[:, 0] = ex.title
    titles[:, 1:] = others[: world.n_slots - 1]
    batch = PageBatch(
        world=world,
        member=members,
        day=np.full(2, day, dtype=np.int64),
        hour=np.full(2, 20.5),
        device=np.zeros(2, dtype=np.int64),
        titles=titles,
        previous=np.full(titles.shape, -1, dtype=np.int64),
        known=np.zeros(titles.shape, dtype=bool),
        session_id=np.arange(2, dtype=np.int64),
        page_id=np.arange(2, dtype=np.int64),
        timestamp=np.zeros(2, dtype=np.int64),
    )
    scores = scorer(batch)[:, 0]
    truth = candidate_probabilities(batch)[:, 0]
    n = int(world.n_images[ex.title])
    rows = []
    for i, label in enumerate(("comedy-inclined", "romance-inclined")):
        chosen = int(np.nanargmax(scores[i, :n]))
        rows.append(
            ExampleRow(
                profile=label,
                member_id=int(world.member_ids[members[i]]),
                score_comedian=float(scores[i, ex.comedian_image]),
                score_couple=float(scores[i, ex.couple_image]),
                true_comedian=float(truth[i, ex.comedian_image]),
                true_couple=float(truth[i, ex.couple_image]),
                chosen=world.image_ids[int(world.title_images[ex.title, chosen])],
            )
        )
    return tuple(rows)


def _plot(rows: tuple[DemoRow, ...], path: Path) -> Path | None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is an optional extra
        return None
    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    values = np.array([r.replay for r in rows])
    err = np.array([[r.replay - r.low for r in rows], [r.high - r.replay for r in rows]])
    colours = ["#4caf50", "#fbc02d", "#1e88e5", "#d81b60"][: len(rows)]
    ax.bar(x, values, yerr=err, color=colours, capsize=6, label="replay estimate (95% interval)")
    ax.scatter(x, [r.truth_logged for r in rows], color="black", zorder=3, label="truth on logged pages")
    ax.scatter(x, [r.truth_deployed for r in rows], color="black", marker="D", facecolors="none",
               zorder=3, label="truth if deployed")  # fmt: skip
    ax.set_xticks(x)
    ax.set_xticklabels([r.policy.replace(" + ", "\n+ ") for r in rows], fontsize=8)
    ax.set_ylabel("take fraction (quality plays per impression)")
    ax.set_ylim(0, max(max(values), max(r.truth_deployed for r in rows)) * 1.25)
    ax.set_title("Average image take fraction by policy (held-out week)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


@dataclass(frozen=True)
class DemoOptions:
    """The size of the demo's world and how it replays (:func:`run_demo`).

    Attributes
    ----------
    n_members, n_titles, n_days : int, default 2000, 300, 28
        Size of the world and length of the simulated period.
    heldout_days : int, default 7
        The last days, used for replay and the true values; the earlier days train.
    page_optimizer : bool, default True
        Include "contextual + page optimizer" (the slowest part: one solve per page).
    diversity, churn : float, default 0.125, 0.1
        Relative weights of the page optimizer (see :class:`~slate.sim.PageOptimizerPolicy`).
    n_bootstrap : int, default 500
        Bootstrap replicates of the replay intervals (pages resampled).
    estimator : str, default "snips"
        The replay estimator (any name of :func:`slate.replay.available_estimators`). With
        uniform logging, self-normalised IPS is the take fraction over the matched events,
        each weighted by its title's number of candidates; ``"replay"`` (Li et al.'s rejection
        sampling) is unbiased too but keeps fewer events when titles have different numbers of
        candidates.
    """

    n_members: int = 2000
    n_titles: int = 300
    n_days: int = 28
    heldout_days: int = 7
    page_optimizer: bool = True
    diversity: float = 0.125
    churn: float = 0.1
    n_bootstrap: int = 500
    estimator: str = "snips"


@dataclass
class _Logged:
    """Stage 1-2 of the demo: the world, its schedules, and the exploration runs and logs."""

    world: World
    train_days: int
    test_schedule: Any
    train_run: Run
    test_run: Run
    train_log: Any
    test_log: Any


def _options(options: DemoOptions | None, overrides: dict[str, Any]) -> DemoOptions:
    o = options if options is not None else DemoOptions()
    if overrides:
        from dataclasses import fields

        from slate.errors import UnknownOptionError

        known = [f.name for f in fields(DemoOptions)]
        unknown = [k for k in overrides if k not in known]
        if unknown:
            raise UnknownOptionError(f"Unknown option '{unknown[0]}' for run_demo; its options are {', '.join(known)}.")
        o = replace(o, **overrides)
    if o.heldout_days < 1 or o.heldout_days >= o.n_days:
        raise InvalidProblemError(
            f"The 'heldout_days' parameter of run_demo must be in 1..{o.n_days - 1}; got {o.heldout_days} instead."
        )
    return o


def _explore(o: DemoOptions, seed: int, out: Path, steps: _Steps) -> _Logged:
    """1. the world and its sessions; 2. exploration: uniform random per title, logged with exact
    propensities, written and read back through the validating reader."""
    world = make_world(n_members=o.n_members, n_titles=o.n_titles, n_days=o.n_days, seed=seed)
    train_days = o.n_days - o.heldout_days
    train_schedule = make_schedule(world, n_days=train_days, seed=seed)
    test_schedule = make_schedule(world, n_days=o.heldout_days, first_day=train_days, seed=seed)
    steps.step("world")

    logging_policy = UniformRandomLogging(seed=seed)
    train_run = simulate(train_schedule, logging_policy)
    test_run = simulate(test_schedule, logging_policy, state=train_run.final_state)
    train_log = _read_back(world, train_run, out / "exploration-train.parquet")
    test_log = _read_back(world, test_run, out / "exploration-heldout.parquet")
    steps.step("exploration logs")
    return _Logged(world, train_days, test_schedule, train_run, test_run, train_log, test_log)


def _train(logged: _Logged, seed: int) -> tuple[Any, Any, SimFeatures, NDArray[np.int64]]:
    """3. training: take-rate bandit on (image, quality play); contextual bandit on features.
    Returns the take-rate bandit, the contextual bandit, the features and the columns it uses."""
    from slate.bandit import HybridLinUCB, TakeRateBandit

    world, train_run, train_log = logged.world, logged.train_run, logged.train_log
    features = SimFeatures(world)
    arms = _global_arms(world, train_log)
    rewards = train_log.reward.astype(np.float64)
    take_rate = TakeRateBandit(seed=seed).fit(None, arms, rewards)
    keep = np.concatenate(
        [features.columns("bias"), features.columns("member_title", "image", "interaction", "context_x_aesthetic")]
    )
    contextual = HybridLinUCB(
        alpha=0.0, shared_columns=list(range(1, len(keep))), arm_columns=[0], seed=seed
    )
    # a week at a time: the hybrid model's per-update cost is in its per-image refresh
    parts: list[NDArray[np.float32]] = []
    first_row = 0
    for s, batch in train_run.batches():
        parts.append(features.shown(batch, train_run.images[s].astype(np.int64), keep))
        if batch.day[0] % 7 == 6 or s.stop == train_run.n_pages:
            x = np.concatenate(parts)
            rows_now = slice(first_row, first_row + len(x))
            contextual.update(x, arms[rows_now], rewards[rows_now])
            first_row += len(x)
            parts = []
    return take_rate, contextual, features, keep


def _policies(o: DemoOptions, seed: int, take_rate_scorer: Any, contextual_scorer: Any) -> dict[str, Any]:
    policies: dict[str, Any] = {
        "random": UniformRandomLogging(seed=seed + 1),
        "take-rate bandit": ArgmaxPolicy(take_rate_scorer, name="take-rate bandit"),
        "contextual bandit": ArgmaxPolicy(contextual_scorer, name="contextual bandit"),
    }
    if o.page_optimizer:
        policies["contextual + page optimizer"] = PageOptimizerPolicy(
            contextual_scorer, diversity=o.diversity, churn=o.churn, name="contextual + page optimizer",
            options={"compute_bound": False},
        )
    return policies


def _replay(
    o: DemoOptions, seed: int, logged: _Logged, policies: dict[str, Any], logged_truth: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """5. replay on the held-out log (and page-aware: neighbours matter through their aesthetic)."""
    from slate.replay import UniformPolicy, evaluate, get_estimator

    world, test_log = logged.world, logged.test_log
    estimates, page_aware = {}, {}
    aware = get_estimator(
        "page-aware", groups={image: int(world.image_aesthetic[i]) for i, image in enumerate(world.image_ids)},
        neighbours="grid",
    )
    for name in policies:
        target: Any
        if name == "random":
            target = UniformPolicy()
        else:
            target = {"choice": logged_truth[name].images.ravel(), "name": name}
        replayed = evaluate(test_log, target, o.estimator, n_bootstrap=o.n_bootstrap, seed=seed, metrics=False)
        estimates[name] = replayed.estimate
        page_aware[name] = evaluate(test_log, target, aware, n_bootstrap=o.n_bootstrap, seed=seed,
                                    metrics=False).estimate
    return estimates, page_aware


def _rows(
    policies: dict[str, Any],
    estimates: dict[str, Any],
    page_aware: dict[str, Any],
    logged_truth: dict[str, Any],
    deployed: dict[str, Any],
) -> tuple[DemoRow, ...]:
    return tuple(
        DemoRow(
            policy=name,
            replay=float(estimates[name].value),
            low=float(estimates[name].interval[0]),
            high=float(estimates[name].interval[1]),
            se=float(estimates[name].se),
            n_matched=int(estimates[name].n_matched),
            truth_logged=logged_truth[name].take_fraction,
            truth_deployed=deployed[name].take_fraction,
            diversity=deployed[name].diversity,
            churn=deployed[name].churn,
            page_aware=float(page_aware[name].value),
            page_aware_low=float(page_aware[name].interval[0]),
            page_aware_high=float(page_aware[name].interval[1]),
        )
        for name in policies
    )


def _report(
    o: DemoOptions, seed: int, out: Path, logged: _Logged, rows: tuple[DemoRow, ...], example: tuple[ExampleRow, ...],
    steps: _Steps,
) -> DemoReport:
    """7. Figure 3 and the files: csv, markdown, json, the plot."""
    world, train_run, test_run = logged.world, logged.train_run, logged.test_run
    ex = world.example
    example_images = ("", "")
    example_title = ""
    if ex is not None:
        example_title = world.title_names[ex.title]
        example_images = (
            world.image_ids[int(world.title_images[ex.title, ex.comedian_image])],
            world.image_ids[int(world.title_images[ex.title, ex.couple_image])],
        )
    files = {"train_log": out / "exploration-train.parquet", "heldout_log": out / "exploration-heldout.parquet"}
    files["csv"] = out / "results.csv"
    with open(files["csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        names = [*DemoRow.__dataclass_fields__, "covered"]
        writer.writerow(names)
        for r in rows:
            writer.writerow([*asdict(r).values(), r.covered])
    summary = (
        f"{world.n_members} members, {world.n_titles} titles, {world.n_images_total} images; "
        f"{train_run.n_impressions} training and {test_run.n_impressions} held-out impressions"
    )
    info = {
        "summary": summary,
        "estimator": o.estimator,
        "n_bootstrap": o.n_bootstrap,
        "train_days": logged.train_days,
        "heldout_days": o.heldout_days,
        "world": world.summary(),
        "logged_take_fraction": test_run.value().take_fraction,
        "seconds_by_step": steps.times,
    }
    report = DemoReport(
        output_dir=out,
        seed=seed,
        rows=rows,
        example=example,
        example_title=example_title,
        example_images=example_images,
        files=files,
        seconds=0.0,
        info=info,
    )
    files["markdown"] = out / "results.md"
    files["markdown"].write_text(report.to_markdown())
    files["json"] = out / "results.json"
    files["json"].write_text(
        json.dumps(
            {
                "seed": seed,
                "rows": [{**asdict(r), "covered": r.covered} for r in rows],
                "example": [asdict(e) for e in example],
                "info": info,
            },
            indent=2,
        )
    )
    png = _plot(rows, out / "take_fraction.png")
    if png is not None:
        files["png"] = png
    steps.step("outputs")
    return report


def run_demo(
    output_dir: str | Path,
    seed: int = 0,
    progress: bool = True,
    *,
    options: DemoOptions | None = None,
    **overrides: Any,
) -> DemoReport:
    """Run the demo and write its outputs into ``output_dir`` (created if needed).

    Parameters
    ----------
    output_dir : str or path
    seed : int, default 0
        Seeds the world, the sessions, the logging policy, the bandits and the bootstrap.
    progress : bool, default True
        Show a progress bar.
    options : DemoOptions, optional
        World size, held-out days, page-optimizer weights, bootstrap and estimator.
    **overrides
        Fields of :class:`DemoOptions` (``n_members=``, ``heldout_days=``, ...), replacing those
        of ``options``.

    Returns
    -------
    DemoReport

    Raises
    ------
    InvalidProblemError
        ``heldout_days`` is not in ``1..n_days - 1``.
    UnknownOptionError
        A keyword that is not a field of :class:`DemoOptions`.
    """
    o = _options(options, overrides)
    started = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = _Steps(total=7, enabled=progress)
    try:
        logged = _explore(o, seed, out, steps)
        take_rate, contextual, features, keep = _train(logged, seed)
        steps.step("training")

        contextual_scorer = bandit_scorer(contextual, features, columns=keep)
        take_rate_scorer = bandit_scorer(take_rate, features)
        policies = _policies(o, seed, take_rate_scorer, contextual_scorer)

        # 4. the policies on the held-out logged pages: their choices, and replay's true target
        logged_truth = {}
        for name, policy in policies.items():
            logged_truth[name] = counterfactual_value(logged.test_run, policy, name=name)
        steps.step("policies on logged pages")

        estimates, page_aware = _replay(o, seed, logged, policies, logged_truth)
        steps.step("replay")

        # 6. the truth if deployed: on-policy, held-out days, common random numbers
        deployed = {}
        for name, policy in policies.items():
            deployed[name] = policy_value(logged.test_schedule, policy, state=logged.train_run.final_state, name=name)
        steps.step("truth if deployed")

        rows = _rows(policies, estimates, page_aware, logged_truth, deployed)
        example = _example(logged.world, contextual_scorer, logged.train_days)
        report = _report(o, seed, out, logged, rows, example, steps)
    finally:
        steps.close()
    return replace(report, files=dict(report.files), seconds=time.perf_counter() - started)
