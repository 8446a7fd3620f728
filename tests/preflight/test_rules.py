"""Preflight's rules (``domain.preflight.judge``) on facts written out by hand: every code with
the numbers its message names, the orientation a file is measured in, tolerances at their
edges, several problems at once, and the checks without a product."""

from __future__ import annotations

import pytest

from domain.catalog import PrintArea, Product
from domain.preflight import (
    ASPECT_TOLERANCE,
    PAGE_TOLERANCE_MM,
    Check,
    CheckCode,
    FileFacts,
    accepts,
    judge,
)

A3 = PrintArea(name="front", width_mm=297, height_mm=420, bleed_mm=3, min_dpi=300)
BACK = PrintArea(name="back", width_mm=100, height_mm=100, bleed_mm=0, min_dpi=100)


def product(
    *areas: PrintArea, file_types: tuple[str, ...] = ("image/png", "image/jpeg", "application/pdf")
) -> Product:
    return Product(
        product_uid="test_poster",
        name="Test poster",
        kind="poster",
        print_areas=list(areas or (A3,)),
        file_types=list(file_types),
        weight_g=100,
        production_days=1,
        prices={"EUR": "1.00", "USD": "1.00", "GBP": "1.00"},
    )


def codes(checks: list[Check]) -> list[CheckCode]:
    return [c.code for c in checks]


def png(width: int, height: int) -> FileFacts:
    return FileFacts(type="png", pixels=(width, height))


def pdf(width_mm: float, height_mm: float, box: str = "MediaBox") -> FileFacts:
    return FileFacts.model_validate(
        {"type": "pdf", "pages": 1, "page_size_mm": (width_mm, height_mm), "page_box": box}
    )


def test_the_vocabulary() -> None:
    assert {c.value for c in CheckCode} == {
        "unsupported_file_type",
        "low_resolution",
        "aspect_mismatch",
        "file_too_large",
        "page_size_mismatch",
        "unreadable_file",
        "file_unreachable",
    }


def test_an_image_of_the_area_with_bleed_at_min_dpi_passes() -> None:
    # 303 × 426 mm at 300 dpi: 3578.7 × 5031.5 px
    assert judge(png(3579, 5032), product()) == []


def test_low_resolution_names_the_dpi_the_area_and_the_pixels_needed() -> None:
    # 303 × 426 mm at 1790 × 2516 px: 150.05 and 150.01 dpi
    [check] = judge(png(1790, 2516), product())
    assert check.code == CheckCode.LOW_RESOLUTION
    assert check.message == (
        "the image has 150 dpi over the print area 'front' with its bleed "
        "(297 × 420 mm + 3 mm bleed); at least 300 dpi are needed, that is 3579 × 5032 px"
    )
    assert (check.found, check.needed) == ("150 dpi", "300 dpi")


def test_resolution_is_the_lower_axis_and_the_metadata_does_not_count() -> None:
    # Proportions within the tolerance, the height 0.6 % short: 298 dpi over 426 mm.
    facts = FileFacts(type="jpeg", pixels=(3579, 5000), dpi=(300.0, 300.0))
    [check] = judge(facts, product())
    assert (check.code, check.found) == (CheckCode.LOW_RESOLUTION, "298 dpi")


def test_one_pixel_short_passes_two_do_not() -> None:
    # 5031.5 px are needed for the height: 5031 passes, 5030 does not (by either axis).
    assert judge(png(3578, 5031), product()) == []
    assert codes(judge(png(3579, 5030), product())) == [CheckCode.LOW_RESOLUTION]
    assert codes(judge(png(3577, 5032), product())) == [CheckCode.LOW_RESOLUTION]


def test_aspect_mismatch_names_the_share_cropped() -> None:
    # 3579 × 4800 px (0.746) filling 303 × 426 mm (0.711): 4.6 % of the height is cut off;
    # 4800 px over 426 mm is also 286 dpi: both problems are reported.
    checks = judge(png(3579, 4800), product())
    assert codes(checks) == [CheckCode.LOW_RESOLUTION, CheckCode.ASPECT_MISMATCH]
    low, aspect = checks
    assert (low.found, low.needed) == ("286 dpi", "300 dpi")
    assert aspect.message == (
        "the image's proportions (3579 × 4800 px) differ from the print area 'front' with its "
        "bleed (297 × 420 mm + 3 mm bleed), so 4.6 % of the image would be cut off to fill it; "
        "at most 1.0 % may be"
    )
    assert (aspect.found, aspect.needed) == ("4.6 % cropped", "at most 1.0 % cropped")


