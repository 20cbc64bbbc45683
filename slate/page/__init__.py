"""The page problem: titles, candidate images, layout, and the joint objective."""

from slate.page.io import problem_from_dict, problem_to_dict, read_optimum, read_problem, write_problem
from slate.page.layout import DenseLayout, ExplicitPairs, GridLayout, Layout, grid_positions
from slate.page.problem import (
    Interactions,
    ObjectiveParts,
    PageProblem,
    ProblemFields,
    Quotas,
    Stability,
    Weights,
    cosine_similarity_pairs,
)
from slate.page.random import LAYOUT_KINDS, make_layout, random_problem
from slate.page.request import Page, PageRequest, TitleRequest, parse_request

__all__ = [
    "LAYOUT_KINDS",
    "DenseLayout",
    "ExplicitPairs",
    "GridLayout",
    "Interactions",
    "Layout",
    "ObjectiveParts",
    "Page",
    "PageProblem",
    "PageRequest",
    "ProblemFields",
    "Quotas",
    "Stability",
    "TitleRequest",
    "Weights",
    "cosine_similarity_pairs",
    "grid_positions",
    "make_layout",
    "parse_request",
    "problem_from_dict",
    "problem_to_dict",
    "random_problem",
    "read_optimum",
    "read_problem",
    "write_problem",
]
