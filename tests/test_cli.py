"""The ``tenancy`` command as a user runs it, against the test servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import Client
from tests.harness import cli as tenancy


async def test_services_onboard_and_status_as_json(platform: Client, tmp_path: Path) -> None:
    listed = await tenancy(platform.slice, "services", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "bin-collections" in {s["id"] for s in json.loads(listed.stdout)}

    brand = tmp_path / "brand.yaml"
    logo = tmp_path / "logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="80" height="40"/>')
    brand.write_text(
        "name: London Borough of Lewisham\nlogo: logo.svg\nlogo_alt: London Borough of Lewisham\n"
        "colours: {primary: '#00664F', secondary: '#FFFFFF', link: '#1D70B8'}\n"
    )
    onboarded = await tenancy(
        platform.slice,
        "onboard",
        "--council",
        "E09000023",
        "--service",
        "bin-collections",
        "--brand-file",
        str(brand),
        "--json",
    )
    assert onboarded.returncode == 0, onboarded.stderr
    tenancy_id = json.loads(onboarded.stdout)["id"]

    shown = await tenancy(platform.slice, "status", tenancy_id, "--wait", "30", "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["state"] == "active"
    assert {"id", "council", "service", "state", "reason", "steps"} <= set(status)


@pytest.mark.parametrize(
    ("council", "message"),
    [
        ("E99999999", "not a known UK local authority GSS code"),
        ("hackney", "is not a GSS code"),
        ("E07000004", "replaced by Buckinghamshire Council (E06000060)"),
    ],
)
async def test_refused_request_exits_non_zero_with_the_reason(
    platform: Client, council: str, message: str
) -> None:
    result = await tenancy(
        platform.slice, "onboard", "--council", council, "--service", "bin-collections"
    )
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split())


async def test_bad_brand_file_is_refused_with_every_reason(
    platform: Client, tmp_path: Path
) -> None:
    brand = tmp_path / "brand.yaml"
    (tmp_path / "logo.gif").write_bytes(b"GIF89a....")
    brand.write_text("name: ''\nlogo: logo.gif\ncolours: {primary: green}\n")
    result = await tenancy(
        platform.slice,
        "onboard",
        "--council",
        "E09000012",
        "--service",
        "bin-collections",
        "--brand-file",
        str(brand),
    )
    assert result.returncode != 0
    text = " ".join(result.stderr.split())
    assert "logo: must be a PNG or SVG file" in text
    assert "colours.primary" in text
    assert "name" in text


async def test_missing_reference_data_says_where_to_get_it(
    platform: Client, tmp_path: Path
) -> None:
    result = await tenancy(
        platform.slice,
        "onboard",
        "--council",
        "E09000012",
        "--service",
        "bin-collections",
        env={"COUNCILS_CSV": str(tmp_path / "nope.csv")},
    )
    assert result.returncode != 0
    text = " ".join(result.stderr.split())
    assert "uk_local_authorities.csv" in text
    assert "COUNCILS_CSV" in text
