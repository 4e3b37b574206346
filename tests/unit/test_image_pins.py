"""Image pins: each default is one exact version with the source it was checked against, and the README says the same."""

from __future__ import annotations

import importlib
import re
from types import ModuleType

import pytest
from pydantic import BaseModel, TypeAdapter

from infra.config.base import ImageRef
from infra.config.edge import EdgeSettings
from infra.config.identity import IdentitySettings
from infra.config.images import IMAGE_PINS, MINIO, ImagePin
from infra.config.monitoring import MonitoringSettings
from infra.config.storage import StorageSettings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIG_MODULES = ("storage", "edge", "identity", "monitoring", "images")
TIER_SETTINGS: tuple[type[BaseModel], ...] = (StorageSettings, EdgeSettings, IdentitySettings, MonitoringSettings)

# an exact release: major.minor[.patch...] or MinIO's RELEASE timestamp, then optional variant suffixes
EXACT_VERSION_TAG = re.compile(
    r"^(?:v?[0-9]+(?:\.[0-9]+)+|RELEASE\.[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}-[0-9]{2}-[0-9]{2}Z)(?:-[a-z0-9.]+)*$"
)


def tag_of(reference: str) -> str | None:
    name = reference.split("@", 1)[0]
    head, _, tag = name.rpartition(":")
    return tag if head and "/" not in tag else None


def version_of(tag: str) -> str:
    """The part of a tag a release is named by: `1.30.4` of `1.30.4-alpine`, a RELEASE tag whole."""
    return tag if tag.startswith("RELEASE.") else tag.split("-", 1)[0]


def readme_section(title: str) -> str:
    start = README.index(f"\n{title}\n")
    end = README.find("\n## ", start + len(title) + 2)
    return README[start : end if end != -1 else len(README)]


def table_rows(section: str) -> list[list[str]]:
    """Cells of the first Markdown table in a section, header and separator left out."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    return rows[2:]


def readme_label(pin: ImagePin) -> str:
    return f"{pin.what} ({pin.status})" if pin.status else pin.what


def default_image_constants() -> dict[str, str]:
    constants: dict[str, str] = {}
    for name in CONFIG_MODULES:
        module: ModuleType = importlib.import_module(f"infra.config.{name}")
        for attribute, value in vars(module).items():
            if re.fullmatch(r"DEFAULT_[A-Z0-9_]+_IMAGE", attribute):
                constants[f"{name}.{attribute}"] = value
    return constants


@pytest.mark.parametrize("pin", IMAGE_PINS, ids=lambda pin: pin.reference)
def test_each_pin_is_an_exact_release_never_a_moving_tag(pin: ImagePin) -> None:
    assert TypeAdapter(ImageRef).validate_python(pin.reference) == pin.reference
    tag = tag_of(pin.reference)
    assert tag is not None or "@sha256:" in pin.reference, f"{pin.reference} has neither a tag nor a digest"
    if tag is not None:
        assert EXACT_VERSION_TAG.fullmatch(tag), f"{pin.reference}: '{tag}' is not one exact release"


@pytest.mark.parametrize("pin", IMAGE_PINS, ids=lambda pin: pin.reference)
def test_each_pin_names_the_release_it_was_checked_against(pin: ImagePin) -> None:
    assert pin.what.strip() and pin.checked_against.strip()
    tag = tag_of(pin.reference)
    if tag is not None:
        # a moved pin whose source still names the old release has not been checked again
        assert version_of(tag) in pin.checked_against, (
            f"{pin.reference} says it was checked against {pin.checked_against!r}, which does not name {version_of(tag)}"
        )


def test_pins_are_unique_by_reference_and_by_setting() -> None:
    references = [pin.reference for pin in IMAGE_PINS]
    settings = [pin.setting for pin in IMAGE_PINS if pin.setting is not None]
    assert len(set(references)) == len(references)
    assert len(set(settings)) == len(settings)


def test_every_default_image_constant_is_a_pin_and_every_pin_has_one() -> None:
    constants = default_image_constants()
    references = {pin.reference for pin in IMAGE_PINS}
    strays = {name: value for name, value in constants.items() if value not in references}
    assert not strays, f"DEFAULT_*_IMAGE constants outside infra/config/images.py: {strays}"
    assert references == set(constants.values()), f"pins no constant uses: {references - set(constants.values())}"


@pytest.mark.parametrize("settings", TIER_SETTINGS, ids=lambda model: model.__name__)
def test_every_image_setting_defaults_to_a_pin(settings: type[BaseModel]) -> None:
    references = {pin.reference for pin in IMAGE_PINS}
    image_fields = {name: field for name, field in settings.model_fields.items() if name.endswith("image")}
    assert image_fields, f"{settings.__name__} has no image setting"
    for name, field in image_fields.items():
        assert field.default in references, f"{settings.__name__}.{name} defaults to {field.default!r}, not a pin"


def test_each_pin_with_a_setting_is_that_settings_default() -> None:
    defaults = {
        "storage.image": StorageSettings().image,
        "edge.image": EdgeSettings().image,
        "identity.keycloakImage": IdentitySettings().keycloak_image,
        "identity.postgresImage": IdentitySettings().postgres_image,
        **{
            f"monitoring.{field.alias}": getattr(MonitoringSettings(), name)
            for name, field in MonitoringSettings.model_fields.items()
            if name.endswith("image") and field.alias is not None
        },
    }
    assert {pin.setting: pin.reference for pin in IMAGE_PINS if pin.setting} == defaults


def test_readme_image_pins_table_is_the_table_in_code() -> None:
    rows = table_rows(readme_section("## Image pins"))
    expected = [[readme_label(pin), f"`{pin.reference}`", pin.checked_against] for pin in IMAGE_PINS]
    assert rows == expected


def test_readme_configuration_reference_shows_the_pinned_defaults() -> None:
    reference = readme_section("### Configuration reference")
    for pin in IMAGE_PINS:
        if pin.setting is None:
            continue
        tier, key = pin.setting.split(".", 1)
        row = next(line for line in reference.splitlines() if f"`{key}`" in line or f"`{pin.setting}`" in line)
        if tier == "monitoring":
            assert "(#image-pins)" in row, row
        else:
            assert f"`{pin.reference}`" in row, f"{pin.setting}: {row}"


@pytest.mark.parametrize("pin", [pin for pin in IMAGE_PINS if tag_of(pin.reference)], ids=lambda pin: pin.reference)
def test_readme_names_no_other_release_of_a_pinned_image(pin: ImagePin) -> None:
    name = pin.reference.rsplit(":", 1)[0]
    # name:tag where the tag is a release (has a dot), not name:port as in jdbc:postgresql://postgres:5432
    mentions = re.findall(rf"(?<![\w./-]){re.escape(name)}:([A-Za-z0-9_][A-Za-z0-9_.-]*\.[A-Za-z0-9_.-]*[A-Za-z0-9])", README)
    stale = sorted({f"{name}:{tag}" for tag in mentions} - {pin.reference})
    assert not stale, f"README still names {stale}; the pin is {pin.reference} (link to #image-pins instead)"


def test_readme_minio_section_leads_with_the_default_image() -> None:
    section = readme_section("## The MinIO image")
    first_paragraph = section.strip().split("\n\n")[1]
    assert f"`{MINIO.reference}`" in first_paragraph
