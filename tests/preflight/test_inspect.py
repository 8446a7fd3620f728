"""Inspecting real files (``activities.print_files.inspect``) written by the tests with Pillow
and pypdf, and judging them against products of the bundled catalog: each type by its content
whatever its name, pixels and metadata, PDF page boxes, encrypted and empty PDFs, broken files,
decompression bombs refused before decoding, and a pass for each type."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile
from pypdf import PdfReader, PdfWriter
from pypdf.generic import RectangleObject

from activities.print_files import DEFAULT_MAX_PIXELS, inspect
from domain.catalog import Product, load_catalog
from domain.preflight import CheckCode, FileFacts, judge
from runtime.settings import BUNDLED_CATALOG

MM = 72 / 25.4  # points per millimetre


def catalog_product(uid: str) -> Product:
    found = load_catalog(BUNDLED_CATALOG).product(uid)
    assert found is not None
    return found


# 210 × 148 mm + 3 mm bleed, 150 dpi: 1275.6 × 909.4 px; PNG, JPEG and PDF.
CARD = catalog_product("greeting_card_a6")
# 200 × 85 mm + 2 mm bleed, 200 dpi: 1606.3 × 700.8 px; PNG and JPEG.
MUG = catalog_product("mug_11oz_white")


def image(tmp_path: Path, name: str, size: tuple[int, int], fmt: str, **params: object) -> Path:
    path = tmp_path / name
    Image.new("RGB", size, (200, 30, 30)).save(path, format=fmt, **params)
    return path


def blank_pdf(tmp_path: Path, name: str, *pages_mm: tuple[float, float]) -> Path:
    writer = PdfWriter()
    for width, height in pages_mm:
        writer.add_blank_page(width=width * MM, height=height * MM)
    path = tmp_path / name
    writer.write(path)
    return path


def test_the_bundled_products_used_here() -> None:
    assert [(a.width_mm, a.height_mm, a.bleed_mm, a.min_dpi) for a in CARD.print_areas] == [
        (210, 148, 3, 150),
        (210, 148, 3, 150),
    ]
    assert CARD.file_types == ["image/png", "image/jpeg", "application/pdf"]
    assert [(a.width_mm, a.height_mm, a.bleed_mm, a.min_dpi) for a in MUG.print_areas] == [
        (200, 85, 2, 200)
    ]
    assert MUG.file_types == ["image/png", "image/jpeg"]


@pytest.mark.parametrize(
    ("fmt", "name", "kind"),
    [("PNG", "card.png", "png"), ("JPEG", "card.jpg", "jpeg"), ("TIFF", "card.tif", "tiff")],
)
def test_an_image_is_typed_measured_and_decoded(
    tmp_path: Path, fmt: str, name: str, kind: str
) -> None:
    path = image(tmp_path, name, (1276, 910), fmt, dpi=(150, 150))
    facts = inspect(path)
    assert facts.type == kind
    assert facts.pixels == (1276, 910)
    assert facts.dpi is not None and [round(d) for d in facts.dpi] == [150, 150]
    assert (facts.bomb, facts.unreadable, facts.encrypted) == (False, None, False)


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "card.png"), ("JPEG", "card.jpeg")])
def test_a_png_and_a_jpeg_of_the_card_pass(tmp_path: Path, fmt: str, name: str) -> None:
    path = image(tmp_path, name, (1276, 910), fmt)
    assert judge(inspect(path), CARD, "outside") == []


def test_a_pdf_of_the_card_with_bleed_passes(tmp_path: Path) -> None:
    facts = inspect(blank_pdf(tmp_path, "card.pdf", (216, 154), (216, 154)))
    assert facts.type == "pdf"
    assert facts.pages == 2
    assert facts.page_box == "MediaBox"
    assert facts.page_size_mm == pytest.approx((216.0, 154.0), abs=0.01)
    assert judge(facts, CARD) == []


def test_a_tiff_passes_where_tiff_is_taken_and_is_refused_by_the_mug(tmp_path: Path) -> None:
    facts = inspect(image(tmp_path, "mug.tiff", (1607, 701), "TIFF"))
    # No bundled product takes TIFF: the mug, taking TIFF too.
    tiff_mug = MUG.model_copy(update={"file_types": [*MUG.file_types, "image/tiff"]})
    assert judge(facts, tiff_mug) == []
    [check] = judge(facts, MUG)
    assert check.code == CheckCode.UNSUPPORTED_FILE_TYPE
    assert check.message == "the file is a TIFF file, but this product takes PNG or JPEG only"


def test_a_portrait_image_for_the_mugs_landscape_wrap_is_turned(tmp_path: Path) -> None:
    assert judge(inspect(image(tmp_path, "tall.png", (701, 1607), "PNG")), MUG) == []
    [check] = judge(inspect(image(tmp_path, "small.png", (351, 804), "PNG")), MUG)
    assert check.code == CheckCode.LOW_RESOLUTION
    assert check.message == (
        "the image has 100 dpi over the print area 'wrap' with its bleed "
        "(200 × 85 mm + 2 mm bleed, the file turned sideways to fit); at least 200 dpi are "
        "needed, that is 701 × 1607 px"
    )


def test_a_small_square_image_has_several_problems(tmp_path: Path) -> None:
    facts = inspect(image(tmp_path, "square.jpg", (300, 300), "JPEG", dpi=(300, 300)))
    checks = judge(facts, MUG)
    assert [c.code for c in checks] == [CheckCode.LOW_RESOLUTION, CheckCode.ASPECT_MISMATCH]
    # 300 px over 204 mm (the lower axis): 37.4 dpi; 300 × 300 px filling 204 × 89 mm crops
    # 56.4 % of the image. The metadata's 300 dpi does not count.
    assert [(c.found, c.needed) for c in checks] == [
        ("37 dpi", "200 dpi"),
        ("56.4 % cropped", "at most 1.0 % cropped"),
    ]


def test_the_type_comes_from_the_content_not_the_name(tmp_path: Path) -> None:
    png_named_pdf = image(tmp_path, "poster.pdf", (1276, 910), "PNG")
    assert inspect(png_named_pdf).type == "png"
    pdf_named_png = blank_pdf(tmp_path, "poster.png", (216, 154))
    assert inspect(pdf_named_png).type == "pdf"
    jpeg_named_png = image(tmp_path, "photo.png", (20, 20), "JPEG")
    assert inspect(jpeg_named_png).type == "jpeg"


def test_a_multi_picture_jpeg_from_a_camera_is_a_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "camera.jpg"
    first, second = Image.new("RGB", (1276, 910)), Image.new("RGB", (640, 456))
    first.save(path, format="MPO", save_all=True, append_images=[second])
    with Image.open(path) as opened:
        assert opened.format == "MPO"
    facts = inspect(path)
    assert (facts.type, facts.pixels) == ("jpeg", (1276, 910))
    assert judge(facts, CARD) == []


@pytest.mark.parametrize(("fmt", "name"), [("GIF", "card.gif"), ("BMP", "card.bmp")])
def test_other_image_formats_are_unsupported(tmp_path: Path, fmt: str, name: str) -> None:
    facts = inspect(image(tmp_path, name, (1276, 910), fmt))
    assert (facts.type, facts.unreadable, facts.bomb) == (None, None, False)
    [check] = judge(facts, CARD)
    assert check.code == CheckCode.UNSUPPORTED_FILE_TYPE
    assert check.message == (
        "the file is not a PDF, PNG, JPEG or TIFF file; this product takes PNG, JPEG or PDF"
    )
    [without] = judge(facts, None)
    assert without.code == CheckCode.UNSUPPORTED_FILE_TYPE


def test_random_bytes_are_no_known_type_and_an_empty_file_is_unreadable(tmp_path: Path) -> None:
    noise = tmp_path / "noise.png"
    noise.write_bytes(b"\x00\x11garbage" + os.urandom(4096))
    assert inspect(noise) == FileFacts(type=None)
    assert [c.code for c in judge(inspect(noise), CARD)] == [CheckCode.UNSUPPORTED_FILE_TYPE]
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    assert inspect(empty) == FileFacts(unreadable="the file is empty")
    missing = inspect(tmp_path / "not-there.png")
    assert missing.unreadable is not None and missing.unreadable.startswith("cannot open")


@pytest.mark.parametrize(("fmt", "kind"), [("PNG", "png"), ("JPEG", "jpeg")])
def test_a_truncated_image_is_unreadable(tmp_path: Path, fmt: str, kind: str) -> None:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3)).save(buffer, format=fmt)
    path = tmp_path / "cut"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    facts = inspect(path)
    assert facts.type == kind
    assert facts.unreadable is not None and "truncated" in facts.unreadable
    [check] = judge(facts, CARD)
    assert check.code == CheckCode.UNREADABLE_FILE
    assert check.message.startswith(f"the file could not be read as a {fmt} file (")


def test_many_pixels_are_a_bomb_and_never_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 2 KB PNG of 16 megapixels (one bit each), above a limit of 1 megapixel.
    path = tmp_path / "bomb.png"
    Image.new("1", (4000, 4000)).save(path)
    assert path.stat().st_size < 10_000

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    facts = inspect(path, max_pixels=1_000_000)
    assert (facts.type, facts.pixels, facts.bomb) == ("png", (4000, 4000), True)
    [check] = judge(facts, CARD)
    assert check.code == CheckCode.FILE_TOO_LARGE
    assert check.found == "16.0 megapixels"
    monkeypatch.undo()
    at_the_limit = inspect(path, max_pixels=16_000_000)
    assert (at_the_limit.bomb, at_the_limit.unreadable) == (False, None)


def test_a_header_claiming_a_huge_size_is_a_bomb_and_pillows_limit_is_left_alone(
    tmp_path: Path,
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    # Rewrite the IHDR chunk (right after the 8-byte signature) to claim 100000 × 100000 px.
    ihdr = b"IHDR" + struct.pack(">II", 100_000, 100_000) + bytes(data[24:29])
    data[8:33] = struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    before = Image.MAX_IMAGE_PIXELS
    facts = inspect(path)
    assert facts.bomb is True
    assert Image.MAX_IMAGE_PIXELS == before
    assert [c.code for c in judge(facts, CARD)] == [CheckCode.FILE_TOO_LARGE]
    assert DEFAULT_MAX_PIXELS < 100_000 * 100_000


def test_a_trim_box_is_measured_when_there_is_one(tmp_path: Path) -> None:
    writer = PdfWriter()
    page = writer.add_blank_page(width=216 * MM, height=154 * MM)
    page.trimbox = RectangleObject((3 * MM, 3 * MM, 213 * MM, 151 * MM))
    path = tmp_path / "trimmed.pdf"
    writer.write(path)
    facts = inspect(path)
    assert facts.page_box == "TrimBox"
    assert facts.page_size_mm == pytest.approx((210.0, 148.0), abs=0.01)
    assert judge(facts, CARD) == []


def test_a_rotated_page_is_measured_as_displayed(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=154 * MM, height=216 * MM).rotate(90)
    path = tmp_path / "rotated.pdf"
    writer.write(path)
    facts = inspect(path)
    assert facts.page_size_mm == pytest.approx((216.0, 154.0), abs=0.01)
    assert judge(facts, CARD) == []


def test_an_a4_page_for_the_card_is_a_page_size_mismatch(tmp_path: Path) -> None:
    facts = inspect(blank_pdf(tmp_path, "a4.pdf", (210, 297)))
    [check] = judge(facts, CARD, "inside")
    assert check.code == CheckCode.PAGE_SIZE_MISMATCH
    assert check.message == (
        "the PDF's page is 210.0 × 297.0 mm, but the print area 'inside' with its bleed "
        "(210 × 148 mm + 3 mm bleed) needs 154.0 × 216.0 mm, within 1 mm on each side"
    )
    assert (check.found, check.needed) == ("210.0 × 297.0 mm", "154.0 × 216.0 mm")


def test_an_encrypted_pdf_is_unreadable(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=216 * MM, height=154 * MM)
    writer.encrypt("secret", algorithm="AES-256")
    path = tmp_path / "locked.pdf"
    writer.write(path)
    facts = inspect(path)
    assert (facts.type, facts.encrypted, facts.pages) == ("pdf", True, None)
    [check] = judge(facts, CARD)
    assert check.code == CheckCode.UNREADABLE_FILE
    assert check.found == "encrypted"
    assert "encrypted" in check.message


def test_a_pdf_with_only_an_owner_password_is_counted_but_still_encrypted(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=216 * MM, height=154 * MM)
    writer.encrypt("", "owner", algorithm="AES-128")
    path = tmp_path / "restricted.pdf"
    writer.write(path)
    facts = inspect(path)
    assert (facts.encrypted, facts.pages) == (True, 1)
    assert [c.found for c in judge(facts, CARD)] == ["encrypted"]
    assert [c.code for c in judge(facts, None)] == [CheckCode.UNREADABLE_FILE]


def test_a_pdf_without_pages_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    PdfWriter().write(path)
    assert len(PdfReader(path).pages) == 0
    facts = inspect(path)
    assert (facts.type, facts.pages) == ("pdf", 0)
    [check] = judge(facts, CARD)
    assert (check.code, check.found) == (CheckCode.UNREADABLE_FILE, "0 pages")


def test_a_broken_pdf_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n" + os.urandom(512))
    facts = inspect(path)
    assert facts.type == "pdf"
    assert facts.unreadable is not None and facts.unreadable.startswith("the PDF is broken")
    assert [c.code for c in judge(facts, None)] == [CheckCode.UNREADABLE_FILE]


def test_without_a_product_a_readable_file_of_a_known_type_passes(tmp_path: Path) -> None:
    assert judge(inspect(image(tmp_path, "any.png", (10, 10), "PNG")), None) == []
    assert judge(inspect(blank_pdf(tmp_path, "any.pdf", (10, 10))), None) == []
