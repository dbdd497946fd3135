"""TSV object -> Singer RECORD lines, without building a dict per row.

The fastest emission path for ``format: tsv`` (condensed). A block of complete TSV lines is
split once; each column is turned into a list of JSON *text fragments* with C-level
operations, validated with one regular expression per column, and the lines are produced
with one ``%``-template per block (``map(template.__mod__, zip(*columns))``):

- integer / number / boolean columns: the TSV text already is the JSON text (checked with a
  strict JSON-number / boolean regex over the whole column); ``\\N`` -> ``null``;
- string columns (date-times, enums, uuids, ...) without NULL, escape or JSON-special
  characters: the raw text inside a quoted template slot; otherwise JSON-encoded per field
  (C ``encode_basestring``), TSV escapes undone first when present;
- object / array columns (condensed mode): the JSON text verbatim (checked by parsing it);
- incremental ``D`` rows: key columns + ``_sdc_deleted_at`` (= ``meta.ts``).

Anything unusual (expanded-mode headers, a column failing its check, a malformed block)
is handed to the API client's generic parser for that block, so results are identical.
"""

from __future__ import annotations

import os
import re
import typing as t
from itertools import repeat
from json.encoder import encode_basestring  # C implementation (ensure_ascii=False)

import orjson

from tap_canvas_data2.api.objects import ObjectParser, TableLayout, unescape_tsv

try:  # the C speed-up (setup.py builds it when a compiler is at hand)
    from tap_canvas_data2 import _transcode
except ImportError:  # pragma: no cover - pure-Python install
    _transcode = None  # type: ignore[assignment]
if os.environ.get("CANVAS_DATA2_PURE_PYTHON"):  # the Python paths only (diagnosis, tests)
    _transcode = None  # type: ignore[assignment]

NULL = "\\N"
_NULL_TO_JSON = {NULL: "null"}
_ENC_NULL_TO_JSON = {encode_basestring(NULL): "null"}
_SPECIAL = re.compile(r'[\x00-\x1f"\\]')
_CTRL_OR_QUOTE = re.compile(r'[\x00-\x1f"]')
_INT = r"(?:-?(?:0|[1-9][0-9]*)|null)"
# (at most two exponent digits here: 1e400 is no double, the parser writes it as null)
_NUM = r"(?:-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,2})?|null)"
_INT_COL = re.compile(rf"{_INT}(?:,{_INT})*")
_NUM_COL = re.compile(rf"{_NUM}(?:,{_NUM})*")
_INT_TYPES = frozenset((int, type(None)))
_NUM_TYPES = frozenset((int, float, type(None)))
_BOOLS = frozenset(("true", "false", NULL))
_BLOCK = 1 << 20
_KIND_CODES = {"int": 0, "float": 1, "bool": 2, "str": 3, "json": 4}
_UNESCAPES = (("\\t", "\t"), ("\\n", "\n"), ("\\r", "\r"), ("\\b", "\b"), ("\\f", "\f"),
              ("\\v", "\v"), ("\\0", "\0"))


class _Fallback(Exception):
    """This block must go through the generic parser."""


