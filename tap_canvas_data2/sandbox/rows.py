"""Deterministic, seeded row values with many hard values, fast enough for millions of rows.

The value of column ``c`` of row ``(id, revision)`` is a pure function of the sandbox seed:

* every column has a *pool* of a few hundred values, built once from
  ``random.Random("<seed>/<ns>/<table>/<column>")`` (string seeds are stable across runs and
  unaffected by ``PYTHONHASHSEED``);
* every row version has a 64-bit hash ``h = mix(seed, id, revision)``; the column's value is
  ``pool[(h + offset_c) % len(pool)]`` with a distinct prime pool length per column, so
  columns vary independently and row 900 000 costs the same as row 1.

Encoders never format values per row: pools are pre-encoded once per output format, and a
row is just pool look-ups plus a join. Hard values (tabs, newlines, backslashes, quotes, the
strings ``\\N`` and ``NULL``, emoji, huge ints...) are planted in every pool of a fitting type,
so they appear every few rows. Nothing is ever generated that its column cannot hold.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

from .catalog import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, Column, TableDef

M64 = (1 << 64) - 1
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Strings every string pool contains (truncated to the column's maxLength when needed).
HARD_STRINGS: list[str] = [
    "tab\there",
    "line one\nline two",
    "windows\r\nline end",
    "carriage\ronly",
    "back\\slash",
    "\\",
    'say "hello"',
    "O'Brien",
    "\\N",
    "NULL",
    "null",
    "",
    "emoji 😀🎓 four-byte",
    "naïve café Zürich Ærøskøbing",
    "日本語のテキスト",
    "  leading and trailing spaces  ",
    "comma, separated, values",
    "control \b\f\v chars",
    "\\t is not a tab",
    "mixed \"quotes\" and 'apostrophes', commas\tand\nlines\\",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math alphanumerics",
    "Robert'); DROP TABLE students;--",
]
LONG_TEXT = ("Lorem ipsum dolor sit amet, «consectetur» adipiscing elit 😀\n" * 400)[:24000]

FIRST = ["Ana", "José", "Zoë", "Łukasz", "Mei", "Ольга", "Søren", "Aïcha", "John", "Priya",
         "Kwame", "Émile", "Björn", "Nguyễn", "李", "Fatima", "O'Neil", "Renée", "Tomás", "Yuki"]
LAST = ["García", "Müller", "Smith", "O'Connor", "Nakamura", "Novák", "Ибрагимов", "Dubois",
        "Kowalski", "Ngata", "Van der Berg", "Jones-Smith", "王", "Øster", "Hernández"]
WORDS = ["intro", "biology", "chemistry", "history", "algebra", "essay", "quiz", "lab",
         "section", "week", "final", "midterm", "reading", "project", "français", "Übung"]
LOCALES = ["en", "en-GB", "en-AU", "fr-CA", "es", "de", "zh-Hans", "pt-BR", "ar", "ja"]
ZONES = ["America/Denver", "America/New_York", "Europe/London", "Europe/Budapest", "Asia/Tokyo",
         "Australia/Adelaide", "Etc/UTC", "Pacific/Auckland", "America/Sao_Paulo"]
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
GRADES = ["A", "A-", "B+", "B", "C", "F", "87.5", "100", "complete", "incomplete", "pass"]
PRIMES = [401, 409, 419, 421, 431, 433, 439, 443, 449, 457, 461, 463, 467, 479, 487, 491, 499,
          503, 509, 521, 523, 541, 547, 557, 563, 569, 571, 577, 587, 593, 599, 601, 607, 613,
          617, 619, 631, 641, 643, 647, 653, 659, 661, 673, 677, 683, 691, 701, 709, 719, 727,
          733, 739, 743, 751, 757, 761, 769, 773, 787, 797, 809, 811, 821, 823, 827, 829, 839,
          853, 857, 859, 863, 877, 881, 883, 887, 907, 911, 919, 929, 937, 941, 947, 953, 967]

# 2018-01-01 .. 2025-01-01 in µs: the range of generated date-times.
TS_LO = 1514764800 * 1_000_000
TS_HI = 1735689600 * 1_000_000


def fmt_ts(us: int) -> str:
    """µs since the epoch -> ``YYYY-MM-DDThh:mm:ss[.ffffff]Z`` (fraction only when non-zero)."""
    secs, micro = divmod(us, 1_000_000)
    d = datetime.fromtimestamp(secs, timezone.utc)
    base = f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
    return f"{base}.{micro:06d}Z" if micro else base + "Z"


def parse_ts(text: str) -> int:
    """An ISO 8601 date-time *with a zone* -> µs since the epoch (ValueError when naive)."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    d = datetime.fromisoformat(s)
    if d.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    delta = d - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def mix64(x: int) -> int:
    """SplitMix64 finaliser: a cheap, well-spread 64-bit hash."""
    x &= M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


