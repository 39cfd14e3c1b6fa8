"""The marketer's geofence CLI: upload GeoJSON files, look up a point.

Usage::

    python -m tools.fences upload geofences/sonoma_county.geojson --url URL --key KEY
    python -m tools.fences upload geofences/ --repair          # every *.geojson in a folder
    python -m tools.fences lookup --lat 38.4404 --lng -122.7141

``--url`` and ``--key`` default to ``HEXCAST_URL`` and ``HEXCAST_ADMIN_KEY``.

``upload`` accepts a FeatureCollection or a single Feature per file, or a
folder of ``.geojson`` files (not recursive). A feature's fence id is its
``id`` or ``properties.id``; a file holding one Feature without either is
uploaded under the file's name (``store-42.geojson`` → ``store-42``).
Collections are split into ``POST /v1/geofences/import`` requests of at most
``--batch`` features and ``--max-bytes`` bytes. After the upload it prints
every rejected feature (index in its file, id, field, message) and a summary
line. Exit status: 0 when everything was imported, 1 when anything was
rejected or a request failed, 2 on a usage error.

The upload is idempotent: re-running it replaces the fences with the same ids.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, TextIO

from tqdm import tqdm

from tools.hexcast_client import DEFAULT_TIMEOUT_S, ApiError, HexcastClient, Unreachable

__all__ = ["ApiError", "HexcastClient", "Unreachable", "upload", "upload_file", "print_report", "main"]

#: The server's limit of features per import request.
MAX_FEATURES_PER_REQUEST = 500
#: The server's limit of bytes per request body (Lambda's synchronous payload limit).
SERVER_MAX_BYTES = 5 * 1024 * 1024
#: Default request budget: well under the server's limit, because on AWS the
#: 6 MB applies to the whole Lambda event, where the body is a JSON string
#: (every quote escaped) next to the headers.
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
#: Default features per request: 50 county-sized polygons fit the server's
#: import work budget (about 2 s of server work).
DEFAULT_BATCH = 50

_ENVELOPE_HEAD = b'{"type":"FeatureCollection","features":['
_ENVELOPE_TAIL = b"]}"
_FEATURES_INDEX = re.compile(r"^features\[(\d+)\]")


# ---------------------------------------------------------------- files
@dataclass
class Rejection:
    """One feature that was not imported."""

    path: str
    index: int  # position in the file's feature list
    fence_id: str | None
    code: str
    field: str | None
    message: str


@dataclass
class FileResult:
    path: str
    features: int = 0
    imported: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # requests that failed, or an unreadable file
    not_sent: int = 0  # features in requests that failed or were never made
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.failures and not self.not_sent


@dataclass
class UploadReport:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    aborted: str | None = None  # why the upload stopped early

    @property
    def features(self) -> int:
        return sum(f.features for f in self.files)

    @property
    def imported(self) -> int:
        return sum(f.imported for f in self.files)

    @property
    def rejected(self) -> list[Rejection]:
        return [r for f in self.files for r in f.rejected]

    @property
    def failures(self) -> list[str]:
        return [f"{f.path}: {msg}" for f in self.files for msg in f.failures]

    @property
    def ok(self) -> bool:
        return self.aborted is None and all(f.ok for f in self.files)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


class InputError(Exception):
    """A path that is not a readable GeoJSON file or folder."""


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Files as given; folders → their ``*.geojson`` files, sorted."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(
                os.path.join(p, n) for n in os.listdir(p)
                if n.lower().endswith(".geojson") and os.path.isfile(os.path.join(p, n))
            )
            if not found:
                raise InputError(f"{p}: folder holds no .geojson files")
            out.extend(found)
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return out


def load_features(path: str) -> list[Any]:
    """The features of a FeatureCollection or a single Feature file.

    A lone Feature without an id gets the file's name as its id."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not readable as JSON: {str(exc)[:200]}") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise InputError(f'{path}: a FeatureCollection needs a "features" list')
        return features
    if kind == "Feature":
        props = data.get("properties")
        has_id = data.get("id") is not None or (isinstance(props, dict) and props.get("id") is not None)
        if not has_id:
            data = dict(data, id=os.path.splitext(os.path.basename(path))[0])
        return [data]
    raise InputError(f'{path}: expected a GeoJSON FeatureCollection or Feature, got "type": {kind!r}')


