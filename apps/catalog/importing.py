"""Catalogue files → validated items, with the line number of every problem.

Formats:
- CSV (``.csv``): a header row; columns ``id``, ``title`` (required), ``description``,
  ``categories`` (``|``-separated, as MovieLens writes genres), ``available`` (true/false/1/0/
  yes/no, empty = true), ``attributes`` (a JSON object); any other column becomes a string
  attribute of that name (empty cells are left out).
- JSON Lines (``.jsonl``, ``.ndjson``): one item object per line, exactly as the items API takes it.

Line numbers are the file's physical lines (1 = the CSV header), so an editor jumps right there.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from apps.catalog.validation import MAX_BATCH, ItemInput, ItemInputError, parse_item

_KNOWN_COLUMNS = {"id", "title", "description", "categories", "available", "attributes"}
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ParsedFile:
    items: dict[str, ItemInput] = field(default_factory=dict)  # by id; a later line wins
    errors: list[LineError] = field(default_factory=list)
    lines_read: int = 0
    duplicates: int = 0

    def add(self, item: ItemInput) -> None:
        if item.external_id in self.items:
            self.duplicates += 1
        self.items[item.external_id] = item


def detect_format(path: Path, explicit: str | None = None) -> str:
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path.name}: use a .csv or .jsonl file, or --format")


def _available(raw: str) -> bool | str:
    value = raw.strip().lower()
    if value == "" or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return raw  # parse_item reports it


def csv_record(row: dict[str | None, Any]) -> dict[str, Any]:
    """A CSV row (``csv.DictReader``) → an item object for ``parse_item``."""
    record: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for column, value in row.items():
        if column is None or value is None:
            continue
        if column == "categories":
            record["categories"] = [c for c in (part.strip() for part in value.split("|")) if c]
        elif column == "available":
            record["available"] = _available(value)
        elif column == "attributes":
            if value.strip():
                try:
                    record["attributes"] = json.loads(value)
                except ValueError as exc:
                    raise ItemInputError({"attributes": f"is not valid JSON ({exc})"}) from None
        elif column in _KNOWN_COLUMNS:
            record[column] = value
        elif value != "":
            attributes[column] = value
    if attributes:
        given = record.get("attributes")
        record["attributes"] = {**attributes, **given} if isinstance(given, dict) else attributes
    return record


def _csv_items(handle: TextIO, parsed: ParsedFile, *, stop: bool) -> None:
    reader = csv.DictReader(handle, strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        parsed.errors.append(LineError(1, f"unreadable header ({exc})"))
        return
    if not header or "title" not in header or "id" not in header:
        parsed.errors.append(
            LineError(1, f"the header must name at least id and title columns, got {header}")
        )
        return
    width = len(header)
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.errors.append(LineError(reader.line_num, f"malformed CSV ({exc})"))
            if stop:
                return
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        parsed.lines_read += 1
        extra = row.get(None)  # type: ignore[call-overload]
        missing = [k for k, v in row.items() if v is None]
        if extra or missing:
            got = width + len(extra or []) - len(missing)
            parsed.errors.append(LineError(line, f"expected {width} fields, got {got}"))
        else:
            try:
                parsed.add(parse_item(csv_record(row)))
            except ItemInputError as exc:
                parsed.errors.append(LineError(line, str(exc)))
        if stop and parsed.errors:
            return


def _jsonl_items(handle: TextIO, parsed: ParsedFile, *, stop: bool) -> None:
    for number, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        parsed.lines_read += 1
        try:
            record = json.loads(text)
        except ValueError as exc:
            parsed.errors.append(LineError(number, f"not valid JSON ({exc})"))
        else:
            try:
                parsed.add(parse_item(record))
            except ItemInputError as exc:
                parsed.errors.append(LineError(number, str(exc)))
        if stop and parsed.errors:
            return


def parse_catalog_file(
    path: Path, *, file_format: str | None = None, stop_at_first_error: bool = False
) -> ParsedFile:
    """Read and validate the whole file first; nothing is written here."""
    kind = detect_format(path, file_format)
    parsed = ParsedFile()
    with path.open("r", encoding="utf-8", newline="") as handle:
        try:
            if kind == "csv":
                _csv_items(handle, parsed, stop=stop_at_first_error)
            else:
                _jsonl_items(handle, parsed, stop=stop_at_first_error)
        except UnicodeDecodeError as exc:
            parsed.errors.append(LineError(parsed.lines_read + 1, f"not UTF-8 text ({exc.reason})"))
    return parsed


def chunks(items: list[ItemInput], size: int = MAX_BATCH) -> Iterator[list[ItemInput]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- MovieLens ---------------------------------------------------------------------------------

NO_GENRES = "(no genres listed)"


def movielens_items(directory: Path, *, max_tags: int = 50) -> list[ItemInput]:
    """movies.csv (+ tags.csv when present) → items: id = movieId, genres → categories, tags → description."""
    movies = directory / "movies.csv"
    if not movies.is_file():
        raise FileNotFoundError(f"{movies} not found (expected a MovieLens folder with movies.csv)")
    tags: dict[str, list[str]] = {}
    tags_file = directory / "tags.csv"
    if tags_file.is_file():
        with tags_file.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                tag = (row.get("tag") or "").strip()
                bucket = tags.setdefault(row["movieId"], [])
                if tag and tag.lower() not in {t.lower() for t in bucket} and len(bucket) < max_tags:
                    bucket.append(tag)
    items: list[ItemInput] = []
    with movies.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            genres = [g for g in row["genres"].split("|") if g and g != NO_GENRES]
            items.append(
                parse_item(
                    {
                        "id": row["movieId"],
                        "title": row["title"],
                        "categories": genres,
                        "description": ", ".join(tags.get(row["movieId"], [])),
                    }
                )
            )
    return items


@dataclass(frozen=True)
class Rating:
    user: str
    item: str
    value: float
    timestamp: int


def movielens_ratings(directory: Path, *, max_users: int | None = None) -> Iterator[Rating]:
    """ratings.csv rows, optionally only of the first ``max_users`` user ids (in file order)."""
    path = directory / "ratings.csv"
    if not path.is_file():
        return
    users: set[str] = set()
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            user = row["userId"]
            if user not in users:
                if max_users is not None and len(users) >= max_users:
                    continue
                users.add(user)
            yield Rating(
                user=user, item=row["movieId"], value=float(row["rating"]), timestamp=int(row["timestamp"])
            )


# --- waiting for the encoder ------------------------------------------------------------------


def wait_for_encoding(
    *,
    tenant_id: int,
    timeout_s: float,
    progress: bool = True,
    poll_s: float = 1.0,
    status: Callable[[], dict[str, int]] | None = None,
) -> dict[str, int]:
    """Block until no item of the tenant is pending (or the timeout), showing a tqdm bar."""
    from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no stubs

    from apps.catalog.selectors import catalog_status

    read = status or (lambda: catalog_status(tenant_id=tenant_id))
    counts = read()
    deadline = time.monotonic() + timeout_s
    with tqdm(total=counts["items"], desc="encoding", unit="item", disable=not progress) as bar:
        while True:
            bar.total = counts["items"]
            bar.n = counts["ready"] + counts["failed"]
            bar.set_postfix(failed=counts["failed"], refresh=False)
            bar.refresh()
            if counts["pending"] == 0 or time.monotonic() > deadline:
                return counts
            time.sleep(poll_s)
            counts = read()
