"""Build ``chalicelib/data/emma_id/<CC>.json.gz`` from a directory of
MeteoAlarm EMMA_ID GeoJSON files (one Feature per code, file name
``<EMMA_ID>.geojson``, as in KDE/foss-public-alert-server's
``alertHandler/data/EMMA_ID``): per code its name, country and geometry,
grouped by the code's first two letters, gzip without a timestamp, so the
output is byte-for-byte reproducible.

    python -m tools.emma_regions <directory-of-geojson> [out-directory]
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "chalicelib" / "data" / "emma_id"


def build(src: Path, out: Path = OUT) -> dict[str, int]:
    """Write one file per prefix; → codes per prefix."""
    by_prefix: dict[str, dict[str, dict]] = defaultdict(dict)
    for path in sorted(src.glob("*.geojson")):
        feature = json.loads(path.read_text(encoding="utf-8"))
        code = path.name[: -len(".geojson")]
        props, geom = feature["properties"], feature["geometry"]
        if props.get("code") != code or not code[:2].isalpha() or geom["type"] not in ("Polygon", "MultiPolygon"):
            raise ValueError(f"{path.name}: not an EMMA_ID region file")
        by_prefix[code[:2]][code] = {"name": props.get("name"), "country": props.get("country"),
                                     "type": geom["type"], "coordinates": geom["coordinates"]}
    out.mkdir(parents=True, exist_ok=True)
    for prefix, codes in sorted(by_prefix.items()):
        raw = json.dumps({"codes": codes}, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
        (out / f"{prefix}.json.gz").write_bytes(gzip.compress(raw, 9, mtime=0))
    return {p: len(c) for p, c in sorted(by_prefix.items())}


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    counts = build(Path(argv[0]), Path(argv[1]) if len(argv) == 2 else OUT)
    print(f"{sum(counts.values())} codes in {len(counts)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
