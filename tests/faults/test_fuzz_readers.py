"""Property-based fuzzing of the two readers of untrusted files: any input to the page-file reader
(:mod:`slate.page.io`) and the log reader (:mod:`slate.logs.parquet`) gives a valid result or a
:class:`~slate.errors.SlateError`, never another exception. Sizes are bounded; examples are few
enough to keep the suite fast."""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slate.errors import SlateError
from slate.logs import read_impressions, scan_impressions, write_impressions
from slate.logs.parquet import example_table, to_version2, validate_impressions
from slate.page import PageProblem
from slate.page.io import problem_from_dict, read_problem

from .conftest import small_page

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

KEYS = ["format", "name", "layout", "rows", "cols", "weights", "diversity", "churn", "max_changes", "titles",
        "id", "row", "col", "previous", "locked", "images", "score", "embedding", "tags", "pairs", "a", "b",
        "weight", "quotas", "optimum"]

SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 1e308, -1e308, 5e-324, "slate.page-problem/1", "T0", "T0-I0", ""]),
    st.text(max_size=8),
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), children, max_size=5),
    ),
    max_leaves=25,
)


def _paths(value, prefix=()):
    """Every path (tuple of keys/indices) inside a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _replace(value, path, new):
    if not path:
        return new
    out = copy.deepcopy(value)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return out


def _valid_or_slate_error(read) -> None:
    try:
        result = read()
    except SlateError as err:
        assert str(err) and "\n" not in str(err).strip(), repr(err)
        return
    assert isinstance(result, PageProblem)
    assert np.isfinite(result.scores).all() and np.isfinite(result.similarity).all()


BASE_PAGE = small_page(n_rows=2, n_cols=2, n_images=2)
BASE_PATHS = list(_paths(BASE_PAGE))


@FUZZ
@given(doc=JSON)
def test_any_json_document_is_a_page_or_a_slate_error(doc):
    _valid_or_slate_error(lambda: problem_from_dict(doc))


@FUZZ
@given(path=st.sampled_from(BASE_PATHS), new=JSON)
def test_a_valid_page_with_any_one_value_replaced_is_a_page_or_a_slate_error(path, new):
    _valid_or_slate_error(lambda: problem_from_dict(_replace(BASE_PAGE, path, new)))


BASE_BYTES = json.dumps(BASE_PAGE).encode()


@FUZZ
@given(data=st.data())
def test_any_damaged_page_file_is_a_page_or_a_slate_error(data):
    raw = bytearray(BASE_BYTES)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "page.json"
        path.write_bytes(bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw))
        _valid_or_slate_error(lambda: read_problem(path))


# ---------------------------------------------------------------------- the log reader
@pytest.fixture(scope="module")
def log_bytes(tmp_path_factory) -> bytes:
    path = write_impressions(tmp_path_factory.mktemp("fuzzlog") / "log.parquet", example_table(), version=1)
    return Path(path).read_bytes()


def _log_or_slate_error(read) -> None:
    try:
        log, report = read()
    except SlateError as err:
        assert str(err) and "\n" not in str(err).strip(), repr(err)
        return
    assert log.n_rows + report.n_rejected >= 0
    assert sum(report.counts.values()) == report.n_rejected


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_damaged_log_file_is_a_log_or_a_slate_error(log_bytes, data):
    raw = bytearray(log_bytes)
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log.parquet"
        path.write_bytes(bytes(raw))
        _log_or_slate_error(lambda: read_impressions(path))

        def streamed():
            chunks = list(scan_impressions(path, chunk_rows=2))
            from slate.logs.stream import merge_reports

            return (chunks[0] if chunks else None), merge_reports([c.rejections for c in chunks])

        try:
            _, report = streamed()
        except SlateError:
            pass
        else:
            assert sum(report.counts.values()) == report.n_rejected


COLUMN_VALUES = {
    "member_id": st.one_of(st.integers(-(2**63), 2**63 - 1), st.none()),
    "session_id": st.one_of(st.integers(-(2**63), 2**63 - 1), st.none()),
    "page_id": st.one_of(st.integers(-(2**63), 2**63 - 1), st.none()),
    "row": st.one_of(st.integers(-(2**63), 2**63 - 1), st.none()),
    "col": st.one_of(st.integers(-(2**63), 2**63 - 1), st.none()),
    "propensity": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()),
    "reward": st.one_of(st.integers(-128, 127), st.none()),
    "explored": st.one_of(st.booleans(), st.none()),
    "title_id": st.one_of(st.sampled_from(["T1", "T2", "", "\x1f"]), st.none()),
    "image_id": st.one_of(st.sampled_from(["T1-a", "T1-b", "T2-a", "T2-b", "x"]), st.none()),
}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_values_in_a_valid_schema_are_rows_or_counted_rejections(data):
    table = example_table()
    n = table.num_rows
    for name in data.draw(st.lists(st.sampled_from(sorted(COLUMN_VALUES)), max_size=4, unique=True)):
        values = data.draw(st.lists(COLUMN_VALUES[name], min_size=n, max_size=n))
        field = table.schema.field(name)
        try:
            column = pa.array(values, type=field.type)
        except (pa.ArrowInvalid, OverflowError):  # not representable in the schema's type
            continue
        table = table.set_column(table.column_names.index(name), field, column)
    _log_or_slate_error(lambda: validate_impressions(table))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), version=st.sampled_from([1, 2]))
def test_columns_of_any_type_are_read_or_refused_with_a_slate_error(data, version):
    table = example_table() if version == 1 else to_version2(example_table()).append_column(
        "feature_0", pa.array([0.5, 1.0, 2.0, 3.0], pa.float32()))
    n = table.num_rows
    kinds = {
        "int": st.lists(st.integers(-5, 5), min_size=n, max_size=n).map(pa.array),
        "float": st.lists(st.floats(allow_nan=True), min_size=n, max_size=n).map(pa.array),
        "str": st.lists(st.text(max_size=3), min_size=n, max_size=n).map(pa.array),
        "null": st.just(pa.nulls(n)),
        "list": st.lists(st.lists(st.integers(0, 3), max_size=2), min_size=n, max_size=n).map(pa.array),
        "strings": st.lists(st.one_of(st.none(), st.lists(st.sampled_from(["T1-a", "T1-b", "\x1f", ""]), max_size=3)),
                            min_size=n, max_size=n).map(pa.array),
        "big": st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n).map(pa.array),
    }
    for name in data.draw(st.lists(st.sampled_from(table.column_names), max_size=3, unique=True)):
        column = data.draw(st.sampled_from(sorted(kinds)).flatmap(lambda k: kinds[k]))
        table = table.set_column(table.column_names.index(name), name, column)
    _log_or_slate_error(lambda: validate_impressions(table))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "typed.parquet"
        pq.write_table(table, path)
        _log_or_slate_error(lambda: read_impressions(path, strict_version=False))


def test_the_fuzzers_reach_both_outcomes():
    """The strategies above are not vacuous: the base inputs read, and a damaged one is refused."""
    assert isinstance(problem_from_dict(BASE_PAGE), PageProblem)
    with pytest.raises(SlateError):
        problem_from_dict(_replace(BASE_PAGE, ("titles",), []))
    log, report = validate_impressions(example_table())
    assert log.n_rows == 4 and report.n_rejected == 0 and not math.isnan(float(log.propensity.sum()))
