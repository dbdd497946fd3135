"""Parse decompressed DAP objects (TSV, JSONL, CSV; condensed or expanded) into records.

This is the hot path of the tap.  The TSV parser works on blocks of about 1 MiB of complete
lines at a time, column-wise: the block is decoded once, split once on tabs and newlines,
each column is cut out with one slice and converted with one C-level ``map`` when it has no
NULL and no escape (the common case), and the row dicts are built with ``map(dict, ...)``.
No Python bytecode runs per field on the fast path.

A record is a plain tuple ``(action, ts, row)``:

* ``action``: ``"U"`` (insert/update, and every snapshot row) or ``"D"`` (delete);
* ``ts``: ``meta.ts`` as DAP sent it (a string ending in ``Z``);
* ``row``: ``{column: value}`` with key columns first then value columns in schema order.
  ``U`` rows carry every column of the schema (``None`` where NULL or absent); ``D`` rows
  carry the key columns only.

Values are JSON natives: integers -> ``int``, numbers -> ``float``, booleans -> ``bool``,
date-times and other strings -> ``str``, objects / arrays -> parsed JSON (``dict`` /
``list``; null members of nested objects omitted), NULL -> ``None``.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from typing import Any

import orjson

from .errors import ObjectFormatError

__all__ = [
    "Record",
    "TableLayout",
    "ObjectParser",
    "parse_object",
    "unescape_tsv",
]

#: ``(action, meta_ts, row)``
Record = tuple[str, str, dict[str, Any]]

# column kinds
INT, FLOAT, BOOL, JSON, STR = "int", "float", "bool", "json", "str"
_JSON_TYPE_KIND = {"integer": INT, "number": FLOAT, "boolean": BOOL, "object": JSON,
                   "array": JSON, "string": STR}

_BLOCK = 1 << 20  # bytes of complete lines parsed at once
_NULL = "\\N"
_EMPTY_LINES = re.compile(r"\n{2,}")


# --------------------------------------------------------------------------- schema


def _resolve(node: Any, root: Mapping) -> Any:
    """Follow a local ``$ref`` (``#/definitions/x`` or ``#/$defs/x``)."""
    seen = 0
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and seen < 20:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return node
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, Mapping) else None
        if target is None:
            return node
        node = target
        seen += 1
    return node


def _kind(prop: Any, root: Mapping) -> str:
    """The parsing kind of a JSON-schema property."""
    prop = _resolve(prop, root)
    if not isinstance(prop, Mapping):
        return STR
    t = prop.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if isinstance(t, str):
        return _JSON_TYPE_KIND.get(t, STR)
    for union in ("oneOf", "anyOf"):
        members = prop.get(union)
        if isinstance(members, list) and members:
            kinds = {_kind(m, root) for m in members}
            kinds.discard("null")
            return kinds.pop() if len(kinds) == 1 else STR
    if "properties" in prop:
        return JSON
    if "items" in prop:
        return JSON
    if "enum" in prop or "const" in prop:
        values = prop.get("enum") or [prop.get("const")]
        if all(isinstance(v, bool) for v in values):
            return BOOL
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return INT
    return STR


