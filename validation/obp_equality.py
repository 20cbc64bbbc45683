"""slate's IPS / SNIPS / DM / DR against obp's IPW / SNIPW / DM / DR on identical inputs.

Every case is an obp bandit-feedback dict (``action``, ``position``, ``reward``, ``pscore``),
an evaluation policy ``action_dist`` (n_rounds, n_actions, len_list) and reward predictions
``estimated_rewards_by_reg_model`` of the same shape. obp gets them as they are, through
``OffPolicyEvaluation.estimate_policy_values``. slate gets the dict through
``slate.logs.from_obp`` (one page per round, the round's position as its title, every action a
candidate) and, for each round, the slice at its position: ``probs = action_dist[i, :, position[i]]``
and ``reward_model = estimated_rewards[i, :, position[i]]``, which is exactly what obp's
estimators read. The script asserts ``|slate - obp| <= 1e-9`` for every estimator and case and
exits with status 1 otherwise.

Cases: random dicts over several seeds and sizes (one position with ``position=None``,
three and five positions, a stochastic and a deterministic target, with and without ``pi_b``),
and the Open Bandit Dataset sample (uniform-random logs, campaigns all/men/women) with slate's
Monte Carlo Bernoulli-TS distribution and slate's take-rate reward model. With the dataset, obp's
own loader (``OpenBanditDataset``) is also compared with ``slate.logs.open_bandit_feedback``.

Run (needs obp, see validation/README.md)::

    python validation/obp_equality.py --seed 0
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from _common import (
    CAMPAIGNS,
    ESTIMATORS,
    at_position,
    dataset_paths,
    obp_or_none,
    read_prior,
    slate_log,
    versions,
)

from slate.logs import open_bandit_feedback
from slate.logs.obp import bernoulli_ts_distribution
from slate.replay import evaluate, take_rate_model

TOLERANCE = 1e-9
OBP_NAMES = {"ips": "ipw", "snips": "snipw", "dm": "dm", "dr": "dr"}
SIZES = [  # (n_rounds, n_actions, len_list, deterministic target, with pi_b, position key)
    (500, 3, 1, False, False, False),
    (5_000, 10, 3, False, True, True),
    (5_000, 10, 3, True, False, True),
    (20_000, 80, 3, False, False, True),
    (2_000, 20, 5, True, True, True),
]


def random_case(seed: int, n: int, n_actions: int, len_list: int, deterministic: bool,
                with_pi_b: bool, with_position: bool) -> dict[str, Any]:
    """A logged dict, a target and reward predictions, all drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    pi_b = rng.dirichlet(np.full(n_actions, 0.7), size=(n, len_list)).transpose(0, 2, 1)
    pi_b = np.clip(pi_b, 1e-4, None)
    pi_b /= pi_b.sum(axis=1, keepdims=True)
    position = rng.integers(0, len_list, n) if with_position else np.zeros(n, np.int64)
    p = pi_b[np.arange(n), :, position]
    action = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(0, n_actions - 1)
    true_rate = rng.uniform(0.05, 0.6, (n_actions, len_list))
    reward = (rng.random(n) < true_rate[action, position]).astype(np.int64)
    q = np.clip(true_rate[None] + rng.normal(0, 0.05, (n, n_actions, len_list)), 0, 1)
    if deterministic:
        action_dist = np.zeros((n, n_actions, len_list))
        best = q.argmax(axis=1)  # (n, len_list)
        action_dist[np.arange(n)[:, None], best, np.arange(len_list)[None]] = 1.0
    else:
        action_dist = rng.dirichlet(np.full(n_actions, 0.5), size=(n, len_list)).transpose(0, 2, 1)
    feedback: dict[str, Any] = {
        "n_rounds": n, "n_actions": n_actions, "action": action, "reward": reward,
        "pscore": p[np.arange(n), action], "context": rng.normal(size=(n, 3)),
        "action_context": np.eye(n_actions),
    }
    feedback["position"] = position if with_position else None  # None: obp's single position
    if with_pi_b:
        feedback["pi_b"] = pi_b
    return {"feedback": feedback, "action_dist": action_dist, "q": q}


