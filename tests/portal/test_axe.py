"""The accessibility check of the browser tests can fail: axe-core finds what it should."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.accessibility import assert_accessible
from tests.helpers.browser import CHROMIUM, browser

__all__ = ["browser"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]


async def test_a_page_without_a_label_fails_the_check(browser: object) -> None:
    page = await (await browser.new_context()).new_page()  # type: ignore[attr-defined]
    await page.set_content("<html><body><input type='text'></body></html>")
    with pytest.raises(AssertionError, match="label"):
        await assert_accessible(page, "a bare input")