@dataclass
class TableLayout:
    """What the parser needs to know about a table: column names and kinds.

    ``key``/``value``: column names in schema order; ``kinds``: flat name -> kind
    (``int``/``float``/``bool``/``json``/``str``); ``members``: for object columns with
    declared properties, dotted member path (``"settings.theme"``) -> kind, used to
    reassemble ``mode=expanded`` files.
    """

    key: list[str]
    value: list[str]
    kinds: dict[str, str]
    members: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Key then value column names."""
        return self.key + self.value

    @classmethod
    def from_schema(cls, schema: Mapping) -> TableLayout:
        """Build the layout from a DAP table schema as served (``{"properties": {"key",
        "value", "meta"}}``) or from the ``{"schema": ..., "version": ...}`` envelope."""
        if "schema" in schema and "properties" not in schema:
            schema = schema["schema"]
        root = schema
        props = _resolve(schema, root).get("properties", {})
        key_obj = _resolve(props.get("key", {}), root)
        value_obj = _resolve(props.get("value", {}), root)
        key_props = key_obj.get("properties", {}) if isinstance(key_obj, Mapping) else {}
        value_props = value_obj.get("properties", {}) if isinstance(value_obj, Mapping) else {}
        kinds: dict[str, str] = {}
        members: dict[str, str] = {}
        for name, prop in list(key_props.items()) + list(value_props.items()):
            kinds[name] = _kind(prop, root)
            _collect_members(name, prop, root, members)
        return cls(list(key_props), list(value_props), kinds, members)

    @classmethod
    def from_types(cls, key: Mapping[str, str], value: Mapping[str, str]) -> TableLayout:
        """Build the layout from ``{column: json_type}`` maps (json types such as
        ``"integer"``, ``"number"``, ``"boolean"``, ``"string"``, ``"object"``, ``"array"``)."""
        kinds = {n: _JSON_TYPE_KIND.get(t, STR) for n, t in {**key, **value}.items()}
        return cls(list(key), list(value), kinds)


def _collect_members(path: str, prop: Any, root: Mapping, out: dict[str, str]) -> None:
    prop = _resolve(prop, root)
    if not isinstance(prop, Mapping):
        return
    sub = prop.get("properties")
    if isinstance(sub, Mapping):
        for name, member in sub.items():
            mpath = f"{path}.{name}"
            out[mpath] = _kind(member, root)
            _collect_members(mpath, member, root, out)


# --------------------------------------------------------------------------- TSV escapes

_ESCAPES = {"\\": "\\", "0": "\0", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
            "v": "\v", "N": None}
_ESC_RE = re.compile(r"\\(.?)", re.S)


def _esc_sub(m: re.Match) -> str:
    ch = m.group(1)
    rep = _ESCAPES.get(ch, False)
    if rep is False or rep is None:
        raise ValueError(f"invalid TSV escape {m.group(0)!r}")
    return rep


def unescape_tsv(text: str) -> str:
    """Undo TSV backslash escapes (``\\\\ \\0 \\b \\f \\n \\r \\t \\v``) in one field."""
    if "\\" not in text:
        return text
    return _ESC_RE.sub(_esc_sub, text)


# --------------------------------------------------------------------------- converters
# ``conv(col)`` maps a list of field texts to a list of values.  Escapes have already been
# undone (see ``_unescape_fields``), so a field is either the NULL marker or its own text.

_BOOLS = {"true": True, "false": False, _NULL: None}


def _conv_str(col: list[str]) -> list:
    if _NULL in col:
        return [None if v == _NULL else v for v in col]
    return col


def _conv_int(col: list[str]) -> list:
    if _NULL in col:
        return [None if v == _NULL else int(v) for v in col]
    return list(map(int, col))


def _conv_float(col: list[str]) -> list:
    if _NULL in col:
        return [None if v == _NULL else float(v) for v in col]
    return list(map(float, col))


def _conv_bool(col: list[str]) -> list:
    try:
        return list(map(_BOOLS.__getitem__, col))
    except KeyError as exc:
        raise ValueError(f"invalid boolean {exc.args[0]!r}") from None


def _conv_json(col: list[str]) -> list:
    loads = orjson.loads
    if _NULL in col:
        return [None if v == _NULL else loads(v) for v in col]
    return list(map(loads, col))


_CONVERTERS = {INT: _conv_int, FLOAT: _conv_float, BOOL: _conv_bool, JSON: _conv_json,
               STR: _conv_str}



def _unescape_fields(text: str, fields: list[str], ncols: int) -> list[int]:
    """Unescape, in place, the fields of ``fields`` (the block ``text`` split on tabs and
    newlines, ``ncols`` per line) that hold an escape; return the indices of fields whose
    unescaped text is literally ``\\N`` (they must not be read as NULL).

    NULL markers are blanked out in a same-length copy of the block (one C-speed replace),
    so the remaining backslashes are exactly the escapes, found with ``find`` (memchr); the
    line of each is found by bisecting line end offsets (built at C speed), its column by
    counting tabs within that line."""
    scan = text.replace("\\N", "\0\0")
    find = scan.find
    pos = find("\\")
    if pos < 0:
        return []
    count = scan.count
    # exclusive end offset of every line, newline included
    line_ends = list(accumulate(map(_PLUS_ONE, map(len, text.split("\n")))))
    literal: list[int] = []
    row = 0
    while pos >= 0:
        row = bisect_right(line_ends, pos, row)
        start = line_ends[row - 1] if row else 0
        idx = row * ncols + count("\t", start, pos)
        value = _ESC_RE.sub(_esc_sub, fields[idx])
        fields[idx] = value
        if value == _NULL:
            literal.append(idx)
        line_end = line_ends[row] - 1
        tab = find("\t", pos, line_end)
        pos = find("\\", tab if tab >= 0 else line_end)
    return literal


_PLUS_ONE = (1).__add__


# converters of single CSV fields (already unquoted)


def _csv_value(kind: str, v: str) -> Any:
    if kind == STR:
        return v
    if kind == INT:
        return int(v)
    if kind == FLOAT:
        return float(v)
    if kind == BOOL:
        if v == "true":
            return True
        if v == "false":
            return False
        raise ValueError(f"invalid boolean {v!r}")
    return orjson.loads(v)


# --------------------------------------------------------------------------- header


@dataclass
class _Header:
    labels: list[str]
    ts_index: int
    action_index: int | None
    # output column name -> (field index or None if absent, kind)
    out: list[tuple[str, int | None, str]]
    key_names: list[str]
    key_indices: list[int]
    # expanded mode: top-level object column -> [(member path parts, field index, kind)]
    nested: dict[str, list[tuple[list[str], int, str]]]
    layout_kinds: dict[str, str]
    label_names: dict[int, str]  # field index -> flat output column (str columns only)


def _parse_header(labels: list[str], layout: TableLayout) -> _Header:
    if "meta.ts" not in labels:
        raise ObjectFormatError(
            f"DAP object header has no meta.ts column ({labels[:5]}...): not a DAP TSV/CSV "
            "object; report this with the job id")
    ts_index = labels.index("meta.ts")
    action_index = labels.index("meta.action") if "meta.action" in labels else None
    flat: dict[str, int] = {}
    nested: dict[str, list[tuple[list[str], int, str]]] = {}
    for i, label in enumerate(labels):
        section, _, name = label.partition(".")
        if section not in ("key", "value") or not name:
            continue
        if name in layout.kinds or "." not in name:
            flat[name] = i
        else:
            top, _, rest = name.partition(".")
            kind = layout.members.get(name, STR)
            nested.setdefault(top, []).append((rest.split("."), i, kind))
    out: list[tuple[str, int | None, str]] = []
    for name in layout.columns:
        if name in flat:
            out.append((name, flat.pop(name), layout.kinds[name]))
        elif name in nested:
            out.append((name, None, JSON))  # reassembled below
        else:
            out.append((name, None, layout.kinds[name]))
    for name, i in flat.items():  # columns newer than the schema: keep them, as text
        out.append((name, i, STR))
    key_names = list(layout.key)
    key_indices = []
    for n in key_names:
        if f"key.{n}" not in labels:
            raise ObjectFormatError(
                f"DAP object header lacks the key column key.{n}: the object does not match "
                "the table schema; fetch the schema again and re-run")
        key_indices.append(labels.index(f"key.{n}"))
    label_names = {i: name for name, i, kind in out if i is not None and kind == STR}
    return _Header(labels, ts_index, action_index, out, key_names, key_indices, nested,
                   layout.kinds, label_names)


def _assemble(members: list[tuple[list[str], Any]]) -> dict | None:
    """Nested object from (path, value) pairs; null members omitted, all-null -> None."""
    obj: dict = {}
    for path, value in members:
        if value is None:
            continue
        cur = obj
        for part in path[:-1]:
            cur = cur.setdefault(part, {})
        cur[path[-1]] = value
    return obj or None


# --------------------------------------------------------------------------- parser


class ObjectParser:
    """Turn the decompressed bytes of DAP objects into records.

    ``ObjectParser(layout_or_schema, format="tsv")``; then :meth:`records` (one record at a
    time) or :meth:`batches` (lists of records, faster for the consumer) over an iterable of
    byte chunks (chunk boundaries anywhere).  One parser can be reused for several objects
    of the same table: each call parses one object (its own header).
    """

    def __init__(self, layout: TableLayout | Mapping, format: str = "tsv") -> None:
        if not isinstance(layout, TableLayout):
            layout = TableLayout.from_schema(layout)
        if format not in ("tsv", "jsonl", "csv"):
            raise ValueError(f"unsupported DAP object format {format!r} (tsv, jsonl, csv)")
        self.layout = layout
        self.format = format

    def records(self, chunks: Iterable[bytes]) -> Iterator[Record]:
        """Records of one object, in file order."""
        for batch in self.batches(chunks):
            yield from batch

    def batches(self, chunks: Iterable[bytes]) -> Iterator[list[Record]]:
        """Records of one object in lists of up to ~1 MiB of input each."""
        if self.format == "tsv":
            return self._tsv(chunks)
        if self.format == "jsonl":
            return self._jsonl(chunks)
        return self._csv(chunks)

    # ---------------------------------------------------------------- blocks of lines

    @staticmethod
    def _line_blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Blocks of complete lines (without the final newline), ~_BLOCK bytes each."""
        pending: list[bytes] = []
        size = 0
        for chunk in chunks:
            if not chunk:
                continue
            pending.append(chunk)
            size += len(chunk)
            if size < _BLOCK:
                continue
            data = b"".join(pending)
            cut = data.rfind(b"\n")
            if cut < 0:
                pending, size = [data], len(data)
                continue
            yield data[:cut]
            rest = data[cut + 1:]
            pending, size = ([rest], len(rest)) if rest else ([], 0)
        data = b"".join(pending)
        if data.endswith(b"\n"):
            data = data[:-1]
        if data:
            yield data

    # ---------------------------------------------------------------- TSV

    def _tsv(self, chunks: Iterable[bytes]) -> Iterator[list[Record]]:
        header: _Header | None = None
        line_no = 1
        for block in self._line_blocks(chunks):
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ObjectFormatError(
                    f"DAP object is not valid UTF-8 near line {line_no}: {exc.reason}; the "
                    "download may be corrupt, re-run the sync") from None
            if header is None:
                first, _, text = text.partition("\n")
                header = _parse_header(first.split("\t"), self.layout)
                line_no += 1
                if not text:
                    continue
            # empty lines carry no record (DAP writes none but a final newline)
            if "\n\n" in text or text.startswith("\n") or text.endswith("\n"):
                text = _EMPTY_LINES.sub("\n", text).strip("\n")
            if text:
                batch = self._tsv_block(text, header, line_no)
                line_no += len(batch)
                yield batch

    def _tsv_block(self, text: str, h: _Header, line_no: int) -> list[Record]:
        ncols = len(h.labels)
        nlines = text.count("\n") + 1
        flat = text.replace("\n", "\t")
        fields = flat.split("\t")
        if len(fields) != nlines * ncols:
            self._tsv_bad_line(text, ncols, line_no)
        n = nlines
        literal = _unescape_fields(text, fields, ncols) if "\\" in text else ()
        ts_col = fields[h.ts_index::ncols]
        if h.action_index is not None:
            actions = fields[h.action_index::ncols]
            d_rows = ([i for i, a in enumerate(actions) if a != "U"]
                      if actions.count("U") != n else [])
        else:
            actions = None
            d_rows = []
        names: list[str] = []
        cols: list[Any] = []
        key_set = set(h.key_names)
        try:
            for name, idx, kind in h.out:
                names.append(name)
                if idx is None:
                    if name in h.nested:
                        cols.append(self._tsv_nested(fields, ncols, h.nested[name], d_rows))
                    else:
                        cols.append(repeat(None, n))
                    continue
                col = fields[idx::ncols]
                if d_rows and name not in key_set:
                    for i in d_rows:
                        col[i] = _NULL
                cols.append(_CONVERTERS[kind](col))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise ObjectFormatError(
                f"DAP object has an invalid value in column {name!r} (lines {line_no}-"
                f"{line_no + n - 1}): {exc}; the object does not match the table schema, "
                "fetch the schema again and re-run") from None
        rows = list(map(dict, map(zip, repeat(names), zip(*cols, strict=True))))
        for idx in literal:  # a string that is literally backslash-N, not NULL
            row_i, label = divmod(idx, ncols)
            name = h.label_names.get(label)
            if name is not None and rows[row_i].get(name, 0) is None:
                rows[row_i][name] = _NULL
        if actions is None:
            return list(zip(repeat("U"), ts_col, rows))
        records = list(zip(actions, ts_col, rows, strict=True))
        if d_rows:
            knames = h.key_names
            for i in d_rows:
                action = actions[i]
                if action == "D":
                    row = rows[i]
                    records[i] = ("D", ts_col[i], {k: row[k] for k in knames})
                else:
                    raise ObjectFormatError(
                        f"DAP object has an unknown meta.action {action!r} at line "
                        f"{line_no + i}: expected U or D")
        return records

    @staticmethod
    def _tsv_nested(fields: list[str], ncols: int, members: list[tuple[list[str], int, str]],
                    d_rows: list[int]) -> list:
        paths, cols = [], []
        for path, idx, kind in members:
            col = fields[idx::ncols]
            for i in d_rows:
                col[i] = _NULL
            paths.append(path)
            cols.append(_CONVERTERS[kind](col))
        return [_assemble(list(zip(paths, vals, strict=True))) for vals in zip(*cols, strict=True)]

    @staticmethod
    def _tsv_bad_line(text: str, ncols: int, line_no: int) -> None:
        for i, line in enumerate(text.split("\n")):
            got = line.count("\t") + 1
            if got != ncols:
                raise ObjectFormatError(
                    f"DAP TSV object line {line_no + i} has {got} fields, the header has "
                    f"{ncols}: the object is truncated or corrupt; re-run the sync")
        raise ObjectFormatError(  # pragma: no cover - counts disagree but lines agree
            f"DAP TSV object block at line {line_no} is malformed; re-run the sync")

    # ---------------------------------------------------------------- JSONL

    def _jsonl(self, chunks: Iterable[bytes]) -> Iterator[list[Record]]:
        layout = self.layout
        template = dict.fromkeys(layout.columns)
        keys = layout.key
        loads = orjson.loads
        line_no = 1
        for block in self._line_blocks(chunks):
            batch: list[Record] = []
            append = batch.append
            for line in block.split(b"\n"):
                if not line.strip():
                    line_no += 1
                    continue
                try:
                    obj = loads(line)
                    meta = obj["meta"]
                    key = obj["key"]
                    if meta.get("action", "U") == "D":
                        append(("D", meta["ts"], {k: key.get(k) for k in keys}))
                    else:
                        row = template.copy()
                        row.update(key)
                        value = obj.get("value")
                        if value:
                            row.update(value)
                        append(("U", meta["ts"], row))
                except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                    raise ObjectFormatError(
                        f"DAP JSONL object line {line_no} is not a DAP record ({exc!r}): the "
                        "object is corrupt or not JSONL; re-run the sync") from None
                line_no += 1
            if batch:
                yield batch

    # ---------------------------------------------------------------- CSV

    _CSV_FIELD = re.compile(r'(?:"((?:[^"]|"")*)"|([^,"\r\n]*))(,|\r?\n|\Z)')

    def _csv(self, chunks: Iterable[bytes]) -> Iterator[list[Record]]:
        h: _Header | None = None
        buf = ""
        decoder = _Utf8Stream()
        rows_done = 0
        it = iter(chunks)
        final = False
        while not final:
            chunk = next(it, None)
            if chunk is None:
                final = True
                buf += decoder.finish()
            else:
                buf += decoder.feed(chunk)
                if len(buf) < _BLOCK:
                    continue
            pos = 0
            batch: list[Record] = []
            n = len(buf)
            while pos < n:
                start = pos
                rec: list[Any] = []
                complete = False
                while True:
                    m = self._CSV_FIELD.match(buf, pos)
                    if m is None or m.end() == pos:
                        if final:
                            raise ObjectFormatError(
                                f"DAP CSV object record {rows_done + 1} is malformed near "
                                f"{buf[pos:pos + 40]!r}; the object is corrupt, re-run")
                        break
                    quoted, plain, sep = m.groups()
                    if m.end() == n and not final:
                        break  # the field may continue in the next chunk
                    if quoted is not None:
                        rec.append(quoted.replace('""', '"'))
                    else:
                        rec.append(None if plain in ("NULL", "") else plain)
                    pos = m.end()
                    if sep != ",":
                        complete = True
                        break
                if not complete:
                    pos = start
                    break
                if h is None:
                    h = _parse_header([x or "" for x in rec], self.layout)
                    continue
                rows_done += 1
                batch.append(self._csv_record(rec, h, rows_done))
            buf = buf[pos:]
            if batch:
                yield batch

    @staticmethod
    def _csv_record(rec: list[Any], h: _Header, row_no: int) -> Record:
        if len(rec) != len(h.labels):
            raise ObjectFormatError(
                f"DAP CSV object record {row_no} has {len(rec)} fields, the header has "
                f"{len(h.labels)}: the object is corrupt; re-run the sync")
        action = rec[h.action_index] if h.action_index is not None else "U"
        ts = rec[h.ts_index]
        row: dict[str, Any] = {}
        try:
            if action == "D":
                for name, idx in zip(h.key_names, h.key_indices, strict=True):
                    v = rec[idx]
                    row[name] = None if v is None else _csv_value(h.layout_kinds[name], v)
                return ("D", ts, row)
            if action != "U":
                raise ObjectFormatError(
                    f"DAP CSV object record {row_no} has unknown meta.action {action!r}")
            for name, idx, kind in h.out:
                if idx is None:
                    if name in h.nested:
                        row[name] = _assemble([
                            (path, None if rec[i] is None else _csv_value(k, rec[i]))
                            for path, i, k in h.nested[name]])
                    else:
                        row[name] = None
                    continue
                v = rec[idx]
                row[name] = None if v is None else _csv_value(kind, v)
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise ObjectFormatError(
                f"DAP CSV object record {row_no} has an invalid value ({exc}): the object "
                "does not match the table schema; fetch the schema again and re-run") from None
        return (action, ts, row)


class _Utf8Stream:
    """Incremental UTF-8 decoding of chunks split anywhere."""

    def __init__(self) -> None:
        import codecs

        self._dec = codecs.getincrementaldecoder("utf-8")()

    def feed(self, data: bytes) -> str:
        try:
            return self._dec.decode(data)
        except UnicodeDecodeError as exc:
            raise ObjectFormatError(
                f"DAP object is not valid UTF-8 ({exc.reason}): the download may be "
                "corrupt; re-run the sync") from None

    def finish(self) -> str:
        return self.feed(b"") + self._dec.decode(b"", final=True)


def parse_object(data: bytes | Iterable[bytes], layout: TableLayout | Mapping,
                 format: str = "tsv") -> list[Record]:
    """Convenience: every record of one decompressed object (small objects, tests)."""
    chunks = [data] if isinstance(data, (bytes, bytearray)) else data
    return list(ObjectParser(layout, format).records(chunks))
