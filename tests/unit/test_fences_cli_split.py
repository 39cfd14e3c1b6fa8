"""The marketer CLI splits an import where the server says its work budget
ends, and the file still imports whole, with rejections numbered in the file."""

from __future__ import annotations

import json
from pathlib import Path

from tools.fences import upload_file
from tools.hexcast_client import ApiError


class BudgetedServer:
    """Takes at most ``fit`` features per request; answers like the API's
    import work budget otherwise; rejects features whose id ends in ``x``."""

    def __init__(self, fit: int) -> None:
        self.fit = fit
        self.sizes: list[int] = []
        self.imported: list[str] = []

    def import_collection(self, body: bytes, *, repair: bool = False) -> dict:
        features = json.loads(body)["features"]
        self.sizes.append(len(features))
        if len(features) > self.fit:
            raise ApiError(400, "invalid_input", "the import's estimated indexing work exceeds the budget of 5,000 units "
                           f"per request at features[{self.fit}]; the first {self.fit} features fit: split the file", "features")
        rejected = [{"index": i, "id": f["id"], "error": {"code": "invalid_geometry", "message": "no", "field": f"features[{i}].geometry"}}
                    for i, f in enumerate(features) if f["id"].endswith("x")]
        self.imported += [f["id"] for f in features if not f["id"].endswith("x")]
        return {"imported": len(features) - len(rejected), "rejected": rejected}


def _file(tmp_path: Path, ids: list[str]) -> str:
    feats = [{"type": "Feature", "id": i, "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}, "properties": {"radius_m": 50}}
             for i in ids]
    path = tmp_path / "f.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return str(path)


def test_a_request_over_the_work_budget_is_split_where_the_server_says(tmp_path: Path) -> None:
    ids = [f"f{i}" for i in range(23)] + ["f23x", "f24"]
    server = BudgetedServer(fit=7)
    result = upload_file(server, _file(tmp_path, ids), batch=10, progress=False)  # type: ignore[arg-type]
    assert server.imported == [i for i in ids if not i.endswith("x")]
    assert result.imported == 24 and not result.failures and result.not_sent == 0
    assert [(r.index, r.fence_id, r.field) for r in result.rejected] == [(23, "f23x", "features[23].geometry")]
    assert max(s for s in server.sizes if s <= 7) == 7 and all(s <= 10 for s in server.sizes)


def test_other_400s_on_features_are_reported_not_retried(tmp_path: Path) -> None:
    class Refusing(BudgetedServer):
        def import_collection(self, body: bytes, *, repair: bool = False) -> dict:
            self.sizes.append(1)
            raise ApiError(400, "invalid_input", "features must be a list", "features")

    server = Refusing(fit=1)
    result = upload_file(server, _file(tmp_path, ["a", "b"]), progress=False)  # type: ignore[arg-type]
    assert server.sizes == [1] and result.imported == 0 and result.not_sent == 2 and result.failures
