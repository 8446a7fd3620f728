"""Preflight: whether a merchant's print file can be printed on a product, decided before the
production cutoff from what inspecting the file found (``FileFacts``).

``judge`` returns one ``Check`` per problem, all of them at once; an empty list passes. The
rules, in order:

- a file that could not be parsed (``unreadable``) gets only ``unreadable_file``, and a file too
  large to open safely (``bomb``) only ``file_too_large``: nothing else about them is known;
- a file that is not a PDF, PNG, JPEG or TIFF gets only ``unsupported_file_type``; one whose type
  the product does not take gets it too, and the checks below still run, so the merchant learns
  everything to fix in one answer. A product's ``file_types`` may name a type by its MIME type
  (``image/png``, as ``domain/catalog.json`` does) or by its short name (``png``);
- an encrypted PDF, or one without pages, gets ``unreadable_file`` and no page check;
- without a product only the above (the type is known, the file is readable) is checked.

Against a product, the print area is the one named ``area``, or the product's first when
``area`` is ``None`` or names none of its areas (an order's files have a free-form ``type``,
often ``default``). The area counts with its bleed on every side: 297 × 420 mm with 3 mm bleed
is 303 × 426 mm. A file may fill the area either way round: a landscape file for a portrait
poster is turned a quarter, so each file is measured in the orientation that fits it better
(the one cropping less; when both crop alike, the one with more dpi).

- Images (PNG, JPEG, TIFF): the effective resolution is the image's pixels over the area with
  bleed, the lower of the two axes; the dpi written in the file's metadata plays no part.
  Below the area's ``min_dpi`` it is ``low_resolution``; an image one pixel short on an axis
  still passes (``PIXEL_SLACK``), since exporting tools round sizes to whole pixels. When the
  image's proportions differ from the area's, filling the area crops the image; more than
  ``ASPECT_TOLERANCE`` of it cropped is ``aspect_mismatch``.
- PDFs: the first page's size (``FileFacts.page_box`` says which box it is) against the area:
  a TrimBox is the finished size and is compared with the area without bleed, a MediaBox with
  the area with bleed. More than ``PAGE_TOLERANCE_MM`` off on either side, in both
  orientations, is ``page_size_mismatch``. The images inside a PDF are not measured.

Each ``Check`` carries one plain sentence for the merchant with the numbers, and short ``found``
and ``needed`` values (``150 dpi`` / ``300 dpi``).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from domain.catalog import PrintArea, Product

__all__ = [
    "ASPECT_TOLERANCE",
    "FILE_TYPES",
    "MM_PER_INCH",
    "PAGE_TOLERANCE_MM",
    "PIXEL_SLACK",
    "Check",
    "CheckCode",
    "FileFacts",
    "FilePreflight",
    "FileType",
    "PreflightStatus",
    "accepts",
    "preflight_task_queue",
    "judge",
]

FileType = Literal["pdf", "png", "jpeg", "tiff"]
FILE_TYPES: tuple[FileType, ...] = ("pdf", "png", "jpeg", "tiff")

MM_PER_INCH = 25.4
# The share of an image that may be cut off when it is scaled to fill its print area. Rounding
# a correctly sized file to whole pixels, or an area to whole millimetres, changes proportions
# by far less; 1 % of a side is 4 mm on an A3 poster, about what the bleed trims away anyway.
ASPECT_TOLERANCE = 0.01
# How far, in millimetres, a PDF page may be from its print area on each side: what converting
# millimetres to points and back, and exporting tools' rounding, move a page size.
PAGE_TOLERANCE_MM = 1.0
# Pixels an image may be short of the area's min_dpi on each axis: tools round to whole pixels.
PIXEL_SLACK = 1

_LABELS: dict[FileType, str] = {"pdf": "PDF", "png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}
_NAMES: dict[FileType, frozenset[str]] = {
    "pdf": frozenset({"pdf", "application/pdf"}),
    "png": frozenset({"png", "image/png"}),
    "jpeg": frozenset({"jpeg", "jpg", "image/jpeg", "image/jpg"}),
    "tiff": frozenset({"tiff", "tif", "image/tiff"}),
}


class CheckCode(StrEnum):
    UNSUPPORTED_FILE_TYPE = "unsupported_file_type"
    LOW_RESOLUTION = "low_resolution"
    ASPECT_MISMATCH = "aspect_mismatch"
    FILE_TOO_LARGE = "file_too_large"
    PAGE_SIZE_MISMATCH = "page_size_mismatch"
    UNREADABLE_FILE = "unreadable_file"
    FILE_UNREACHABLE = "file_unreachable"
    """The file could not be downloaded; produced by the downloader, not by ``judge``."""


class Check(BaseModel):
    """One problem of a file: a sentence for the merchant, and the short values it compares."""

    model_config = ConfigDict(frozen=True)

    code: CheckCode
    message: str
    found: str | None = None
    needed: str | None = None


class FileFacts(BaseModel):
    """What inspecting a file found.

    ``type``: the file's type by its content, ``None`` when it is none of these. ``pixels``:
    an image's (width, height); ``dpi``: the resolution its metadata claims (informational,
    ``judge`` computes resolution from the pixels). ``pages``: a PDF's page count;
    ``page_size_mm``: its first page's (width, height) as displayed (its ``/Rotate`` applied),
    measured on the TrimBox when the page has one, else on the MediaBox, which ``page_box``
    names (``None`` is read as the MediaBox). ``encrypted``: a PDF with encryption. ``bomb``:
    an image too large to decode safely, not decoded. ``unreadable``: why parsing failed.
    """

    model_config = ConfigDict(frozen=True)

    type: FileType | None = None
    pixels: tuple[int, int] | None = None
    dpi: tuple[float, float] | None = None
    pages: int | None = None
    page_size_mm: tuple[float, float] | None = None
    page_box: Literal["TrimBox", "MediaBox"] | None = None
    encrypted: bool = False
    bomb: bool = False
    unreadable: str | None = None


PreflightStatus = Literal["pending", "passed", "failed", "skipped"]


class FilePreflight(BaseModel):
    """What the check of one print file found, as the order shows it on the file.

    ``pending`` until the check ends; ``passed`` with no ``checks``, ``failed`` with one per
    problem; ``skipped`` where checks are off (``PREFLIGHT=off``). ``sha256`` and ``bytes`` are
    those of the bytes checked, which the print job names so the facility prints exactly them.
    ``proceeded``: the merchant chose to print it as it is (``resolve-hold`` ``proceed``).
    """

    model_config = ConfigDict(extra="ignore")

    status: PreflightStatus
    checks: list[Check] = []
    sha256: str | None = None
    bytes: int | None = None
    type: FileType | None = None
    pixels: tuple[int, int] | None = None
    dpi: tuple[float, float] | None = None
    proceeded: bool = False

    @property
    def blocks(self) -> bool:
        """Not to be printed as it is: failed, and the merchant has not said to go ahead."""
        return self.status == "failed" and not self.proceeded


def preflight_task_queue(base: str) -> str:
    """The task queue the checks run on: ``<TASK_QUEUE>-preflight``, whose workers take at
    most ``PREFLIGHT_CONCURRENCY`` at once."""
    return f"{base}-preflight"


def accepts(product: Product, file_type: FileType) -> bool:
    """Whether the product takes files of this type (by MIME type or short name)."""
    names = _NAMES[file_type]
    return any(entry.strip().lower() in names for entry in product.file_types)


def judge(facts: FileFacts, product: Product | None, area: str | None = None) -> list[Check]:
    """Every problem of the file for the product's print area (see the module's rules); an
    empty list passes."""
    if facts.unreadable is not None:
        return [_unreadable(facts)]
    if facts.bomb:
        return [_too_large(facts)]
    if facts.type is None:
        return [_unsupported(None, product)]
    checks: list[Check] = []
    if product is not None and not accepts(product, facts.type):
        checks.append(_unsupported(facts.type, product))
    if facts.type == "pdf":
        if facts.encrypted:
            return [*checks, _encrypted()]
        if facts.pages == 0:
            return [*checks, _no_pages()]
    if product is None:
        return checks
    chosen = _area(product, area)
    if facts.type == "pdf":
        if facts.page_size_mm is not None:
            checks.extend(_page_checks(facts.page_size_mm, facts.page_box == "TrimBox", chosen))
    elif facts.pixels is not None:
        checks.extend(_image_checks(facts.pixels, chosen))
    return checks


def _area(product: Product, name: str | None) -> PrintArea:
    return next((a for a in product.print_areas if a.name == name), product.print_areas[0])


def _label(entry: str) -> str:
    """A product's file type as a merchant reads it: ``image/jpeg`` is JPEG."""
    for file_type, names in _NAMES.items():
        if entry.strip().lower() in names:
            return _LABELS[file_type]
    return entry.strip().rsplit("/", 1)[-1].upper()