def _feature_id(feature: Any) -> str | None:
    if not isinstance(feature, dict):
        return None
    fid = feature.get("id")
    if fid is None and isinstance(feature.get("properties"), dict):
        fid = feature["properties"].get("id")
    return None if fid is None else str(fid)


def plan_requests(encoded: list[bytes], *, batch: int, max_bytes: int) -> Iterator[tuple[int, int]]:
    """Split serialised features into ``[start, stop)`` ranges of at most
    ``batch`` features and ``max_bytes`` bytes of collection. A feature too
    big on its own gets a range of its own (the caller rejects it)."""
    start, size = 0, len(_ENVELOPE_HEAD) + len(_ENVELOPE_TAIL)
    base = size
    for i, item in enumerate(encoded):
        extra = len(item) + (1 if i > start else 0)
        if i > start and (i - start >= batch or size + extra > max_bytes):
            yield start, i
            start, size = i, base
            extra = len(item)
        size += extra
    if start < len(encoded):
        yield start, len(encoded)


_FIT = re.compile(r"the first (\d+) features fit")


def budget_fit(exc: ApiError) -> int | None:
    """How many leading features fit the server's import work budget, when
    ``exc`` is that budget's 400 (``field: features``), else None.

    >>> budget_fit(ApiError(400, "invalid_input", "... at features[7]; the first 7 features fit: split the file", "features"))
    7
    """
    if exc.status != 400 or exc.field != "features":
        return None
    m = _FIT.search(exc.message)
    return int(m.group(1)) if m else None


def _collection(encoded: list[bytes]) -> bytes:
    return _ENVELOPE_HEAD + b",".join(encoded) + _ENVELOPE_TAIL


def _shift_field(field_name: str | None, offset: int) -> str | None:
    """``features[3].geometry`` in a request starting at ``offset`` → the
    field's path in the file."""
    if not field_name or not offset:
        return field_name
    return _FEATURES_INDEX.sub(lambda m: f"features[{int(m.group(1)) + offset}]", field_name, count=1)


