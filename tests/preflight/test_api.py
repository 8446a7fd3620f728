"""Print files checked before the cutoff, end to end through the API and its worker (the real
preflight queue and activity, a real local file server, SQLite and PostgreSQL, real SMTP): a
72-dpi poster is held before the cutoff, the merchant is e-mailed and sees each problem on the
file; a replaced file passes and the order reaches the facility with the bytes' sha256."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image
from temporalio.testing import WorkflowEnvironment

from tests.helpers.api import Api, order_json, running_api
from tests.helpers.file_server import FileServer


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 90, 160)).save(out, format="PNG")
    return out.getvalue()


# poster_a3_matte: 303 × 426 mm with its bleed; 150 dpi needs 1790 × 2516 pixels.
LOW = png(859, 1208)
GOOD = png(1790, 2516)


async def test_a_72_dpi_poster_is_held_before_the_cutoff_and_a_fix_goes_to_print(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path, files: FileServer
) -> None:
    async with running_api(
        dev_env.client, database_url, tmp_path, preflight="on", preflight_allow_private=True
    ) as api:
        key = Api.auth(await api.merchant())
        low = files.file("/rose-72dpi.png", LOW, content_type="image/png")
        item = {
            "item_reference_id": "poster-1",
            "product_uid": "poster_a3_matte",
            "quantity": 1,
            "files": [{"type": "default", "url": low}],
        }
        # Iceland's facility cuts off every 2 seconds: the hold must come before it prints.
        created = await api.client.post(
            "/v1/orders", json=order_json("ROSE-1", country="IS", items=[item]), headers=key
        )
        assert created.status_code == 201, created.text
        assert created.json()["items"][0]["files"][0]["preflight"] == {
            "status": "pending",
            "checks": [],
            "sha256": None,
            "bytes": None,
            "type": None,
            "pixels": None,
            "dpi": None,
            "proceeded": False,
        }
        order_id = created.json()["id"]

        held = await api.until(key, order_id, lambda o: o["status"] == "on_hold")
        assert held["hold"]["kind"] == "file_issue"
        assert held["allowed_actions"]["cancel"] is True
        preflight = held["items"][0]["files"][0]["preflight"]
        assert preflight["status"] == "failed" and preflight["pixels"] == [859, 1208]
        [check] = preflight["checks"]
        assert (check["code"], check["found"], check["needed"]) == (
            "low_resolution",
            "72 dpi",
            "150 dpi",
        )
        mail = await api.mail.wait_for(lambda m: "ROSE-1 is on hold" in str(m["Subject"]), 20)
        text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "item poster-1, file 1" in text and "150 dpi" in text
        assert await api.facility("/print-jobs") == []

        good = files.file("/rose.png", GOOD, content_type="image/png")
        fixed = await api.client.post(
            f"/v1/orders/{order_id}/resolve-hold",
            json={
                "action": "replace_files",
                "files": {"poster-1": [{"type": "default", "url": good}]},
            },
            headers=key,
        )
        assert fixed.status_code == 200, fixed.text
        printed = await api.until(key, order_id, lambda o: o["status"] == "in_production")
        assert printed["items"][0]["files"][0]["preflight"]["status"] == "passed"
        [job] = await api.facility("/print-jobs")
        assert job["request"]["items"][0]["files"][0]["sha256"] == hashlib.sha256(GOOD).hexdigest()
        types = [e["type"] for e in printed["events"]]
        assert types.index("hold_resolved") < types.index("files_checked")
        assert types.index("files_checked") < types.index("in_production")
