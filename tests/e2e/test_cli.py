"""The marketer CLI (``python -m tools.fences``) against the local stack.

The fences here lie in the North Atlantic, away from every other test's
points, and are deleted after each test: the stack is shared by the session.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from tools import fences as cli

ROOT = Path(__file__).resolve().parents[2]
LAT, LNG = 47.0, -30.0  # open ocean: valid input, and no other test looks here


def square(lng: float, lat: float, d: float = 0.01) -> dict:
    ring = [[lng, lat], [lng + d, lat], [lng + d, lat + d], [lng, lat + d], [lng, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def feature(fid: str | None, geometry: dict | None, **props) -> dict:
    f = {"type": "Feature", "geometry": geometry, "properties": {"name": f"Test {fid}", **props}}
    if fid is not None:
        f["id"] = fid
    return f


def unclosed(lng: float, lat: float) -> dict:
    ring = square(lng, lat)["coordinates"][0][:-1] + [[lng + 0.005, lat + 0.005]]
    return {"type": "Polygon", "coordinates": [ring]}


def write(path: Path, obj: dict) -> Path:
    path.write_text(json.dumps(obj))
    return path


def collection(*features: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


@pytest.fixture
def ids(stack):
    """A unique id prefix; every fence whose id starts with it is deleted afterwards."""
    prefix = f"cli-{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    yield prefix, made
    for fid in made:
        requests.delete(f"{stack.base_url}/v1/geofences/{fid}", headers={"X-Api-Key": stack.admin_key}, timeout=30)


def get_fence(stack, fid: str) -> requests.Response:
    return requests.get(f"{stack.base_url}/v1/geofences/{fid}", headers={"X-Api-Key": stack.admin_key}, timeout=30)


def run_cli(stack, *args: str, key: str | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(["upload", *args, "--quiet", "--url", stack.base_url, f"--key={key or stack.admin_key}"], out=out)
    return code, out.getvalue()


def report_rows(output: str) -> list[list[str]]:
    """The rejection table's rows, split on runs of two or more spaces."""
    import re

    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:4] == ["index", "id", "field", "error"])
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("  ") or line.startswith("  error:") or line.startswith("  warning:"):
            break
        rows.append(re.split(r"\s{2,}", line.strip(), maxsplit=3))
    return rows


def test_folder_with_a_bad_feature_reports_its_index_and_field_and_exits_1(stack, tmp_path, ids):
    prefix, made = ids
    good, bad = f"{prefix}-good", f"{prefix}-bad"
    made += [good, bad]
    folder = tmp_path / "fences"
    folder.mkdir()
    write(folder / "places.geojson", collection(feature(good, square(LNG, LAT)), feature(bad, unclosed(LNG + 0.1, LAT))))
    (folder / "notes.txt").write_text("not GeoJSON: ignored, only *.geojson files are read")
    env = dict(os.environ, HEXCAST_URL=stack.base_url, HEXCAST_ADMIN_KEY=stack.admin_key)

    proc = subprocess.run(
        [sys.executable, "-m", "tools.fences", "upload", str(folder), "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{folder / 'places.geojson'}: 2 features, 1 imported, 1 rejected" in proc.stdout
    [row] = report_rows(proc.stdout)
    index, fid, field, error = row
    assert (index, fid, field) == ("1", bad, "features[1].geometry.coordinates[0]")
    assert error.startswith("invalid_geometry:") and "closed" in error
    assert proc.stdout.splitlines()[-1].startswith("FAILED: 1 file, 2 features, 1 imported, 1 rejected")
    assert get_fence(stack, good).status_code == 200
    assert get_fence(stack, bad).status_code == 404


def test_good_features_exit_0_and_are_found_by_lookup(stack, tmp_path, ids):
    prefix, made = ids
    a, b = f"{prefix}-a", f"{prefix}-b"
    circle_file = f"{prefix}-circle"  # a lone Feature without an id takes the file's name
    made += [a, b, circle_file]
    write(tmp_path / "two.geojson", collection(feature(a, square(LNG, LAT), tags=["cli"]), feature(b, square(LNG + 0.02, LAT))))
    lone = feature(None, {"type": "Point", "coordinates": [LNG + 0.005, LAT + 0.005]}, radius_m=100, dwell_minutes=5)
    write(tmp_path / f"{circle_file}.geojson", lone)

    code, output = run_cli(stack, str(tmp_path))

    assert code == 0, output
    assert output.splitlines()[-1].startswith("OK: 2 files, 3 features, 3 imported, 0 rejected")
    assert "index" not in output  # no rejection table
    assert get_fence(stack, circle_file).json()["properties"]["radius_m"] == 100

    out = io.StringIO()
    assert cli.main(["lookup", "--lat", str(LAT + 0.005), "--lng", str(LNG + 0.005),
                     "--url", stack.base_url, f"--key={stack.admin_key}"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("2 fence(s) contain")
    assert {line.split()[0] for line in lines[2:]} == {a, circle_file}


def test_split_requests_keep_indexes_and_fields_of_the_file(stack, tmp_path, ids):
    prefix, made = ids
    feats = [feature(f"{prefix}-{i}", square(LNG + 0.02 * i, LAT + 0.05)) for i in range(5)]
    feats[3] = feature(f"{prefix}-3", unclosed(LNG + 0.06, LAT + 0.05))
    feats[4]["properties"]["tags"] = "not-a-list"
    made += [f["id"] for f in feats]
    path = write(tmp_path / "five.geojson", collection(*feats))

    code, output = run_cli(stack, str(path), "--batch", "2")  # requests of 2, 2 and 1 features

    assert code == 1
    rows = report_rows(output)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("3", f"{prefix}-3", "features[3].geometry.coordinates[0]"),
        ("4", f"{prefix}-4", "features[4].properties.tags"),
    ]
    assert f"{path}: 5 features, 3 imported, 2 rejected" in output
    assert [get_fence(stack, f"{prefix}-{i}").status_code for i in range(5)] == [200, 200, 200, 404, 404]


def test_an_id_twice_in_one_file_is_rejected_even_across_requests(stack, tmp_path, ids):
    prefix, made = ids
    fid = f"{prefix}-dup"
    made.append(fid)
    path = write(tmp_path / "dup.geojson", collection(feature(fid, square(LNG, LAT + 0.1)), feature(fid, square(LNG + 0.5, LAT + 0.1))))

    code, output = run_cli(stack, str(path), "--batch", "1")

    assert code == 1
    assert [r[:3] for r in report_rows(output)] == [["1", fid, "features[1].id"]]
    # The first one stays: the second did not silently replace it.
    assert get_fence(stack, fid).json()["geometry"]["coordinates"][0][0][0] == pytest.approx(LNG, abs=0.011)


def test_wrong_key_shows_the_servers_message_and_exits_1(stack, tmp_path, ids):
    prefix, made = ids
    made.append(f"{prefix}-x")
    path = write(tmp_path / "x.geojson", collection(feature(f"{prefix}-x", square(LNG, LAT))))

    code, output = run_cli(stack, str(path), key="not-a-key")

    assert code == 1
    assert "HTTP 403 forbidden: the API key is not valid" in output
    assert "1 not uploaded" in output
    assert get_fence(stack, f"{prefix}-x").status_code == 404


def test_app_key_may_not_upload(stack, tmp_path, ids):
    prefix, made = ids
    made.append(f"{prefix}-y")
    path = write(tmp_path / "y.geojson", collection(feature(f"{prefix}-y", square(LNG, LAT))))

    code, output = run_cli(stack, str(path), key=stack.app_key)

    assert code == 1
    assert "HTTP 403 forbidden" in output
