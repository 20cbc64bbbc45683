"""Reusable test helpers for code built on slate (e.g. a third-party state store).

>>> from slate.testing.stores import STORE_CHECKS
>>> "no_lost_updates_under_threads" in [check.__name__.removeprefix("check_") for check in STORE_CHECKS]
True
"""
