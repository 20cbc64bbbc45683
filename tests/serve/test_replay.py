"""Inverse-propensity replay on compose() logs with sticky exploration is unbiased.

A small world with known take probabilities per (member, title, image); compose() serves pages
with a noisy model, dwell-free stability, sticky epsilon exploration under a budget of one
explored title per page. On the randomized rows, the IPS estimate of a different target policy's
take rate must cover the true value; the same estimate with a propensity that ignores the
exploration budget has a clearly different expectation (so the test can fail).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from slate.serve import ComposeConfig, Composer, PageRequest, StickyEpsilon
from slate.stability import InMemoryStore, Reason, StabilityRules

N_MEMBERS, N_TITLES, N_IMAGES, N_SESSIONS = 100, 20, 3, 20
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def test_ips_on_compose_logs_is_unbiased():
    rng = np.random.default_rng(42)
    truth = rng.uniform(0.02, 0.3, size=(N_MEMBERS, N_TITLES, N_IMAGES))
    model = np.clip(truth + rng.normal(0, 0.05, truth.shape), 0, 1)  # the logging policy's belief
    target = rng.integers(0, N_IMAGES, size=(N_MEMBERS, N_TITLES))  # the policy to evaluate

    epsilon, cap = 0.6, 1
    explore = StickyEpsilon(epsilon, max_explored=cap, sticky_sessions=3, sticky_days=None, seed=7)
    composer = Composer(
        lambda request: model[request.member_id],
        InMemoryStore(),
        explore,
        config=ComposeConfig(solver="independent", solver_time_ms=1000.0, solver_grace_ms=1000.0,
                             scoring_budget_ms=1000.0, store_budget_ms=1000.0,
                             stability=StabilityRules(churn=0.0)),
    )
    titles = [{"title_id": f"T{t}", "image_ids": [f"T{t}-I{k}" for k in range(N_IMAGES)], "row": 0, "col": t}
              for t in range(N_TITLES)]
    terms, wrong_terms, values, clusters = [], [], [], []
    for session in range(N_SESSIONS):
        for member in range(N_MEMBERS):
            request = PageRequest.model_validate(
                {"member_id": member, "session_id": session, "titles": titles,
                 "timestamp": T0 + timedelta(hours=session)})
            d = composer.compose(request)
            assert d.status == "ok"
            shown = np.array([int(i.rsplit("I", 1)[1]) for i in d.image_ids])
            # the expected reward of the shown image (Bernoulli noise adds variance, not bias)
            reward = truth[member, np.arange(N_TITLES), shown]
            randomized = d.propensity < 1.0
            assert randomized.all() or session > 0  # every title is eligible on a first page
            assert np.isin(d.reason[randomized], [Reason.NEW, Reason.FREE, Reason.STICKY]).all()
            hit = shown == target[member]
            # a propensity that forgets the budget: epsilon where the scheme gives q
            wrong = np.where(d.propensity > 0.5, 1 - epsilon + epsilon / N_IMAGES, epsilon / N_IMAGES)
            for t in np.flatnonzero(randomized):
                terms.append(hit[t] * reward[t] / d.propensity[t])
                wrong_terms.append(hit[t] * reward[t] / wrong[t])
                values.append(truth[member, t, target[member, t]])
                clusters.append(member * N_TITLES + t)

    terms_a, values_a, clusters_a = np.array(terms), np.array(values), np.array(clusters)
    estimate, true_value = terms_a.mean(), values_a.mean()
    # standard error clustered by (member, title): a held draw repeats its outcome over sessions
    resid = terms_a - estimate
    per_cluster = np.bincount(clusters_a, weights=resid)
    se = np.sqrt((per_cluster**2).sum()) / len(terms_a)
    assert len(terms_a) > 20_000
    assert abs(estimate - true_value) <= 3.5 * se, (estimate, true_value, se)
    assert se < 0.12 * true_value  # the interval is tight enough to mean something
    # the same estimate with a budget-blind propensity has another expectation: their difference,
    # on the same rows, is far from zero (so this test could tell a wrong propensity apart)
    diff = terms_a - np.array(wrong_terms)
    diff_se = np.sqrt((np.bincount(clusters_a, weights=diff - diff.mean()) ** 2).sum()) / len(diff)
    assert abs(diff.mean()) > 4 * diff_se, (diff.mean(), diff_se)
    print(f"IPS {estimate:.4f} ± {se:.4f} vs truth {true_value:.4f}; "
          f"budget-blind {np.mean(wrong_terms):.4f} (difference {diff.mean():.4f} ± {diff_se:.4f})")
