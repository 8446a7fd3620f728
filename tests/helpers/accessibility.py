"""Accessibility checks in the browser: axe-core (``axe-playwright-python``, bundled with the
package: nothing downloads) on the page as it is shown, and screenshots for the docs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from axe_playwright_python.async_playwright import Axe

# Impacts that fail a test; "minor" and "moderate" findings are reported by axe but allowed.
FAILING = frozenset({"serious", "critical"})
_AXE = Axe()


async def assert_accessible(page: Any, what: str) -> None:
    """No serious or critical axe-core violation on ``page``, named ``what`` when one is found."""
    results = await _AXE.run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in FAILING]
    assert not bad, f"{what}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n.get("target")) for n in v.get("nodes", [])[:3])
        for v in bad
    )


async def screenshot(page: Any, name: str) -> None:
    """With ``PRINTFLOW_SCREENSHOTS`` set to a directory (docs/portal), keeps the page there."""
    where = os.environ.get("PRINTFLOW_SCREENSHOTS")
    if where:
        # Playwright makes the directory; nothing here touches the disk from the event loop.
        await page.screenshot(path=str(Path(where) / f"{name}.png"), full_page=True)