def slate_values(feedback: dict[str, Any], action_dist: np.ndarray, q: np.ndarray) -> dict[str, float]:
    log = slate_log(feedback)
    position = feedback.get("position")
    report = evaluate(log, {"probs": at_position(action_dist, position)}, list(ESTIMATORS),
                      n_bootstrap=0, reward_model=at_position(q, position), metrics=False)
    return {name: report.estimates[name].value for name in ESTIMATORS}


def obp_values(feedback: dict[str, Any], action_dist: np.ndarray, q: np.ndarray) -> dict[str, float]:
    from obp.ope import (
        DirectMethod,
        DoublyRobust,
        InverseProbabilityWeighting,
        OffPolicyEvaluation,
        SelfNormalizedInverseProbabilityWeighting,
    )

    keys = ("n_rounds", "n_actions", "action", "position", "reward", "pscore", "context",
            "action_context")
    ope = OffPolicyEvaluation(
        bandit_feedback={k: feedback[k] for k in keys},
        ope_estimators=[InverseProbabilityWeighting(), SelfNormalizedInverseProbabilityWeighting(),
                        DirectMethod(), DoublyRobust()],
    )
    values = ope.estimate_policy_values(action_dist=action_dist, estimated_rewards_by_reg_model=q)
    return {name: float(values[OBP_NAMES[name]]) for name in ESTIMATORS}


