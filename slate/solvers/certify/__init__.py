"""Certificates: proven upper bounds on a page's optimum within a serving budget.

=========================  ==========================================================================
function                   what it proves
=========================  ==========================================================================
``certify``                the tightest bound that fits the budget (the entry point ``auto`` uses)
``polytope_certificate``   local-polytope dual (MPLP) with exact completion of the non-tight titles
``embedding_certificate``  the Lagrangian embedding-sum bound (dense layouts, ``max(0, cos)`` similarity)
=========================  ==========================================================================
"""

from slate.solvers.certify.certificate import OPTIMAL_RTOL, Certificate, meets
from slate.solvers.certify.embedding import (
    embedding_bound,
    embedding_certificate,
    has_non_negative_cosines,
    layout_factor,
)
from slate.solvers.certify.polytope import polytope_certificate
from slate.solvers.certify.select import certify, is_dense, warm_up

__all__ = [
    "OPTIMAL_RTOL",
    "Certificate",
    "certify",
    "embedding_bound",
    "embedding_certificate",
    "has_non_negative_cosines",
    "is_dense",
    "layout_factor",
    "meets",
    "polytope_certificate",
    "warm_up",
]
