"""Helpers shared by several subpackages, low in the layering (numpy and :mod:`slate.errors` only).

Not a public API: names here may change without notice. A helper lives here when two
subpackages need it and neither should import the other's private names
(``tests/test_architecture.py`` forbids that).
"""