def test_aspect_within_the_tolerance_passes() -> None:
    assert ASPECT_TOLERANCE == 0.01
    # 3579 × 5080: 0.95 % of the image cut off; 3579 × 5085: 1.05 %.
    assert judge(png(3579, 5080), product()) == []
    [check] = judge(png(3579, 5085), product())
    assert (check.code, check.found) == (CheckCode.ASPECT_MISMATCH, "1.05 % cropped")


def test_a_landscape_image_fills_a_portrait_area_turned() -> None:
    assert judge(png(5032, 3579), product()) == []
    [check] = judge(png(2516, 1790), product())
    assert check.code == CheckCode.LOW_RESOLUTION
    assert check.found == "150 dpi"
    assert check.message == (
        "the image has 150 dpi over the print area 'front' with its bleed "
        "(297 × 420 mm + 3 mm bleed, the file turned sideways to fit); at least 300 dpi are "
        "needed, that is 5032 × 3579 px"
    )


def test_the_orientation_chosen_is_the_one_cropping_less() -> None:
    # 4000 × 3000 px is landscape: turned, 426 × 300 mm crops 6.1 %; upright it would crop 47 %.
    [check] = judge(png(4000, 3000), product(PrintArea(name="a", width_mm=300, height_mm=426)))
    assert check.code == CheckCode.ASPECT_MISMATCH
    assert check.found == "6.1 % cropped"
    assert "turned sideways" in check.message


def test_a_square_image_on_an_oblong_area_reports_both_problems() -> None:
    checks = judge(png(1000, 1000), product())
    assert codes(checks) == [CheckCode.LOW_RESOLUTION, CheckCode.ASPECT_MISMATCH]
    assert [c.found for c in checks] == ["59 dpi", "28.9 % cropped"]


def test_the_named_area_is_used_else_the_first() -> None:
    both = product(A3, BACK)
    # 400 × 400 px over 100 × 100 mm: 101.6 dpi, enough for 'back', far too few for 'front'.
    assert judge(png(400, 400), both, "back") == []
    assert codes(judge(png(400, 400), both, "front")) == [
        CheckCode.LOW_RESOLUTION,
        CheckCode.ASPECT_MISMATCH,
    ]
    assert judge(png(400, 400), both, "default") == judge(png(400, 400), both)
    assert judge(png(400, 400), both, None) == judge(png(400, 400), both, "front")


def test_an_area_without_bleed_is_named_without_it() -> None:
    [check] = judge(png(50, 50), product(BACK))
    assert check.message.startswith(
        "the image has 12 dpi over the print area 'back' (100 × 100 mm)"
    )


def test_unsupported_file_type_names_what_was_found_and_what_is_taken() -> None:
    [check] = judge(FileFacts(type=None), product())
    assert check.code == CheckCode.UNSUPPORTED_FILE_TYPE
    assert check.message == (
        "the file is not a PDF, PNG, JPEG or TIFF file; this product takes PNG, JPEG or PDF"
    )
    assert (check.found, check.needed) == ("unknown type", "PNG, JPEG or PDF")


def test_a_known_type_the_product_does_not_take_is_reported_with_the_other_problems() -> None:
    mug = product(file_types=("image/png", "image/jpeg"))
    checks = judge(FileFacts(type="tiff", pixels=(1790, 2516)), mug)
    assert codes(checks) == [CheckCode.UNSUPPORTED_FILE_TYPE, CheckCode.LOW_RESOLUTION]
    assert checks[0].message == "the file is a TIFF file, but this product takes PNG or JPEG only"
    assert (checks[0].found, checks[0].needed) == ("TIFF", "PNG or JPEG")
    [only] = judge(pdf(303, 426), mug)
    assert (only.code, only.found) == (CheckCode.UNSUPPORTED_FILE_TYPE, "PDF")


@pytest.mark.parametrize(
    ("file_types", "taken"),
    [
        (("png", "jpeg", "pdf", "tiff"), ["pdf", "png", "jpeg", "tiff"]),
        (
            ("image/png", "image/jpeg", "image/tiff", "application/pdf"),
            ["pdf", "png", "jpeg", "tiff"],
        ),
        (("IMAGE/JPG",), ["jpeg"]),
        (("image/webp",), []),
    ],
)
def test_file_types_by_mime_type_or_short_name(
    file_types: tuple[str, ...], taken: list[str]
) -> None:
    p = product(file_types=file_types)
    assert [t for t in ("pdf", "png", "jpeg", "tiff") if accepts(p, t)] == taken  # type: ignore[arg-type]


def test_an_unknown_entry_is_named_as_it_is() -> None:
    [check] = judge(FileFacts(type="png", pixels=(3579, 5032)), product(file_types=("image/webp",)))
    assert check.needed == "WEBP"


