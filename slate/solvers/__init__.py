"""Page solvers behind one interface and a name registry.

=============  ===============================================================================
name           what it does
=============  ===============================================================================
``exact``      MILP on the local-marginal-polytope linearisation, solved by HiGHS (proves optimality)
``fast``       greedy + local search (numba), with a Lagrangian upper bound; the serving default
``chain``      exact dynamic programming when only row neighbours interact (budget included)
``auto``       picks by structure and size under a time budget; always returns a valid page
``independent`` per-title argmax, the page-blind baseline
=============  ===============================================================================

:func:`certify` proves an upper bound on a page's optimum within a time budget
(:mod:`slate.solvers.certify`); ``auto`` uses it to certify ``fast``'s page.
"""

from slate.solvers.auto import AutoSolver
from slate.solvers.base import SOLVERS, Solver, available_solvers, get_solver, register_solver, solve
from slate.solvers.certify import Certificate, certify
from slate.solvers.chain import ChainSolver
from slate.solvers.exact import ExactSolver, build_cvxpy_problem, solve_cvxpy
from slate.solvers.fast import FastSolver, lagrangian_bound, local_search
from slate.solvers.independent import IndependentSolver
from slate.solvers.result import SolveResult, Status, make_result

__all__ = [
    "SOLVERS",
    "AutoSolver",
    "Certificate",
    "ChainSolver",
    "ExactSolver",
    "FastSolver",
    "IndependentSolver",
    "SolveResult",
    "Solver",
    "Status",
    "available_solvers",
    "build_cvxpy_problem",
    "certify",
    "get_solver",
    "lagrangian_bound",
    "local_search",
    "make_result",
    "register_solver",
    "solve",
    "solve_cvxpy",
]