def _either(labels: list[str]) -> str:
    unique = list(dict.fromkeys(labels))
    return unique[0] if len(unique) == 1 else f"{', '.join(unique[:-1])} or {unique[-1]}"


def _unsupported(found: FileType | None, product: Product | None) -> Check:
    taken = (
        _either([_label(t) for t in product.file_types])
        if product is not None
        else _either([_LABELS[t] for t in FILE_TYPES])
    )
    who = "this product takes" if product is not None else "print files must be"
    if found is None:
        return Check(
            code=CheckCode.UNSUPPORTED_FILE_TYPE,
            message=f"the file is not a PDF, PNG, JPEG or TIFF file; {who} {taken}",
            found="unknown type",
            needed=taken,
        )
    return Check(
        code=CheckCode.UNSUPPORTED_FILE_TYPE,
        message=f"the file is a {_LABELS[found]} file, but {who} {taken} only",
        found=_LABELS[found],
        needed=taken,
    )


def _unreadable(facts: FileFacts) -> Check:
    what = f" as a {_LABELS[facts.type]} file" if facts.type is not None else ""
    reason = (facts.unreadable or "").strip().rstrip(".")
    because = f" ({reason})" if reason else ""
    return Check(
        code=CheckCode.UNREADABLE_FILE,
        message=f"the file could not be read{what}{because}; export it again and upload the "
        "new file",
        found="unreadable",
        needed="a readable file",
    )


