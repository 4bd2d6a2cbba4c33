"""Fixtures shared across test folders."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def postgres_url() -> str:
    """A PostgreSQL database for tests (NASFLOW_TEST_POSTGRES_URL): skipped without one, failed in CI.

    ``eval "$(scripts/start_test_postgres.sh)"`` starts such a server; CI starts one (``.ci/run``).
    """
    url = os.environ.get("NASFLOW_TEST_POSTGRES_URL")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(
            "NASFLOW_TEST_POSTGRES_URL is required in CI (.ci/run starts a server with "
            "scripts/start_test_postgres.sh)"
        )
    pytest.skip('NASFLOW_TEST_POSTGRES_URL is not set (eval "$(scripts/start_test_postgres.sh)" starts one)')


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path) -> str:  # noqa: ANN001
    """A database URL on each persistent backend: a SQLite file, then PostgreSQL (see postgres_url)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("postgres_url")
