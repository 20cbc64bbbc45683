"""Off-policy evaluation on the Open Bandit Dataset sample: Bernoulli-TS from uniform-random logs.

The Open Bandit Dataset (Saito et al. 2021) holds real ZOZOTOWN logs of two policies run side by
side: uniform random and Bernoulli Thompson sampling (BTS) with the production prior. The sample
shipped with obp has 10,000 rows per policy and campaign (``all``: 80 items, ``men``: 34,
``women``: 46; 3 positions). Estimating BTS's click rate from the random logs and comparing it
with BTS's on-policy click rate (the mean click of its own logs) is obp's standard benchmark.

slate's side: ``slate.logs.read_open_bandit_dataset`` (one page per row, the position as its
title, every item a candidate), BTS's distribution over (item, position) by
``slate.logs.obp.bernoulli_ts_distribution`` (Monte Carlo over the prior in ``prior_bts.yaml``),
each row's target the distribution at its position, and ``slate.replay.evaluate`` with replay
(rejection sampling), IPS, SNIPS, DM and DR, the last two with slate's default cross-fitted
take-rate model, refitted in every bootstrap replicate (rows ``dm``, ``dr``) and held fixed
(rows ``dm fixed``, ``dr fixed``: intervals without the model's estimation error). Relative
error = |estimate - on-policy value| / on-policy value; "covers" says whether the 95% interval
holds the on-policy value.

When obp is importable, obp's own pipeline runs in the same process on the same files: its
``OpenBanditDataset``, ``BernoulliTS(is_zozotown_prior=True).compute_batch_action_dist``, a
``RegressionModel`` over ``LogisticRegression(C=100)`` (3-fold cross-fitting) and
``OffPolicyEvaluation`` with IPW, SNIPW, DM and DR.

Run::

    python validation/open_bandit_dataset.py --seed 0

References
----------
Saito, Y., Aihara, S., Matsutani, M. & Narita, Y. (2021). Open Bandit Dataset and Pipeline:
towards realistic and reproducible off-policy evaluation. NeurIPS Datasets and Benchmarks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import CAMPAIGNS, at_position, dataset_paths, obp_or_none, read_prior, slate_log, versions
from scipy import stats as sps

from slate.logs import open_bandit_feedback
from slate.logs.obp import bernoulli_ts_distribution
from slate.replay import evaluate

SLATE_ESTIMATORS = ("replay", "ips", "snips", "dm", "dr")
OBP_NAME = {"ips": "ipw", "snips": "snipw", "dm": "dm", "dr": "dr"}
PUBLISHED = {"ips": 0.084, "snips": 0.137, "dm": 0.159, "dr": 0.151}
"""obp's relative errors on campaign 'all' (random -> bts), as measured by the issue's author."""


def on_policy(root: Path, campaign: str) -> tuple[float, int, tuple[float, float]]:
    """BTS's click rate on its own logs, its clicks and a 95% Clopper-Pearson interval."""
    reward = open_bandit_feedback(root / "bts" / campaign)["reward"]
    k, n = int(reward.sum()), len(reward)
    lo = float(sps.beta.ppf(0.025, k, n - k + 1)) if k else 0.0
    hi = float(sps.beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    return k / n, k, (lo, hi)


def slate_side(root: Path, prior: Path, campaign: str, args: argparse.Namespace) -> dict[str, Any]:
    feedback = open_bandit_feedback(root / "random" / campaign)
    log = slate_log(feedback, action_ids=feedback["action_ids"])
    alpha, beta = read_prior(prior, campaign)
    len_list = int(feedback["position"].max()) + 1
    dist = bernoulli_ts_distribution(alpha, beta, len_list=len_list, n_sim=args.n_sim, seed=args.seed)
    probs = at_position(np.broadcast_to(dist, (log.n_rows, *dist.shape)), feedback["position"])
    report = evaluate(log, {"probs": probs, "name": "bts"}, list(SLATE_ESTIMATORS),
                      n_bootstrap=args.n_bootstrap, seed=args.seed, metrics=False)
    # the same DM and DR with the take-rate model held fixed (intervals without its error)
    held = evaluate(log, {"probs": probs, "name": "bts"}, ["dm", "dr"], n_bootstrap=args.n_bootstrap,
                    seed=args.seed, metrics=False, refit_reward_model=False)
    estimates = dict(report.estimates)
    estimates.update({f"{k} fixed": v for k, v in held.estimates.items()})
    return {"dist": dist, "estimates": estimates, "clicks": int(log.reward.sum()),
            "n": log.n_rows}


def obp_side(root: Path, campaign: str, args: argparse.Namespace) -> dict[str, Any]:
    from obp.dataset import OpenBanditDataset
    from obp.ope import (
        DirectMethod,
        DoublyRobust,
        InverseProbabilityWeighting,
        OffPolicyEvaluation,
        RegressionModel,
        SelfNormalizedInverseProbabilityWeighting,
    )
    from obp.policy import BernoulliTS
    from sklearn.linear_model import LogisticRegression

    dataset = OpenBanditDataset(behavior_policy="random", campaign=campaign, data_path=root)
    feedback = dataset.obtain_batch_bandit_feedback()
    policy = BernoulliTS(n_actions=dataset.n_actions, len_list=dataset.len_list,
                         is_zozotown_prior=True, campaign=campaign, random_state=args.seed)
    action_dist = policy.compute_batch_action_dist(n_sim=args.n_sim, n_rounds=feedback["n_rounds"])
    model = RegressionModel(
        n_actions=dataset.n_actions, len_list=dataset.len_list,
        action_context=feedback["action_context"],
        base_model=LogisticRegression(C=100, max_iter=10_000, random_state=args.seed),
    )
    q = model.fit_predict(context=feedback["context"], action=feedback["action"],
                          reward=feedback["reward"], position=feedback["position"],
                          n_folds=3, random_state=args.seed)
    ope = OffPolicyEvaluation(
        bandit_feedback=feedback,
        ope_estimators=[InverseProbabilityWeighting(), SelfNormalizedInverseProbabilityWeighting(),
                        DirectMethod(), DoublyRobust()],
    )
    values = ope.estimate_policy_values(action_dist=action_dist, estimated_rewards_by_reg_model=q)
    truth = OpenBanditDataset.calc_on_policy_policy_value_estimate(
        behavior_policy="bts", campaign=campaign, data_path=root)
    return {"dist": action_dist[0], "values": {k: float(values[v]) for k, v in OBP_NAME.items()},
            "truth": float(truth)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--campaign", nargs="+", default=list(CAMPAIGNS), choices=CAMPAIGNS)
    parser.add_argument("--data", help="the Open Bandit Dataset folder (holding random/ and bts/)")
    parser.add_argument("--prior", help="prior_bts.yaml")
    parser.add_argument("--cache", help="download folder (default ~/.cache/slate/obp-0.4.1)")
    parser.add_argument("--n-sim", type=int, default=100_000, help="Bernoulli-TS Monte Carlo pages")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--no-obp", action="store_true", help="skip obp's own run even if installed")
    args = parser.parse_args(argv)
    root, prior = dataset_paths(args.data, args.prior, args.cache)
    with_obp = not args.no_obp and obp_or_none() is not None
    print(versions())
    print(f"seed {args.seed}, n_sim {args.n_sim}, n_bootstrap {args.n_bootstrap}"
          + ("" if with_obp else ", obp not run"))
    for campaign in args.campaign:
        t = time.perf_counter()
        truth, clicks, (t_lo, t_hi) = on_policy(root, campaign)
        ours = slate_side(root, prior, campaign, args)
        theirs = obp_side(root, campaign, args) if with_obp else None
        print(f"\ncampaign '{campaign}': random logs {ours['n']} rows, {ours['clicks']} clicks; "
              f"BTS on-policy click rate {truth:.6f} ({clicks} clicks of 10000, 95% CI "
              f"[{t_lo:.4f}, {t_hi:.4f}])")
        if theirs is not None:
            a, b = ours["dist"], theirs["dist"]
            pooled = (a + b) / 2
            se = np.sqrt(2 * pooled * (1 - pooled) / args.n_sim)  # of a difference of two runs
            z = np.abs(a - b)[se > 0] / se[se > 0]
            print(f"BTS distribution ({a.shape[0]} items x {a.shape[1]} positions), slate vs obp "
                  f"(independent Monte Carlo runs): max |diff| {float(np.abs(a - b).max()):.4f}, "
                  f"max |z| {float(z.max()):.2f} over {z.size} cells; obp's on-policy value "
                  f"{theirs['truth']:.6f}")
        head = (f"{'estimator':<10}{'estimate':>10}{'95% interval':>20}{'covers':>8}{'rel. error':>12}"
                f"{'obp published':>15}")
        if theirs is not None:
            head += f"{'obp estimate':>14}{'obp rel. error':>16}"
        print(head)
        for name in (*SLATE_ESTIMATORS, "dm fixed", "dr fixed"):
            e = ours["estimates"][name]
            lo, hi = e.interval
            row = (f"{name:<10}{e.value:>10.6f}{f'[{lo:.5f}, {hi:.5f}]':>20}"
                   f"{'yes' if lo <= truth <= hi else 'no':>8}{abs(e.value - truth) / truth:>12.3f}")
            pub = PUBLISHED.get(name) if campaign == "all" else None
            if name.endswith("fixed"):
                print(row)
                continue
            row += f"{pub:>15.3f}" if pub is not None else f"{'-':>15}"
            if theirs is not None:
                if name in theirs["values"]:
                    v = theirs["values"][name]
                    row += f"{v:>14.6f}{abs(v - truth) / truth:>16.3f}"
                else:
                    row += f"{'-':>14}{'-':>16}"
            print(row)
        print(f"({time.perf_counter() - t:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
