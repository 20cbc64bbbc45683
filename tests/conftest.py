import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("SLATE_TUTORIAL_REQUESTS", "150")  # docs/tutorial-own-data.md at test size
os.environ.setdefault("SLATE_STRICT", "1")  # compose raises on a scorer's wrong-shape output in tests

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# a real Redis server for the Redis store tests (no mocks): one per test session, persistence off
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def redis_server():
    from slate.testing.stores import redis_server as start

    with start() as server:
        yield server
