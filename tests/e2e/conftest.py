"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.browser import chromium


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium (:func:`tests.fixtures.browser.chromium`), quit after the test."""
    with chromium(tmp_path) as driver:
        yield driver