def _line_blocks(chunks: t.Iterable[bytes]) -> t.Iterator[bytes]:
    """Blocks of complete lines (without the last newline) of about _BLOCK bytes."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        if not chunk:
            continue
        parts.append(chunk)
        size += len(chunk)
        if size < _BLOCK:
            continue
        data = b"".join(parts)
        cut = data.rfind(b"\n")
        if cut < 0:
            parts, size = [data], len(data)
            continue
        yield data[:cut]
        rest = data[cut + 1:]
        parts, size = ([rest], len(rest)) if rest else ([], 0)
    pending = b"".join(parts)
    if pending.endswith(b"\n"):
        pending = pending[:-1]
    if pending:
        yield pending


class TsvRecordWriter:
    """Turns the decompressed bytes of TSV objects into RECORD lines for one stream."""

    def __init__(self, stream: str, dap_schema: dict, version: int | None,
                 deselected: t.Iterable[str] = (), deleted_at: str = "_sdc_deleted_at") -> None:
        self.layout = TableLayout.from_schema(dap_schema)
        self.dap_schema = dap_schema
        drop = set(deselected) - set(self.layout.key)
        self.columns = [c for c in self.layout.columns if c not in drop]
        self.drop = drop
        self.deleted_at = deleted_at
        head = '{"type":"RECORD","stream":' + encode_basestring(stream) + ',"record":{'
        tail = "}}" if version is None else '},"version":' + str(int(version)) + "}"
        self._head = head.replace("%", "%%")
        self._tail = tail.replace("%", "%%")
        self._head_raw, self._tail_raw = head, tail
        self._keys_raw = {c: encode_basestring(c) for c in self.layout.columns}
        self._keys = {c: encode_basestring(c).replace("%", "%%") for c in self.layout.columns}
        self._del_key = encode_basestring(deleted_at).replace("%", "%%")
        self.n_upserts = 0
        self.n_deletes = 0
        self.n_fallbacks = 0  # blocks that went through the generic parser

    # ------------------------------------------------------------------ objects

    def object_lines(self, chunks: t.Iterable[bytes]) -> t.Iterator[bytes]:
        """RECORD lines (bytes, newline-terminated) of one object, in blocks."""
        header: list[str] | None = None
        header_line = ""
        plan = cplan = None
        for block in _line_blocks(chunks):
            if header is None:
                first, _, block = block.partition(b"\n")
                header_line = first.decode("utf-8", "replace")  # (bad bytes: generic path)
                header = header_line.split("\t")
                plan = None if "\ufffd" in header_line else self._plan(header)
                cplan = self._c_plan(plan) if plan is not None and _transcode else None
                if not block:
                    continue
            if cplan is not None:
                lines = self._c_block(block, cplan)
                if lines is not None:
                    yield lines
                    continue
            elif plan is not None:
                try:
                    yield self._block(block.decode("utf-8"), header, plan)
                    continue
                except (_Fallback, ValueError):  # (not UTF-8, "\\N" inside a value...)
                    pass
            self.n_fallbacks += 1
            yield self._generic(header_line, block)

    def _plan(self, labels: list[str]) -> dict | None:
        """Column positions, or None when the header needs the generic parser."""
        index = {label: i for i, label in enumerate(labels)}
        if "meta.ts" not in index:
            return None
        out = []
        for name in self.columns:
            label = ("key." if name in self.layout.key else "value.") + name
            i = index.get(label)
            if i is None and any(lb.startswith(label + ".") for lb in labels):
                return None  # expanded mode: nested members as columns
            if i is None and name in self.layout.key:
                return None
            out.append((name, i, self.layout.kinds[name]))
        return {
            "ncols": len(labels),
            "ts": index["meta.ts"],
            "action": index.get("meta.action"),
            "out": out,
            "keys": [(n, index["key." + n], self.layout.kinds[n]) for n in self.layout.key],
        }

    # ------------------------------------------------------------------ blocks

    def _c_plan(self, plan: dict) -> dict:
        """The arguments of ``_transcode.transcode`` for this header."""
        def members(columns: list[tuple[str, int | None, str]]) -> tuple:
            return tuple(
                ((("," if i else "") + encode_basestring(name) + ":").encode(),
                 -1 if idx is None else idx, _KIND_CODES[kind])
                for i, (name, idx, kind) in enumerate(columns))

        deleted = [*plan["keys"], (self.deleted_at, plan["ts"], "str")]
        return {
            "ncols": plan["ncols"],
            "action": -1 if plan["action"] is None else plan["action"],
            "columns": members(plan["out"]),
            "deleted": members(deleted),
            "json": [idx for _n, idx, kind in plan["out"] if kind == "json" and idx is not None],
            "head": self._head_raw.encode(),
            "tail": self._tail_raw.encode(),
        }

    def _c_block(self, data: bytes, cplan: dict) -> bytes | None:
        """The C transcoder's lines for a block, or None (the block needs the parser)."""
        json_values = []
        for idx in cplan["json"]:  # object / array text: checked and compacted here
            texts = _transcode.fields(data, cplan["ncols"], idx)
            if texts is None:
                return None
            try:
                json_values.append(_json_texts(texts))
            except _Fallback:
                return None
        done = _transcode.transcode(data, cplan["ncols"], cplan["action"], cplan["columns"],
                                    cplan["deleted"], cplan["head"], cplan["tail"],
                                    tuple(json_values))
        if done is None:
            return None
        lines, upserts, deletes = done
        self.n_upserts += upserts
        self.n_deletes += deletes
        return lines


    def _block(self, text: str, labels: list[str], plan: dict) -> bytes:
        if "\n\n" in text or text.endswith("\n"):
            raise _Fallback
        ncols = plan["ncols"]
        n = text.count("\n") + 1
        fields = text.replace("\n", "\t").split("\t")
        if len(fields) != n * ncols:
            raise _Fallback
        deletes: list[int] = []
        if plan["action"] is not None:
            actions = fields[plan["action"]::ncols]
            nu = actions.count("U")
            if nu != n:
                i = -1
                for _ in range(actions.count("D")):
                    i = actions.index("D", i + 1)
                    deletes.append(i)
                if nu + len(deletes) != n:
                    raise _Fallback  # unknown action: let the parser report it
        # every line is constant text and column fragments in turn: one C-level "".join per
        # line over zip(repeat(constant), fragments, ...) (no format string parsed per line)
        keys = self._keys
        keys_raw = self._keys_raw
        pieces: list = []
        pending = self._head_raw
        sep = ""
        for name, idx, kind in plan["out"]:
            if idx is None:
                pending += sep + keys_raw[name] + ":null"
                sep = ","
                continue
            quoted, frags = _fragments(fields[idx::ncols], kind)
            pieces.append(repeat(pending + sep + keys_raw[name] + (':"' if quoted else ":"), n))
            pieces.append(frags)
            pending, sep = ('"' if quoted else ""), ","
        pieces.append(repeat(pending + self._tail_raw, n))
        lines = list(map("".join, zip(*pieces)))  # noqa: B905 (equal lengths)
        if deletes:
            dsegs, dcols = [], []
            for name, idx, kind in plan["keys"]:
                quoted, frags = _fragments(fields[idx::ncols], kind)
                dsegs.append(keys[name] + (':"%s"' if quoted else ":%s"))
                dcols.append(frags)
            quoted, ts = _fragments(fields[plan["ts"]::ncols], "str")
            dsegs.append(self._del_key + (':"%s"' if quoted else ":%s"))
            dcols.append(ts)
            dtemplate = self._head + ",".join(dsegs) + self._tail
            for i in deletes:
                lines[i] = dtemplate % tuple(c[i] for c in dcols)
        self.n_deletes += len(deletes)
        self.n_upserts += n - len(deletes)
        lines.append("")
        return "\n".join(lines).encode("utf-8")

    def _generic(self, header_line: str, data: bytes) -> bytes:
        """The API client's parser for this block, then the dict -> orjson path."""
        parser = ObjectParser(self.dap_schema, "tsv")
        head = self._head_raw.encode()[:-1]  # without the record's "{"
        tail = self._tail_raw.encode()[1:]  # without the record's "}"
        out = bytearray()
        allowed = set(self.columns)
        for batch in parser.batches([(header_line + "\n").encode() + data + b"\n"]):
            for action, ts, row in batch:
                if action == "D":
                    row[self.deleted_at] = ts
                    self.n_deletes += 1
                else:
                    for name in [k for k in row if k not in allowed]:
                        del row[name]
                    self.n_upserts += 1
                out += head
                out += orjson.dumps(row)
                out += tail
                out += b"\n"
        return bytes(out)