def obd_cases(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    root, prior = dataset_paths(args.data, args.prior, args.cache)
    cases = []
    for campaign in CAMPAIGNS:
        feedback = open_bandit_feedback(root / "random" / campaign)
        alpha, beta = read_prior(prior, campaign)
        len_list = int(feedback["position"].max()) + 1
        dist = bernoulli_ts_distribution(alpha, beta, len_list=len_list, n_sim=args.n_sim,
                                         seed=args.seed)
        n = feedback["n_rounds"]
        action_dist = np.ascontiguousarray(np.broadcast_to(dist, (n, *dist.shape)))
        q2 = take_rate_model(slate_log(feedback, action_ids=feedback["action_ids"]), seed=args.seed)
        q = np.repeat(q2[:, :, None], len_list, axis=2)  # the row's own position is what is read
        cases.append((f"OBD random/{campaign} -> bts", {"feedback": feedback, "action_dist": action_dist,
                                                        "q": q}))
    return cases


def compare_loaders(args: argparse.Namespace) -> bool:
    """obp's ``OpenBanditDataset`` against ``slate.logs.open_bandit_feedback`` on every file."""
    from obp.dataset import OpenBanditDataset

    root, _ = dataset_paths(args.data, args.prior, args.cache)
    print("\nOpen Bandit Dataset loaders: obp.dataset.OpenBanditDataset vs slate.logs.open_bandit_feedback")
    print(f"{'file':<16}{'rounds':>8}{'int arrays':>12}{'tie swaps':>11}{'max |float diff|':>18}")
    ok = True
    for policy in ("random", "bts"):
        for campaign in CAMPAIGNS:
            dataset = OpenBanditDataset(behavior_policy=policy, campaign=campaign, data_path=root)
            theirs = dataset.obtain_batch_bandit_feedback()
            ours = open_bandit_feedback(root / policy / campaign)
            # obp sorts rows by time with pandas' default (unstable) quicksort, slate with a
            # stable sort, so rows with equal timestamps may come in another order: line the
            # rows up by their line in the CSV (pandas' index) before comparing them.
            obp_lines = dataset.data.index.to_numpy()
            slate_lines = (dataset.data.sort_index().sort_values("timestamp", kind="stable")
                           .index.to_numpy())
            where = np.empty(len(slate_lines), np.int64)
            where[slate_lines] = np.arange(len(slate_lines))
            at = where[obp_lines]  # slate's row of each obp row
            swaps = int((obp_lines != slate_lines).sum())
            same_ints = theirs["n_actions"] == ours["n_actions"] and all(
                np.array_equal(np.asarray(theirs[k], float), np.asarray(ours[k], float)[at])
                for k in ("action", "position", "reward", "context"))
            diff = max(float(np.abs(theirs["pscore"] - ours["pscore"][at]).max()),
                       float(np.abs(np.asarray(theirs["action_context"], float)
                                    - ours["action_context"]).max()))
            # pandas' default float parser is not correctly rounded: 1-ulp differences remain
            good = same_ints and diff <= 1e-15
            ok &= good
            print(f"{policy + '/' + campaign:<16}{theirs['n_rounds']:>8}{'equal' if same_ints else 'DIFFER':>12}"
                  f"{swaps:>11}{diff:>18.1e}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="first seed (three consecutive seeds per size)")
    parser.add_argument("--repeats", type=int, default=3, help="seeds per size")
    parser.add_argument("--data", help="the Open Bandit Dataset folder (holding random/ and bts/)")
    parser.add_argument("--prior", help="prior_bts.yaml")
    parser.add_argument("--cache", help="download folder (default ~/.cache/slate/obp-0.4.1)")
    parser.add_argument("--no-obd", action="store_true", help="random cases only (no download)")
    parser.add_argument("--n-sim", type=int, default=100_000, help="Bernoulli-TS Monte Carlo pages")
    args = parser.parse_args(argv)
    if obp_or_none() is None:
        print("obp is not installed; see validation/README.md", file=sys.stderr)
        return 2
    print(versions())
    cases: list[tuple[str, dict[str, Any]]] = []
    for i, (n, a, n_pos, det, pib, pos) in enumerate(SIZES):
        for r in range(args.repeats):
            seed = args.seed + 1000 * i + r
            label = (f"random n={n} A={a} L={n_pos}{' det' if det else ''}{' pi_b' if pib else ''}"
                     f"{'' if pos else ' no-pos'} s={seed}")
            cases.append((label, random_case(seed, n, a, n_pos, det, pib, pos)))
    if not args.no_obd:
        cases += obd_cases(args)
    print(f"\nmax |slate - obp| per estimator (tolerance {TOLERANCE:g})")
    print(f"{'case':<44}" + "".join(f"{e:>10}" for e in ESTIMATORS) + f"{'obp dr':>12}{'s':>6}")
    worst = dict.fromkeys(ESTIMATORS, 0.0)
    for label, case in cases:
        t = time.perf_counter()
        ours = slate_values(case["feedback"], case["action_dist"], case["q"])
        theirs = obp_values(case["feedback"], case["action_dist"], case["q"])
        diffs = {e: abs(ours[e] - theirs[e]) for e in ESTIMATORS}
        for e in ESTIMATORS:
            worst[e] = max(worst[e], diffs[e])
        print(f"{label:<44}" + "".join(f"{diffs[e]:>10.1e}" for e in ESTIMATORS)
              + f"{theirs['dr']:>12.6f}{time.perf_counter() - t:>6.1f}")
    print(f"{'worst':<44}" + "".join(f"{worst[e]:>10.1e}" for e in ESTIMATORS))
    ok = all(v <= TOLERANCE for v in worst.values())
    # A control that must fail: slate given every round's distribution at position 0 instead of
    # at its own position. The comparison above is only meaningful if this differs.
    label, case = cases[3 * args.repeats]  # the first n=20000, 80 actions, 3 positions case
    wrong = case["action_dist"].copy()
    wrong[:] = case["action_dist"][:, :, :1]
    ours = slate_values(case["feedback"], wrong, case["q"])
    theirs = obp_values(case["feedback"], case["action_dist"], case["q"])
    control = {e: abs(ours[e] - theirs[e]) for e in ESTIMATORS}
    print(f"\ncontrol: slate given position 0's distribution on every round of '{label}' "
          "(must differ from obp by more than the tolerance)")
    print(f"{'control':<44}" + "".join(f"{control[e]:>10.1e}" for e in ESTIMATORS))
    ok &= min(control[e] for e in ("ips", "snips", "dr")) > TOLERANCE
    if not args.no_obd:
        ok &= compare_loaders(args)
    print("\nPASS" if ok else "\nFAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