def upload_file(
    client: HexcastClient,
    path: str,
    *,
    repair: bool = False,
    batch: int = DEFAULT_BATCH,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = True,
    seen_ids: dict[str, str] | None = None,
) -> FileResult:
    """Upload one file; raises :class:`ApiError` (fatal ones only) or
    :class:`Unreachable`, after recording what happened in the result it
    attaches as ``exc.result``."""
    t0 = time.perf_counter()
    result = FileResult(path)
    try:
        features = load_features(path)
    except InputError as exc:
        result.failures.append(str(exc).removeprefix(f"{path}: "))
        return result
    result.features = len(features)
    seen_ids = {} if seen_ids is None else seen_ids

    # Rejected here, as the server would: an id twice in one file (the file
    # may be split across requests, so the server cannot see it).
    in_file: set[str] = set()
    send: list[int] = []
    for i, feature in enumerate(features):
        fid = _feature_id(feature)
        if fid is not None and fid in in_file:
            result.rejected.append(Rejection(path, i, fid, "invalid_input", f"features[{i}].id",
                                             f"duplicate id {fid!r} in this file"))
            continue
        if fid is not None:
            in_file.add(fid)
            if fid in seen_ids:
                result.warnings.append(f"id {fid!r} (features[{i}]) is also in {seen_ids[fid]}: this one replaces it")
            seen_ids[fid] = path
        send.append(i)

    encoded: list[bytes] = []
    for i in list(send):
        try:
            encoded.append(json.dumps(features[i], separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())
        except ValueError:  # NaN or Infinity: not JSON, the server would refuse the whole request
            send.remove(i)
            result.rejected.append(Rejection(path, i, _feature_id(features[i]), "invalid_input", f"features[{i}]",
                                             "NaN or Infinity in the feature: coordinates must be finite numbers"))
    bar = tqdm(total=len(features), desc=os.path.basename(path), unit="feature", disable=not progress,
               leave=True, dynamic_ncols=True, file=sys.stderr)
    bar.update(len(features) - len(send))  # local rejections count as done
    try:
        ranges = list(plan_requests(encoded, batch=batch, max_bytes=max_bytes))
        while ranges:
            start, stop = ranges.pop(0)
            body = _collection(encoded[start:stop])
            if len(body) > max_bytes:  # one feature alone is too big
                i = send[start]
                result.rejected.append(Rejection(
                    path, i, _feature_id(features[i]), "payload_too_large", f"features[{i}]",
                    f"the feature is {_size(len(body))} as JSON; a request may carry at most "
                    f"{_size(max_bytes)} (simplify it or split it into several fences)"))
                bar.update(1)
                continue
            try:
                answer = client.import_collection(body, repair=repair)
            except ApiError as exc:
                fit = budget_fit(exc)
                if fit is not None and 0 < fit < stop - start:
                    # Over the server's work budget per request: the leading
                    # features that fit go first, the rest after them.
                    ranges[:0] = [(start, start + fit), (start + fit, stop)]
                    continue
                if exc.fatal:
                    result.not_sent += len(send) - start
                    result.failures.append(exc.describe())
                    exc.result = result
                    raise
                result.not_sent += stop - start
                first, last = send[start], send[stop - 1]
                result.failures.append(f"features[{first}..{last}] not imported: {exc.describe()}")
                bar.update(stop - start)
                continue
            except Unreachable as exc:
                result.not_sent += len(send) - start
                result.failures.append(str(exc))
                exc.result = result
                raise
            _record_answer(result, answer, path, send, start, stop)
            bar.update(stop - start)
    finally:
        bar.close()
        result.rejected.sort(key=lambda r: r.index)
        result.seconds = time.perf_counter() - t0
    return result


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _record_answer(result: FileResult, answer: Any, path: str, send: list[int], start: int, stop: int) -> None:
    if not isinstance(answer, dict) or not isinstance(answer.get("rejected"), list):
        result.not_sent += stop - start
        result.failures.append(f"unexpected answer to an import: {str(answer)[:200]}")
        return
    result.imported += int(answer.get("imported", 0))
    for rej in answer["rejected"]:
        k = int(rej.get("index", -1))
        i = send[start + k] if 0 <= k < stop - start else -1
        err = rej.get("error") or {}
        # The server numbers features within the request: renumber within the file.
        fld = err.get("field")
        if i >= 0 and fld:
            fld = _shift_field(fld, i - k) if _FEATURES_INDEX.match(fld) else fld
        result.rejected.append(Rejection(path, i, rej.get("id"), str(err.get("code")), fld, cli_hint(str(err.get("message")))))


def cli_hint(message: str) -> str:
    """The API's advice in this CLI's terms: its query parameter
    ``?repair=true`` is the ``--repair`` flag here.

    >>> cli_hint("invalid polygon: self-intersection near lng 1, lat 2; pass ?repair=true to repair it")
    'invalid polygon: self-intersection near lng 1, lat 2; re-run with --repair to repair it'
    """
    return message.replace("pass ?repair=true", "re-run with --repair").replace("?repair=true", "--repair")


def upload(
    paths: Iterable[str],
    client: HexcastClient,
    *,
    repair: bool = False,
    batch: int = DEFAULT_BATCH,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = True,
) -> UploadReport:
    """Upload files and folders of GeoJSON; never raises for server answers:
    everything that went wrong is in the report.

    Raises :class:`InputError` when a path does not exist (nothing is sent)."""
    if not 1 <= batch <= MAX_FEATURES_PER_REQUEST:
        raise ValueError(f"batch must be from 1 to {MAX_FEATURES_PER_REQUEST}")
    if not 1024 <= max_bytes <= SERVER_MAX_BYTES:
        raise ValueError(f"max_bytes must be from 1024 to {SERVER_MAX_BYTES}")
    files = expand_paths(paths)
    report = UploadReport()
    t0 = time.perf_counter()
    seen: dict[str, str] = {}
    for n, path in enumerate(files):
        try:
            report.files.append(upload_file(client, path, repair=repair, batch=batch, max_bytes=max_bytes,
                                            progress=progress, seen_ids=seen))
        except (ApiError, Unreachable) as exc:
            report.files.append(exc.result)
            report.aborted = exc.describe() if isinstance(exc, ApiError) else str(exc)
            for rest in files[n + 1:]:
                report.files.append(FileResult(rest, failures=["not uploaded (stopped after the error above)"]))
            break
    report.seconds = time.perf_counter() - t0
    return report


# ---------------------------------------------------------------- output
def _table(rows: list[list[str]], headers: list[str], indent: str = "  ") -> str:
    widths = [max(len(h), *(len(r[c]) for r in rows)) if rows else len(h) for c, h in enumerate(headers)]
    lines = [indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for r in rows:
        lines.append(indent + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def print_report(report: UploadReport, out: TextIO = sys.stdout) -> None:
    """Per file: counts, then every rejected feature; then one summary line."""
    for f in report.files:
        status = f"{f.imported} imported, {len(f.rejected)} rejected"
        if f.not_sent:
            status += f", {f.not_sent} not uploaded"
        print(f"{f.path}: {_plural(f.features, 'feature')}, {status} ({f.seconds:.1f} s)", file=out)
        for w in f.warnings:
            print(f"  warning: {w}", file=out)
        if f.rejected:
            rows = [[str(r.index), r.fence_id or "-", r.field or "-", f"{r.code}: {r.message}"] for r in f.rejected]
            print(_table(rows, ["index", "id", "field", "error"]), file=out)
        for msg in f.failures:
            print(f"  error: {msg}", file=out)
    n_fail = sum(len(f.failures) for f in report.files)
    summary = (
        f"{'OK' if report.ok else 'FAILED'}: {_plural(len(report.files), 'file')}, {_plural(report.features, 'feature')}, "
        f"{report.imported} imported, {len(report.rejected)} rejected"
    )
    if n_fail:
        summary += f", {n_fail} error(s)"
    summary += f" in {report.seconds:.1f} s"
    if report.aborted:
        summary += f" — stopped: {report.aborted}"
    print(summary, file=out)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def print_lookup(lat: float, lng: float, fences: list[dict], out: TextIO = sys.stdout) -> None:
    if not fences:
        print(f"no fence contains lat {lat}, lng {lng}", file=out)
        return
    rows = [[f.get("id", ""), f.get("name") or "", ", ".join(f.get("tags") or [])] for f in fences]
    print(f"{len(fences)} fence(s) contain lat {lat}, lng {lng}:", file=out)
    print(_table(rows, ["id", "name", "tags"]), file=out)


# ---------------------------------------------------------------- CLI
def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError("must be a finite number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fences",
        description="Upload geofences to hexcast and look up points.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("HEXCAST_URL"),
                        help="base URL of the API (default: $HEXCAST_URL)")
    common.add_argument("--key", default=os.environ.get("HEXCAST_ADMIN_KEY"),
                        help="admin API key (default: $HEXCAST_ADMIN_KEY)")
    common.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per request (default %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("upload", parents=[common], help="upload .geojson files or folders of them",
                        description="Upload FeatureCollections or single Features; every feature is imported "
                                    "or rejected on its own. Exits 1 when anything was rejected or failed.")
    up.add_argument("paths", nargs="+", metavar="PATH", help="a .geojson file or a folder of .geojson files")
    up.add_argument("--repair", action="store_true", help="repair self-intersecting polygons when the repair is polygonal")
    up.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                    help=f"features per request, 1-{MAX_FEATURES_PER_REQUEST} (default %(default)s)")
    up.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                    help=f"bytes per request, at most {SERVER_MAX_BYTES} (default %(default)s)")
    up.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    lk = sub.add_parser("lookup", parents=[common], help="the fences that contain a point")
    lk.add_argument("--lat", type=_finite, required=True)
    lk.add_argument("--lng", type=_finite, required=True)
    lk.add_argument("--json", action="store_true", help="print the answer as JSON")
    return parser


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("no API URL: pass --url or set HEXCAST_URL")
    if not args.key:
        parser.error("no admin key: pass --key or set HEXCAST_ADMIN_KEY")
    client = HexcastClient(args.url, args.key, timeout=args.timeout)

    if args.command == "lookup":
        try:
            fences = client.lookup(args.lat, args.lng)
        except (ApiError, Unreachable) as exc:
            print(f"lookup failed: {exc.describe() if isinstance(exc, ApiError) else exc}", file=err)
            return 1
        if args.json:
            print(json.dumps({"fences": fences}, indent=2), file=out)
        else:
            print_lookup(args.lat, args.lng, fences, out)
        return 0

    if not 1 <= args.batch <= MAX_FEATURES_PER_REQUEST:
        parser.error(f"--batch must be from 1 to {MAX_FEATURES_PER_REQUEST}")
    if not 1024 <= args.max_bytes <= SERVER_MAX_BYTES:
        parser.error(f"--max-bytes must be from 1024 to {SERVER_MAX_BYTES}")
    try:
        report = upload(args.paths, client, repair=args.repair, batch=args.batch,
                        max_bytes=args.max_bytes, progress=not args.quiet)
    except InputError as exc:
        print(f"upload: {exc}", file=err)
        return 2
    print_report(report, out)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