def test_unreadable_is_the_only_check() -> None:
    facts = FileFacts(type="png", pixels=(10, 10), bomb=True, unreadable="image file is truncated")
    [check] = judge(facts, product(file_types=("application/pdf",)))
    assert check.code == CheckCode.UNREADABLE_FILE
    assert check.message == (
        "the file could not be read as a PNG file (image file is truncated); export it again "
        "and upload the new file"
    )
    [unknown] = judge(FileFacts(unreadable="the file is empty"), None)
    assert unknown.message.startswith("the file could not be read (the file is empty);")


def test_a_bomb_is_only_too_large() -> None:
    [check] = judge(FileFacts(type="png", pixels=(20000, 20000), bomb=True), product())
    assert check.code == CheckCode.FILE_TOO_LARGE
    assert check.message == (
        "the image is 20000 × 20000 px (400.0 megapixels), too large to open safely; make it "
        "smaller and upload it again"
    )
    assert check.found == "400.0 megapixels"
    [headless] = judge(FileFacts(bomb=True), None)
    assert headless.code == CheckCode.FILE_TOO_LARGE


def test_a_pdf_of_the_area_with_bleed_passes_either_way_round() -> None:
    assert judge(pdf(303.0, 426.0), product()) == []
    assert judge(pdf(426.0, 303.0), product()) == []


def test_a_trim_box_is_the_area_without_bleed() -> None:
    assert judge(pdf(297.0, 420.0, "TrimBox"), product()) == []
    [check] = judge(pdf(303.0, 426.0, "TrimBox"), product())
    assert check.code == CheckCode.PAGE_SIZE_MISMATCH
    assert check.message == (
        "the PDF's trim box is 303.0 × 426.0 mm, but the print area 'front' (297 × 420 mm) "
        "needs 297.0 × 420.0 mm, within 1 mm on each side"
    )


def test_page_size_mismatch_names_both_sizes() -> None:
    [check] = judge(pdf(210.0, 297.0), product())
    assert check.code == CheckCode.PAGE_SIZE_MISMATCH
    assert check.message == (
        "the PDF's page is 210.0 × 297.0 mm, but the print area 'front' with its bleed "
        "(297 × 420 mm + 3 mm bleed) needs 303.0 × 426.0 mm, within 1 mm on each side"
    )
    assert (check.found, check.needed) == ("210.0 × 297.0 mm", "303.0 × 426.0 mm")
    # A landscape page is told the landscape size.
    [turned] = judge(pdf(297.0, 210.0), product())
    assert turned.needed == "426.0 × 303.0 mm"


def test_a_page_may_be_off_by_1_mm_on_each_side() -> None:
    assert PAGE_TOLERANCE_MM == 1.0
    assert judge(pdf(304.0, 425.0), product()) == []
    assert codes(judge(pdf(304.2, 426.0), product())) == [CheckCode.PAGE_SIZE_MISMATCH]
    assert codes(judge(pdf(303.0, 424.8), product())) == [CheckCode.PAGE_SIZE_MISMATCH]


def test_an_encrypted_pdf_is_unreadable() -> None:
    [check] = judge(FileFacts(type="pdf", encrypted=True, pages=1, page_size_mm=(1, 1)), product())
    assert check.code == CheckCode.UNREADABLE_FILE
    assert "encrypted" in check.message
    assert (check.found, check.needed) == ("encrypted", "not encrypted")


def test_a_pdf_without_pages_is_unreadable() -> None:
    [check] = judge(FileFacts(type="pdf", pages=0), product())
    assert check.code == CheckCode.UNREADABLE_FILE
    assert check.message == "the PDF has no pages; at least 1 page is needed"
    assert (check.found, check.needed) == ("0 pages", "at least 1 page")


def test_without_a_product_only_the_type_and_readability_are_checked() -> None:
    assert judge(png(10, 10), None) == []
    assert judge(pdf(10.0, 10.0), None) == []
    [unknown] = judge(FileFacts(type=None), None)
    assert unknown.code == CheckCode.UNSUPPORTED_FILE_TYPE
    assert unknown.message == (
        "the file is not a PDF, PNG, JPEG or TIFF file; print files must be PDF, PNG, JPEG or TIFF"
    )
    assert codes(judge(FileFacts(type="pdf", encrypted=True), None)) == [CheckCode.UNREADABLE_FILE]
    assert codes(judge(FileFacts(type="pdf", pages=0), None)) == [CheckCode.UNREADABLE_FILE]


def test_facts_and_checks_survive_json() -> None:
    facts = FileFacts(
        type="pdf", pages=2, page_size_mm=(210.0, 297.0), page_box="TrimBox", dpi=(72.0, 72.0)
    )
    assert FileFacts.model_validate_json(facts.model_dump_json()) == facts
    [check] = judge(pdf(210.0, 297.0), product())
    assert Check.model_validate_json(check.model_dump_json()) == check