# --- encoders of single values (used once per pool entry, never per row) -------------------

_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                              "\b": "\\b", "\f": "\\f", "\v": "\\v", "\0": "\\0"})


def to_json(v: Any) -> str:
    """Compact JSON, UTF-8 kept as is (DAP writes raw UTF-8)."""
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def text_of(v: Any) -> str:
    """The textual form of a non-NULL value in TSV/CSV (before escaping/quoting)."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (dict, list)):
        return to_json(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def tsv_value(v: Any) -> str:
    """PostgreSQL COPY text: ``\\N`` for NULL, backslash escapes for control characters."""
    if v is None:
        return "\\N"
    return text_of(v).translate(_TSV_ESCAPES)


def csv_value(v: Any, null: str = "NULL") -> str:
    """RFC 4180 field: NULL unquoted, strings quoted when special or when they look like NULL."""
    if v is None:
        return null
    t = text_of(v)
    if isinstance(v, str) or isinstance(v, (dict, list)):
        if (t == "" or t == "NULL" or any(ch in t for ch in ',"\r\n\t')
                or t != t.strip(" ")):
            return '"' + t.replace('"', '""') + '"'
    return t


class RowGenerator:
    """Values of one table's rows. Thread-safe for reading once pools exist (built under a lock
    by the caller or idempotently: a race only builds the same pool twice)."""

    def __init__(self, seed: int, table: TableDef, ref_ranges: dict[str, tuple[int, int]]):
        self.seed = seed
        self.table = table
        self.ref_ranges = ref_ranges  # referenced table -> (id_base, initial row count)
        self._salt = mix64(hash_name(f"{seed}/{table.namespace}/{table.name}"))
        self._pools: dict[str, list[Any]] = {}
        self._enc: dict[tuple[str, str], tuple[list[str], int, int]] = {}
        self._lock = threading.Lock()
        # Pool lengths: distinct primes per column (independent columns), fixed by column
        # order of the definition so they never depend on which pool happens to be built first.
        self._sizes: dict[str, int] = {}
        self._static_sizes: set[int] = set()
        for c in table.columns:
            self._sizes[c.name] = self._pick_size(c.name)
            self._static_sizes.add(self._sizes[c.name])

    def _pick_size(self, name: str) -> int:
        i = hash_name(f"{self.seed}/{self.table.namespace}/{self.table.name}/{name}") % len(PRIMES)
        for j in range(len(PRIMES)):
            size = PRIMES[(i + j) % len(PRIMES)]
            if size not in self._static_sizes:
                return size
        return PRIMES[i]

    def __getstate__(self) -> dict[str, Any]:
        # picklable for the encoding worker processes (locks are not)
        st = self.__dict__.copy()
        del st["_lock"]
        return st

    def __setstate__(self, st: dict[str, Any]) -> None:
        self.__dict__.update(st)
        self._lock = threading.Lock()

    # --- hashing ----------------------------------------------------------------------------
    def row_hash(self, offset: int, rev: int) -> int:
        return mix64(self._salt ^ (offset * 0x9E3779B97F4A7C15) ^ (rev * 0xC2B2AE3D27D4EB4F))

    def hashes(self, offsets: list[int], revs: list[int]) -> list[int]:
        salt = self._salt
        out = []
        for o, r in zip(offsets, revs, strict=False):
            x = (salt ^ (o * 0x9E3779B97F4A7C15) ^ (r * 0xC2B2AE3D27D4EB4F)) & M64
            x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
            x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
            out.append(x ^ (x >> 31))
        return out

    # --- pools ------------------------------------------------------------------------------
    def pool(self, col: Column) -> list[Any]:
        """The column's value pool (JSON-form Python values; None = NULL)."""
        p = self._pools.get(col.name)
        if p is not None:
            return p
        with self._lock:
            p = self._pools.get(col.name)
            if p is not None:
                return p
            rng = random.Random(f"{self.seed}/{self.table.namespace}/{self.table.name}/{col.name}")
            size = self._sizes.get(col.name) or self._sizes.setdefault(
                col.name, self._pick_size(col.name))
            null_rate = rng.choice([0.05, 0.2, 0.4, 0.7]) if col.nullable else 0.0
            p = []
            hard_i = 0
            for i in range(size):
                if null_rate and rng.random() < null_rate:
                    p.append(None)
                    continue
                if i % 9 == 4:  # plant hard values regularly, in order, so all of them occur
                    v = self._hard(col, rng, hard_i)
                    hard_i += 1
                    if v is not None:
                        p.append(v)
                        continue
                p.append(self._value(col, rng))
            self._pools[col.name] = p
        return p

    def encoded(self, col: Column, fmt: str) -> tuple[list[str], int, int]:
        """``(encoded pool, its length, column offset)`` for fmt in tsv, csv, json, tsv_x, csv_x.

        ``json`` entries are ``"name":value`` fragments ("" for NULL: omitted). ``*_x`` are
        expanded mode: a nested object becomes its members joined by the field separator.
        """
        k = (col.name, fmt)
        e = self._enc.get(k)
        if e is None:
            pool = self.pool(col)
            if fmt == "tsv" or (fmt == "tsv_x" and col.kind != "object"):
                enc = [tsv_value(v) for v in pool]
            elif fmt == "csv" or (fmt == "csv_x" and col.kind != "object"):
                # DAP: an all-NULL nested object is a blank field in condensed CSV
                enc = [csv_value(v, "" if col.kind == "object" else "NULL") for v in pool]
            elif fmt == "json":
                prefix = to_json(col.name) + ":"
                enc = ["" if v is None else prefix + to_json(v) for v in pool]
            else:  # expanded object
                assert col.properties is not None
                one = tsv_value if fmt == "tsv_x" else csv_value
                sep = "\t" if fmt == "tsv_x" else ","
                enc = [sep.join(one((v or {}).get(p.name)) for p in col.properties)
                       for v in pool]
            off = mix64(self._salt ^ hash_name(col.name)) % len(pool)
            e = (enc, len(pool), off)
            self._enc[k] = e
        return e

    def value(self, col: Column, h: int, ts: int) -> Any:
        """The column's value in a row version with hash ``h`` last changed at ``ts``."""
        if col.added_at is not None and ts < col.added_at:
            return None
        pool = self.pool(col)
        _, n, off = self.encoded(col, "json")
        return pool[(h + off) % n]

    def row_dict(self, offset: int, rev: int, ts: int, columns: list[Column]) -> dict[str, Any]:
        """One row as ``expected_rows`` yields it: key then value columns, JSON-form values."""
        h = self.row_hash(offset, rev)
        d: dict[str, Any] = {self.table.key.name: self.table.id_base + offset}
        for c in columns:
            d[c.name] = self.value(c, h, ts)
        return d

    # --- value generation -------------------------------------------------------------------
    def _hard(self, col: Column, rng: random.Random, i: int) -> Any:
        """The i-th hard value for this column's type (None: use a normal value)."""
        k = col.kind
        if k in ("varchar", "text"):
            s = HARD_STRINGS[i % len(HARD_STRINGS)]
            if k == "text" and i % len(HARD_STRINGS) == 3 and _long_text_column(col.name):
                s = LONG_TEXT
            return _fit(s, col.max_length)
        if k == "bigint" and not col.references:
            return [INT64_MAX, INT64_MIN, 2**32, 2**32 + 1, 10000000000001, 0, -1][i % 7]
        if k == "integer":
            return [INT32_MAX, INT32_MIN, 0, -1, 65536][i % 5]
        if k == "double":
            return [0.1 + 0.2, 1e-07, -12.5, 1e300, 123456789.123456789, 0.0, 2.5e-308][i % 7]
        if k == "decimal":
            assert col.precision is not None and col.scale is not None
            top = 10**col.precision - 1
            return [top / 10**col.scale, -top / 10**col.scale, 0.0][i % 3]
        if k == "timestamp":
            return fmt_ts([TS_LO, TS_HI - 1, 951782400_123456, 1709164800_000001][i % 4])
        if k == "object":
            assert col.properties is not None
            # every member set, strings hard: exercises escaping inside JSON inside TSV/CSV
            v = {}
            for j, p in enumerate(col.properties):
                v[p.name] = self._hard(p, rng, i + j) if p.kind in ("varchar", "text") \
                    else self._value(p, rng)
            return v
        return None

    def _value(self, col: Column, rng: random.Random) -> Any:  # noqa: C901 - a type switch
        k = col.kind
        name = col.name.lower()
        if k == "bigint":
            if col.references and col.references in self.ref_ranges:
                base, n = self.ref_ranges[col.references]
                return base + rng.randint(1, max(1, n))
            if name.endswith("_id") or name == "id":
                return rng.choice([rng.randint(1, 50000), 10000000000000 + rng.randint(1, 99999)])
            if "quota" in name:
                return rng.choice([rng.randint(0, 10**9), rng.randint(2**32, 2**42)])
            return rng.choice([rng.randint(0, 100000), rng.randint(2**33, 2**50)])
        if k == "integer":
            return rng.choice([rng.randint(0, 10), rng.randint(0, 1000), rng.randint(-5, 100000)])
        if k == "double":
            return rng.choice([round(rng.uniform(0, 100), 2), float(rng.randint(0, 10)),
                               rng.uniform(-1e6, 1e6)])
        if k == "decimal":
            assert col.precision is not None and col.scale is not None
            top = 10**col.precision - 1
            return rng.randint(-top // 100, top // 10) / 10**col.scale
        if k == "boolean":
            return rng.random() < 0.5
        if k == "timestamp":
            us = rng.randrange(TS_LO, TS_HI)
            if rng.random() < 0.25:
                us -= us % 1_000_000  # whole seconds: no fraction in the text form
            return fmt_ts(us)
        if k == "date":
            return fmt_ts(rng.randrange(TS_LO, TS_HI))[:10]
        if k == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128)))
        if k == "enum":
            vals = col.values or ["__dap_unspecified__"]
            if rng.random() < 0.03 or len(vals) == 1:
                return vals[0]
            return rng.choice(vals[1:])
        if k == "array":
            assert col.items is not None
            if col.items.kind == "enum":
                vals = (col.items.values or [])[1:]
                return rng.sample(vals, rng.randint(0, min(3, len(vals))))
            return [self._value(col.items, rng) for _ in range(rng.randint(0, 3))]
        if k == "object":
            assert col.properties is not None
            v = {}
            for p in col.properties:
                if rng.random() < 0.35:
                    continue  # a NULL member: omitted in JSON
                v[p.name] = (self._hard(p, rng, rng.randrange(50)) if rng.random() < 0.1
                             else None) or self._value(p, rng)
            if not v:
                if col.nullable:
                    return None  # all members NULL is the same as NULL in every format
                p = col.properties[0]
                v[p.name] = self._value(p, rng)
            return v
        return _fit(self._string(name, rng), col.max_length)

    def _string(self, name: str, rng: random.Random) -> str:
        if name in ("name", "short_name", "sortable_name", "title", "friendly_name") \
                or name.endswith("_name"):
            if "sortable" in name:
                return f"{rng.choice(LAST)}, {rng.choice(FIRST)}"
            if name == "title" or self.table.name in ("courses", "course_sections",
                                                       "enrollment_terms", "accounts"):
                return f"{rng.choice(WORDS).title()} {rng.randint(100, 499)} – {rng.choice(WORDS)}"
            return f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if name in ("unique_id",) or "email" in name:
            return f"{rng.choice(FIRST).lower()}.{rng.randint(1, 99999)}@example.edu"
        if "url" in name:
            return (f"https://canvas.example.edu/files/{rng.randint(1, 10**6)}/download"
                    f"?verifier=x{rng.randint(1, 999)}&wrap=1")
        if "locale" in name:
            return rng.choice(LOCALES)
        if "time_zone" in name:
            return rng.choice(ZONES)
        if name == "uuid" or name.endswith("_uuid"):
            return "".join(rng.choice(ALNUM) for _ in range(40))
        if name.endswith("_ip"):
            return rng.choice([f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
                               f"{rng.randint(1, 254)}",
                               f"2001:db8::{rng.randint(1, 65535):x}"])
        if "grade" in name and "passback" not in name:
            return rng.choice(GRADES)
        if name in ("late_policy_status", "cached_tardiness"):
            return rng.choice(["late", "missing", "extended", "none"])
        if name == "default_due_time":
            return f"{rng.randint(0, 23):02d}:{rng.choice([0, 30, 59]):02d}:00"
        if name == "course_color":
            return f"#{rng.randrange(16**6):06x}"
        if name == "anonymous_id":
            return "".join(rng.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
                           for _ in range(5))
        if name.endswith("_id") or "code" in name or name in ("integration_id", "sis_source_id"):
            return f"{rng.choice(['SIS', 'LTI', 'MIG', 'ext'])}-{rng.randint(0, 10**7):07d}"
        if _long_text_column(name) or name in ("pronouns", "tab_configuration", "turnitin_data",
                                                "attachment_ids", "turnitin_comments"):
            n = rng.randint(0, 12)
            words = " ".join(rng.choice(WORDS) for _ in range(n))
            return rng.choice([f"<p>{words}</p>", f"<p>{words}</p>\n<p>{rng.choice(FIRST)}</p>",
                               words, f"{rng.randint(1, 9999)},{rng.randint(1, 9999)}"])
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))


def _long_text_column(name: str) -> bool:
    return name in ("body", "description", "message", "syllabus_body", "public_description")


def _fit(s: str, max_length: int | None) -> str:
    """Truncate to maxLength *characters* (DAP's and PostgreSQL's unit), never splitting a
    code point (Python strings are code points, so slicing is safe)."""
    return s if max_length is None or len(s) <= max_length else s[:max_length]


def hash_name(name: str) -> int:
    """A stable (PYTHONHASHSEED-independent) 64-bit hash of a string."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")
