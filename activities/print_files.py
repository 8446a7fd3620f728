"""Inspecting a print file already downloaded to a local path: what ``domain.preflight.judge``
needs to know about it (``FileFacts``), read with Pillow and pypdf.

The type comes from the content, never from the name: a file starting with ``%PDF-`` is read
by pypdf; anything else is offered to Pillow, whose ``format`` decides (PNG, JPEG, TIFF; MPO,
the multi-picture JPEG some cameras write, counts as JPEG; any other format Pillow knows, or
content it does not recognize, is type ``None``). An empty file is unreadable.

Images: only the first frame is inspected. Decompression bombs: Pillow's only limit is the
process-wide ``Image.MAX_IMAGE_PIXELS``, which one call cannot change without changing it for
every other inspection running in the worker's threads (and a lock around it would make them
wait for each other). So ``Image.open``, which reads only the header, gives the size, and an
image of more than ``max_pixels`` pixels is reported as ``bomb`` without being decoded. Pillow's
own limit stays in force above ours (a header beyond it is refused by ``Image.open`` and is a
bomb too). Everything else is decoded once (``load``), so a truncated or corrupt image is
``unreadable``; the one decoded image is released before returning.

PDFs: the page count and the first page's size, on its TrimBox when it has one, else on its
MediaBox, times its ``/UserUnit``, with its ``/Rotate`` applied; ``page_box`` says which box.
An encrypted PDF is reported as ``encrypted``; when it opens with an empty password (an owner
password only), its pages are still counted. pypdf's own limits on what it decompresses make
a ``bomb``.

``inspect`` is synchronous and CPU-bound (the caller runs it in a thread) and never raises for
a bad file: every failure to read or parse it becomes ``unreadable`` with a short reason.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from PIL import Image, UnidentifiedImageError
from pypdf import PageObject, PdfReader
from pypdf.errors import LimitReachedError

from domain.preflight import FileFacts, FileType

__all__ = ["DEFAULT_MAX_PIXELS", "PDF_MAGIC", "inspect"]

# The most pixels an image may have to be decoded: more than twice what the largest print area
# of the bundled catalog needs at 300 dpi (A2 with bleed, 426 × 600 mm: 5031 × 7087 px, 36 MP),
# about 240 MB decoded as RGB, and below Pillow's own warning threshold (~89.5 MP).
DEFAULT_MAX_PIXELS = 80_000_000
PDF_MAGIC = b"%PDF-"
_POINTS_TO_MM = 25.4 / 72
_REASON_CHARS = 200

_PILLOW_TYPES: dict[str, FileType] = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}


def inspect(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> FileFacts:
    """What the file at ``path`` is (see the module's docstring); never raises for a bad
    file."""
    try:
        with path.open("rb") as file:
            head = file.read(len(PDF_MAGIC))
    except OSError as error:
        return FileFacts(unreadable=_reason("cannot open the file", error))
    if not head:
        return FileFacts(unreadable="the file is empty")
    if head == PDF_MAGIC:
        return _pdf(path)
    return _image(path, max_pixels)


def _reason(what: str, error: BaseException) -> str:
    detail = (getattr(error, "strerror", None) or str(error)).strip() or type(error).__name__
    return f"{what}: {detail}"[:_REASON_CHARS]


def _image(path: Path, max_pixels: int) -> FileFacts:
    file_type: FileType | None = None
    try:
        with Image.open(path) as image:
            file_type = _PILLOW_TYPES.get(image.format or "")
            width, height = image.size
            facts = FileFacts(type=file_type, pixels=(width, height), dpi=_dpi(image.info))
            if width * height > max_pixels:
                return facts.model_copy(update={"bomb": True})
            if file_type is not None:
                image.load()
            return facts
    except UnidentifiedImageError:
        return FileFacts(type=None)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # The warning is caught too for a process that turns warnings into errors.
        return FileFacts(type=file_type, bomb=True)
    except Exception as error:  # whatever a broken file makes a decoder raise
        return FileFacts(type=file_type, unreadable=_reason("the image data is broken", error))


def _dpi(info: dict[str | tuple[int, int], object]) -> tuple[float, float] | None:
    value = info.get("dpi")
    if not isinstance(value, tuple) or len(value) != 2:
        return None
    try:
        x, y = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) and v > 0 for v in (x, y)):
        return None
    return (x, y)


def _pdf(path: Path) -> FileFacts:
    try:
        reader = PdfReader(path)
        encrypted = reader.is_encrypted
        if encrypted and not _opens_without_password(reader):
            return FileFacts(type="pdf", encrypted=True)
        pages = len(reader.pages)
        if pages == 0:
            return FileFacts(type="pdf", pages=0, encrypted=encrypted)
        size, box = _page_size(reader.pages[0])
        return FileFacts(
            type="pdf", pages=pages, page_size_mm=size, page_box=box, encrypted=encrypted
        )
    except LimitReachedError:
        return FileFacts(type="pdf", bomb=True)
    except Exception as error:  # pypdf raises many kinds for a broken file
        return FileFacts(type="pdf", unreadable=_reason("the PDF is broken", error))


def _opens_without_password(reader: PdfReader) -> bool:
    try:
        return bool(reader.decrypt(""))
    except Exception:  # an unsupported encryption is as closed as a password
        return False


def _page_size(
    page: PageObject,
) -> tuple[tuple[float, float], Literal["TrimBox", "MediaBox"]]:
    box_name: Literal["TrimBox", "MediaBox"] = "TrimBox" if "/TrimBox" in page else "MediaBox"
    box = page.trimbox if box_name == "TrimBox" else page.mediabox
    scale = float(page.user_unit) * _POINTS_TO_MM
    width = round(abs(float(box.width)) * scale, 3)
    height = round(abs(float(box.height)) * scale, 3)
    if page.rotation % 180 == 90:
        width, height = height, width
    return (width, height), box_name