def _json_texts(fields: list[bytes]) -> list[str]:
    """Compact JSON text of an object / array column's TSV fields (NULL -> null)."""
    out = []
    try:
        for raw in fields:
            if raw == b"\\N":
                out.append("null")
            else:
                out.append(orjson.dumps(orjson.loads(unescape_tsv(raw.decode("utf-8")))).decode())
    except ValueError:  # not UTF-8, an unknown escape, not JSON (all ValueErrors)
        raise _Fallback from None
    return out


def _fragments(col: list[str], kind: str) -> tuple[bool, list[str]]:
    """JSON text fragments of one column: (use a quoted slot, fragments)."""
    if kind == "int" or kind == "float":
        joined = ",".join(col)
        regex = _INT_COL if kind == "int" else _NUM_COL
        if joined.count(",") == len(col) - 1:  # no value holds a comma
            if NULL not in joined:
                if _numbers(joined, kind, regex):
                    return False, col
            else:  # NULL -> null on the joined text (a number cannot hold a backslash)
                joined = joined.replace(NULL, "null")
                if _numbers(joined, kind, regex):
                    return False, joined.split(",")
        if NULL in col:
            col = list(map(_NULL_TO_JSON.get, col, col))
        return False, [_number(v, kind) for v in col]
    if kind == "bool":
        if not _BOOLS.issuperset(col):
            raise _Fallback
        if NULL in col:
            col = list(map(_NULL_TO_JSON.get, col, col))
        return False, col
    joined = ",".join(col)
    if kind == "json":
        if "\\" not in joined:
            vals = col
        elif joined.count("\\") == col.count(NULL):
            vals = list(map(_NULL_TO_JSON.get, col, col))
        else:
            vals = ["null" if v == NULL else unescape_tsv(v) for v in col]
        try:
            parsed = list(map(orjson.loads, vals))
        except orjson.JSONDecodeError:
            raise _Fallback from None
        if "\n" in "".join(vals) or "\r" in "".join(vals):  # raw line breaks between tokens
            vals = [orjson.dumps(v).decode() for v in parsed]
        return False, vals
    # strings (date-time, enum, uuid, text, ...)
    if "\\" not in joined:
        if _SPECIAL.search(joined) is None:
            return True, col
        return False, list(map(encode_basestring, col))
    nulls = col.count(NULL)
    if joined.count("\\") == nulls:  # only NULLs, no escapes
        if _CTRL_OR_QUOTE.search(joined) is None:  # quote every value, then "\N" -> null
            frags = ('"' + '"\x00"'.join(col) + '"').replace('"\\N"', "null").split("\x00")
            if len(frags) == len(col):
                return False, frags
        frags = list(map(encode_basestring, col))
        return False, list(map(_ENC_NULL_TO_JSON.get, frags, frags))
    if "\x01" not in joined and "\\\\N" not in col:  # (a value "\\N", the string "\N", is
        # not NULL: it needs care)
        # undo the escapes of the whole column at once; \x01 separates the fields (no escape
        # produces it and the column has none); "\\\\" (a backslash) splits the text first
        parts = "\x01".join(col).split("\\\\")
        left = 0
        for i, part in enumerate(parts):
            if "\\" in part:
                for esc, char in _UNESCAPES:
                    if esc in part:
                        part = part.replace(esc, char)
                parts[i] = part
                left += part.count("\\")
        if left == nulls:  # every escape known; what is left are the NULLs
            vals = "\\".join(parts).split("\x01")
            if len(vals) == len(col):
                frags = list(map(encode_basestring, vals))
                if nulls:
                    frags = list(map(_ENC_NULL_TO_JSON.get, frags, frags))
                return False, frags
    return False, ["null" if v == NULL else encode_basestring(unescape_tsv(v)) for v in col]


def _numbers(joined: str, kind: str, regex: re.Pattern) -> bool:
    """Is every comma-separated value a JSON number (an integer for ``int``) or null?

    orjson parses the column as one array in C (several times faster than the regex); it
    accepts only JSON number tokens, so an array of int/float/None without whitespace (which
    JSON allows between tokens) passes the regex too. Anything else is left to the regex:
    floats with an exponent (1e400 must become null, as the parser writes it) and integers
    beyond 64 bits (orjson reads them as floats).
    """
    if " " not in joined and "\r" not in joined and (kind == "int" or not (
            "e" in joined or "E" in joined)):
        try:
            types = set(map(type, orjson.loads("[" + joined + "]")))
        except orjson.JSONDecodeError:
            types = None
        if types is not None and types <= (_INT_TYPES if kind == "int" else _NUM_TYPES):
            return True
    return regex.fullmatch(joined) is not None


def _number(text: str, kind: str) -> str:
    if text == "null":
        return text
    try:
        value = int(text) if kind == "int" else float(text)
    except ValueError:
        raise _Fallback from None
    return orjson.dumps(value).decode()