def _encrypted() -> Check:
    return Check(
        code=CheckCode.UNREADABLE_FILE,
        message="the PDF is encrypted, so it cannot be printed; save it again without a "
        "password or encryption",
        found="encrypted",
        needed="not encrypted",
    )


def _no_pages() -> Check:
    return Check(
        code=CheckCode.UNREADABLE_FILE,
        message="the PDF has no pages; at least 1 page is needed",
        found="0 pages",
        needed="at least 1 page",
    )


def _too_large(facts: FileFacts) -> Check:
    if facts.pixels is None:
        return Check(
            code=CheckCode.FILE_TOO_LARGE,
            message="the file is too large to open safely; make it smaller and upload it again",
            found="too many pixels",
        )
    width, height = facts.pixels
    megapixels = width * height / 1_000_000
    return Check(
        code=CheckCode.FILE_TOO_LARGE,
        message=f"the image is {width} × {height} px ({megapixels:.1f} megapixels), too large "
        "to open safely; make it smaller and upload it again",
        found=f"{megapixels:.1f} megapixels",
    )


def _area_words(area: PrintArea, *, bleed: bool, turned: bool) -> str:
    """``the print area 'front' with its bleed (297 × 420 mm + 3 mm bleed)``."""
    size = f"{area.width_mm} × {area.height_mm} mm"
    turn = ", the file turned sideways to fit" if turned else ""
    if bleed and area.bleed_mm:
        return (
            f"the print area '{area.name}' with its bleed ({size} + {area.bleed_mm} mm bleed{turn})"
        )
    return f"the print area '{area.name}' ({size}{turn})"


def _mm(size: tuple[float, float]) -> str:
    return f"{size[0]:.1f} × {size[1]:.1f} mm"


