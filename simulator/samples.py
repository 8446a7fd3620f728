"""Sample print files for the development stack: the simulator also stands in for a merchant's
file server, so ``make run``'s example orders have files the preflight check can fetch.

- ``poster-a3.pdf``: one page of 303 × 426 mm, an A3 poster with its 3 mm bleed: passes;
- ``poster-a3-72dpi.png``: the same area at 72 dpi (859 × 1208 pixels): fails
  ``low_resolution``, so its order is held before the cutoff.

Made once per process, in memory, with Pillow and pypdf; served with an ETag (their sha256).
"""

from __future__ import annotations

import hashlib
import io
from functools import cache

from fastapi import APIRouter, Request
from fastapi.responses import Response
from PIL import Image
from pypdf import PdfWriter

from simulator.wire import error_response

router = APIRouter()

POINTS_PER_MM = 72 / 25.4
GOOD = "poster-a3.pdf"
LOW_RESOLUTION = "poster-a3-72dpi.png"


def _pdf(width_mm: float, height_mm: float) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=width_mm * POINTS_PER_MM, height=height_mm * POINTS_PER_MM)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _png(width: int, height: int, dpi: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (230, 120, 40)).save(out, format="PNG", dpi=(dpi, dpi))
    return out.getvalue()


@cache
def samples() -> dict[str, tuple[bytes, str]]:
    """Name → (bytes, media type)."""
    return {
        GOOD: (_pdf(303, 426), "application/pdf"),
        LOW_RESOLUTION: (_png(859, 1208, 72), "image/png"),
    }


@router.get("/samples/{name}", response_model=None)
async def sample(name: str, request: Request) -> Response:
    found = samples().get(name)
    if found is None:
        return error_response(404, "not_found", f"no sample {name!r}")
    data, media_type = found
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(data, media_type=media_type, headers={"ETag": etag})