def _image_checks(pixels: tuple[int, int], area: PrintArea) -> list[Check]:
    width, height = pixels
    if width <= 0 or height <= 0:
        return []
    full = (area.width_mm + 2 * area.bleed_mm, area.height_mm + 2 * area.bleed_mm)
    turns = [(full, False)] if full[0] == full[1] else [(full, False), ((full[1], full[0]), True)]
    (target, turned) = min(turns, key=lambda t: _fit_key(pixels, t[0]))
    inches = (target[0] / MM_PER_INCH, target[1] / MM_PER_INCH)
    checks: list[Check] = []
    dpi = min(width / inches[0], height / inches[1])
    enough = all(
        have + PIXEL_SLACK >= side * area.min_dpi
        for have, side in ((width, inches[0]), (height, inches[1]))
    )
    if not enough:
        need_px = (
            math.ceil(inches[0] * area.min_dpi - 1e-9),
            math.ceil(inches[1] * area.min_dpi - 1e-9),
        )
        checks.append(
            Check(
                code=CheckCode.LOW_RESOLUTION,
                message=f"the image has {math.floor(dpi)} dpi over "
                f"{_area_words(area, bleed=True, turned=turned)}; at least {area.min_dpi} dpi "
                f"are needed, that is {need_px[0]} × {need_px[1]} px",
                found=f"{math.floor(dpi)} dpi",
                needed=f"{area.min_dpi} dpi",
            )
        )
    cropped = _cropped(pixels, target)
    if cropped > ASPECT_TOLERANCE:
        share = _percent(cropped)
        checks.append(
            Check(
                code=CheckCode.ASPECT_MISMATCH,
                message=f"the image's proportions ({width} × {height} px) differ from "
                f"{_area_words(area, bleed=True, turned=turned)}, so "
                f"{share} % of the image would be cut off to fill it; at most "
                f"{ASPECT_TOLERANCE * 100:.1f} % may be",
                found=f"{share} % cropped",
                needed=f"at most {ASPECT_TOLERANCE * 100:.1f} % cropped",
            )
        )
    return checks


def _percent(share: float) -> str:
    """``4.6``; just above the tolerance, two decimals rounded up (``1.05``, never ``1.0``)."""
    text = f"{share * 100:.1f}"
    if float(text) <= ASPECT_TOLERANCE * 100:
        text = f"{math.ceil(share * 10_000) / 100:.2f}"
    return text


def _cropped(pixels: tuple[int, int], target: tuple[float, float]) -> float:
    """The share of the image cut off when it is scaled to cover ``target`` exactly."""
    image = pixels[0] / pixels[1]
    wanted = target[0] / target[1]
    return 1 - min(image, wanted) / max(image, wanted)


def _fit_key(pixels: tuple[int, int], target: tuple[float, float]) -> tuple[float, float]:
    """Less cropped first, then more dpi (the lower axis): the better orientation."""
    dpi = min(pixels[0] / target[0], pixels[1] / target[1])
    return (round(_cropped(pixels, target), 9), -dpi)


def _page_checks(size: tuple[float, float], trimmed: bool, area: PrintArea) -> list[Check]:
    bleed = 0 if trimmed else 2 * area.bleed_mm
    wanted = (float(area.width_mm + bleed), float(area.height_mm + bleed))
    turned = (wanted[1], wanted[0])
    if any(_close(size, target) for target in (wanted, turned)):
        return []
    page_landscape = size[0] > size[1]
    shown = (
        turned if page_landscape != (wanted[0] > wanted[1]) and wanted[0] != wanted[1] else wanted
    )
    box = "trim box" if trimmed else "page"
    return [
        Check(
            code=CheckCode.PAGE_SIZE_MISMATCH,
            message=f"the PDF's {box} is {_mm(size)}, but "
            f"{_area_words(area, bleed=not trimmed, turned=False)} needs {_mm(shown)}, "
            f"within {PAGE_TOLERANCE_MM:g} mm on each side",
            found=_mm(size),
            needed=_mm(shown),
        )
    ]


def _close(size: tuple[float, float], target: tuple[float, float]) -> bool:
    return all(abs(a - b) <= PAGE_TOLERANCE_MM + 1e-9 for a, b in zip(size, target, strict=True))
