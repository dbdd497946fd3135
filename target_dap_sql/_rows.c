/*
 * Singer RECORD line -> load row (PostgreSQL COPY csv, MySQL LOAD DATA text), in one pass
 * of C (the target's hot path).
 *
 * Optional speed-up of the dialects' renderers (dialects/postgresql.py, mysql.py): for the
 * lines it accepts it returns exactly the row bytes and key that `orjson.loads` + the
 * renderer would give, without building the record dict; any other line (another envelope, a delete, a
 * missing or unknown property, nested JSON, big or odd numbers, control characters other
 * than \b \f \n \r \t, invalid UTF-8...) gives None and takes the Python path, which also
 * reports the errors.
 *
 * row(line, plans) -> (stream: bytes, key, row: bytes, version: int | None) | None
 *   plans  {stream name (bytes): (members, key, kinds, style)}
 *          members: tuple of bytes, the JSON text of each column's name with its quotes and
 *                   colon (`"id":`), in table column order
 *          key: tuple of column indexes of the primary key
 *          kinds: bytes, one code per column (see below)
 *          style: 0 = PostgreSQL COPY csv, 1 = MySQL LOAD DATA text
 * PostgreSQL kinds: 'p' plain, 'x' JSON / array column (only null and strings taken here).
 * MySQL kinds: 'i' integer, 'f' double/decimal, 'b' boolean, 't' timestamp, 's' text-like,
 *              'u' uuid, 'j' JSON / array (null and strings), 'x' anything else (null only).
 * Accepted envelope: {"type":"RECORD","stream":"<name>","record":{...}} with an optional
 * ,"version":<int> before the last brace, compact (no whitespace).
 * COPY format: FORMAT csv, NULL 'null', ESCAPE '\': null / true / false / numbers bare,
 * strings quoted with \ and " escaped by a backslash, other characters raw.
 * LOAD DATA format: tab-separated, \N = NULL, \ tab LF CR NUL escaped by a backslash.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "buf.h"
#include "jsonnum.h"
#include "utf8.h"

#define MAX_COLS 1600

static Buf scratch = {NULL, 0, 0}; /* cells in record order (the GIL guards it) */
static Buf rowbuf = {NULL, 0, 0};
static Buf keybuf = {NULL, 0, 0};

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex4(const char *s) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

enum { RAW = 0, PG = 1, MY = 2 };

/* PostgreSQL rows holding a control character other than \b \f \n \r \t (orjson writes
 * \u00XX for it) are written by the renderer's exact path (slow()): such characters raw,
 * floats as repr().  The first pass notes one (rare_control), the line is then done again
 * in that form (pg_slow). */
static int pg_slow, rare_control;

/* One decoded character below 0x80 (from an escape) in the output's text form; 0 = the
 * Python path must take the line (the renderer writes it some other way). */
static int put_ascii(Buf *out, int ch, int mode) {
    char *o = out->p + out->len;
    if (mode == PG) {
        if (ch == '"' || ch == '\\') *o++ = '\\';
        else if (ch == 0) return 0; /* NUL: PostgreSQL text refuses it (the renderer says so) */
        else if (ch < 0x20 && ch != '\b' && ch != '\f' && ch != '\n' && ch != '\r' &&
                 ch != '\t' && !pg_slow) {
            rare_control = 1;
            return 0;
        }
        *o++ = (char)ch;
    } else if (mode == MY) {
        switch (ch) {
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        case 0: *o++ = '\\'; *o++ = '0'; break;
        default: *o++ = (char)ch;
        }
    } else {
        *o++ = (char)ch;
    }
    out->len = (size_t)(o - out->p);
    return 1;
}

/* A JSON string at s[*i] (the opening quote) -> its text appended to out, in the form of
 * `mode` (PG: quoted and escaped for COPY csv; MY: escaped for LOAD DATA; RAW: as is).
 * 0 = not taken (see put_ascii; lone surrogates; raw control characters = invalid JSON). */
static int json_string(const char *s, Py_ssize_t n, Py_ssize_t *i, Buf *out, int mode) {
    Py_ssize_t j = *i + 1;
    if (buf_reserve(out, (size_t)(2 * (n - j) + 2)) < 0) return -1;
    if (mode == PG) out->p[out->len++] = '"';
    for (;;) {
        Py_ssize_t run = j;
        while (j < n) {
            unsigned char c = (unsigned char)s[j];
            if (c == '"' || c == '\\' || c < 0x20) break;
            j++;
        }
        buf_put(out, s + run, (size_t)(j - run));
        if (j >= n) return 0;
        unsigned char c = (unsigned char)s[j];
        if (c == '"') break;
        if (c < 0x20) return 0;
        if (j + 1 >= n) return 0; /* an escape */
        int ch;
        switch (s[j + 1]) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            if (j + 6 > n) return 0;
            int cp = hex4(s + j + 2);
            if (cp < 0) return 0;
            j += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (j + 6 > n || s[j] != '\\' || s[j + 1] != 'u') return 0;
                int lo = hex4(s + j + 2);
                if (lo < 0xDC00 || lo > 0xDFFF) return 0;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                j += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return 0;
            }
            if (cp < 0x80) {
                if (!put_ascii(out, cp, mode)) return 0;
                continue;
            }
            char *o = out->p + out->len;
            if (cp < 0x800) { *o++ = (char)(0xC0 | (cp >> 6)); *o++ = (char)(0x80 | (cp & 0x3F)); }
            else if (cp < 0x10000) {
                *o++ = (char)(0xE0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (char)(0xF0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            out->len = (size_t)(o - out->p);
            continue;
        }
        default: return 0;
        }
        if (!put_ascii(out, ch, mode)) return 0;
        j += 2;
    }
    if (mode == PG) out->p[out->len++] = '"';
    *i = j + 1;
    return 1;
}

/* A JSON number at s[*i]: 1 = integer (canonical text appended), 2 = float (appended as
 * orjson writes it, or as Python's repr() with repr_text), 0 = not taken. */
static int json_number(const char *s, Py_ssize_t n, Py_ssize_t *i, Buf *out, int repr_text) {
    Py_ssize_t start = *i;
    JsonNumber m;
    if (!json_number_scan(s + start, n - start, &m)) return 0;
    Py_ssize_t j = start + m.end;
    *i = j;
    if (!m.is_float) {
        int neg = s[start] == '-';
        Py_ssize_t digits = m.int_end - neg;
        if (digits > 19) return 0; /* orjson's own rules (u64, then float) */
        if (digits == 19 && memcmp(s + start + neg, neg ? "9223372036854775808"
                                                        : "9223372036854775807", 19) > 0)
            return 0; /* beyond int64 */
        if (neg && m.int_end == 2 && s[start + 1] == '0') /* -0 is the int 0 */
            return buf_add(out, "0", 1) < 0 ? -1 : 1;
        return buf_add(out, s + start, (size_t)m.end) < 0 ? -1 : 1;
    }
    char tmp[64];
    if (j - start >= (Py_ssize_t)sizeof tmp) return 0;
    memcpy(tmp, s + start, (size_t)(j - start));
    tmp[j - start] = 0;
    char *end;
    double v = PyOS_string_to_double(tmp, &end, NULL);
    if (v == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return 0; }
    if (*end || Py_IS_INFINITY(v) || Py_IS_NAN(v)) return 0;
    /* orjson's text for this double: Python's repr digits (both shortest round-trip), laid
     * out as orjson does: fixed notation for decimal exponents -5..15 (repr: -4..15), and
     * no zero padding in the exponent (repr: e-07) */
    char *text = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!text) return -1;
    char fixed[48];
    const char *t = text;
    char *e = repr_text ? NULL : strchr(text, 'e');
    if (e && e[1] == '-' && e[2] == '0' && e[3] == '5' && e[4] == 0) {
        /* d[.ddd]e-05 -> 0.0000dddd */
        char *o = fixed;
        const char *m = text;
        if (*m == '-') *o++ = *m++;
        memcpy(o, "0.0000", 6);
        o += 6;
        for (; m < e; m++)
            if (*m != '.') *o++ = *m;
        *o = 0;
        t = fixed;
    } else if (e && e[2] == '0') { /* e-07 -> e-7 */
        memmove(e + 2, e + 3, strlen(e + 3) + 1);
    }
    int r = buf_add(out, t, strlen(t));
    PyMem_Free(text);
    return r < 0 ? -1 : 2;
}

static int literal(const char *s, Py_ssize_t n, Py_ssize_t i, const char *lit) {
    size_t ll = strlen(lit);
    return n - i >= (Py_ssize_t)ll && !memcmp(s + i, lit, ll);
}

/* A cell's fixed text: 1, or -1 with MemoryError set. */
static int put_text(Buf *out, const char *t, size_t len) {
    return buf_add(out, t, len) < 0 ? -1 : 1;
}

/* One value as PostgreSQL COPY csv text (the renderer: orjson.dumps of the values). */
static int pg_cell(const char *s, Py_ssize_t n, Py_ssize_t *i, char kind, Buf *out) {
    char v = s[*i];
    if (v == '"') return json_string(s, n, i, out, PG);
    if (literal(s, n, *i, "null")) { *i += 4; return put_text(out, "null", 4); }
    if (kind != 'p') return 0; /* nested JSON / array: the renderer's own text */
    if (v == '-' || (v >= '0' && v <= '9')) {
        int r = json_number(s, n, i, out, pg_slow);
        return r < 0 ? -1 : r > 0;
    }
    if (literal(s, n, *i, "true")) { *i += 4; return put_text(out, "true", 4); }
    if (literal(s, n, *i, "false")) { *i += 5; return put_text(out, "false", 5); }
    return 0;
}

static int is_hex(char c) { return hexval(c) >= 0; }

/* One value as MySQL LOAD DATA text (the renderer's conversions per column kind). */
static int my_cell(const char *s, Py_ssize_t n, Py_ssize_t *i, char kind, Buf *out) {
    char v = s[*i];
    if (literal(s, n, *i, "null")) { *i += 4; return put_text(out, "\\N", 2); }
    switch (kind) {
    case 'i':
    case 'f': {
        if (!(v == '-' || (v >= '0' && v <= '9'))) return 0;
        int r = json_number(s, n, i, out, 1);
        if (r < 0) return -1;
        return r == 1 || (r == 2 && kind == 'f'); /* a float in an integer column: Python */
    }
    case 'b':
        if (literal(s, n, *i, "true")) { *i += 4; return put_text(out, "1", 1); }
        if (literal(s, n, *i, "false")) { *i += 5; return put_text(out, "0", 1); }
        return 0;
    case 's':
    case 'j': /* (a JSON column's string is its text; nested JSON: the renderer's text) */
        return v == '"' ? json_string(s, n, i, out, MY) : 0;
    case 't': { /* 2024-01-02T03:04:05Z -> without the zone designator */
        if (v != '"') return 0;
        size_t at = out->len;
        int r = json_string(s, n, i, out, MY);
        if (r <= 0) return r;
        if (out->len == at || out->p[out->len - 1] != 'Z') return 0;
        out->len--;
        return 1;
    }
    case 'u': { /* 36 characters, 32 hex digits once the dashes are gone */
        if (v != '"') return 0;
        size_t at = out->len;
        int r = json_string(s, n, i, out, RAW);
        if (r <= 0) return r;
        if (out->len - at != 36) return 0;
        size_t w = at;
        for (size_t k = at; k < at + 36; k++) {
            char ch = out->p[k];
            if (ch == '-') continue;
            if (!is_hex(ch)) return 0;
            out->p[w++] = ch;
        }
        if (w - at != 32) return 0;
        out->len = w;
        return 1;
    }
    default:
        return 0;
    }
}

static PyObject *row(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "row(line: bytes, plans: dict)");
        return NULL;
    }
    const char *s = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    PyObject *plans = args[1];
    PyObject *result = NULL, *stream = NULL, *key = NULL, *rowbytes = NULL, *version = NULL;
    static const char HEAD[] = "{\"type\":\"RECORD\",\"stream\":\"";
    const Py_ssize_t HL = sizeof HEAD - 1;
    static const char REC[] = "\",\"record\":{";
    const Py_ssize_t RL = sizeof REC - 1;
    Py_ssize_t cell_start[MAX_COLS], cell_len[MAX_COLS], tok_start[MAX_COLS];

    Py_ssize_t ncols = 0, first_member = 0;
    const char *kinds = NULL;
    PyObject *members = NULL, *keyidx = NULL, *kindbytes = NULL;
    long style = 0;
    pg_slow = rare_control = 0;
    while (n && (s[n - 1] == '\r' || s[n - 1] == ' ')) n--; /* (a CRLF line end) */
    if (n < HL + RL + 2 || memcmp(s, HEAD, (size_t)HL)) goto none;
    Py_ssize_t i = HL, name_start = HL;
    while (i < n && s[i] != '"' && s[i] != '\\') i++;
    if (i >= n || s[i] != '"' || n - i < RL || memcmp(s + i, REC, (size_t)RL)) goto none;
    stream = PyBytes_FromStringAndSize(s + name_start, i - name_start);
    if (!stream) goto done;
    PyObject *plan = PyDict_GetItemWithError(plans, stream);
    if (!plan) { if (PyErr_Occurred()) goto done; goto none; }
    /* (members, key, kinds, style): read directly, this runs once per record */
    if (!PyTuple_Check(plan) || PyTuple_GET_SIZE(plan) != 4) goto bad_plan;
    members = PyTuple_GET_ITEM(plan, 0);
    keyidx = PyTuple_GET_ITEM(plan, 1);
    kindbytes = PyTuple_GET_ITEM(plan, 2);
    style = PyLong_AsLong(PyTuple_GET_ITEM(plan, 3));
    if (!PyTuple_Check(members) || !PyTuple_Check(keyidx) || !PyBytes_Check(kindbytes) ||
        (style != 0 && style != 1))
        goto bad_plan;
    ncols = PyTuple_GET_SIZE(members);
    if (ncols < 1 || ncols > MAX_COLS || PyBytes_GET_SIZE(kindbytes) != ncols) goto none;
    if (!utf8_valid((const unsigned char *)s, n)) goto none;
    kinds = PyBytes_AS_STRING(kindbytes);
    i += RL;
    first_member = i;
    Py_ssize_t hint, seen;
again:
    for (Py_ssize_t c = 0; c < ncols; c++) cell_start[c] = -1;
    scratch.len = 0;
    i = first_member;
    hint = seen = 0;
    if (i < n && s[i] == '}') goto members_done;
    for (;;) {
        /* member name: try the column after the previous one first */
        if (i >= n || s[i] != '"') goto none;
        Py_ssize_t c = -1;
        for (Py_ssize_t t = 0; t < ncols; t++) {
            Py_ssize_t k = hint + t < ncols ? hint + t : hint + t - ncols;
            PyObject *m = PyTuple_GET_ITEM(members, k);
            Py_ssize_t ml = PyBytes_GET_SIZE(m);
            if (n - i >= ml && !memcmp(s + i, PyBytes_AS_STRING(m), (size_t)ml)) { c = k; i += ml; break; }
        }
        if (c < 0 || cell_start[c] >= 0) goto none; /* unknown (e.g. a delete) or repeated */
        hint = c + 1 < ncols ? c + 1 : 0;
        if (i >= n) goto none;
        cell_start[c] = (Py_ssize_t)scratch.len;
        tok_start[c] = i;
        int r = style == 1 ? my_cell(s, n, &i, kinds[c], &scratch)
                            : pg_cell(s, n, &i, kinds[c], &scratch);
        if (r < 0) goto done;
        if (r == 0) goto none;
        cell_len[c] = (Py_ssize_t)scratch.len - cell_start[c];
        seen++;
        if (i < n && s[i] == ',') { i++; continue; }
        if (i < n && s[i] == '}') break;
        goto none;
    }
members_done:
    if (seen != ncols) goto none; /* a missing property: the Python path fills in null */
    i++; /* the record's closing brace */
    /* the version: none, or ,"version":<int> before the envelope's closing brace */
    Py_ssize_t va = 0, vb = 0;
    if (i != n - 1 || s[i] != '}') {
        static const char VER[] = ",\"version\":";
        const Py_ssize_t VL = sizeof VER - 1;
        if (n - i < VL + 2 || memcmp(s + i, VER, (size_t)VL) || s[n - 1] != '}') goto none;
        va = i + VL;
        vb = n - 1;
        if (vb - va < 1 || vb - va > 18 || (s[va] == '0' && vb - va > 1)) goto none;
        for (Py_ssize_t k = va; k < vb; k++)
            if (s[k] < '0' || s[k] > '9') goto none;
    }
    /* the key: Python values of the key cells (ints and strings only) */
    Py_ssize_t nkey = PyTuple_GET_SIZE(keyidx);
    if (nkey < 1) goto none;
    key = PyTuple_New(nkey);
    if (!key) goto done;
    for (Py_ssize_t k = 0; k < nkey; k++) {
        Py_ssize_t c = PyLong_AsSsize_t(PyTuple_GET_ITEM(keyidx, k));
        if (c < 0 || c >= ncols) goto bad_plan;
        PyObject *kv;
        Py_ssize_t t = tok_start[c];
        int r;
        keybuf.len = 0;
        if (s[t] == '"') { /* the decoded string */
            r = json_string(s, n, &t, &keybuf, RAW);
            if (r < 0) goto done;
            if (r == 0) goto none;
            kv = PyUnicode_DecodeUTF8(keybuf.p, (Py_ssize_t)keybuf.len, "strict");
        } else if (s[t] == '-' || (s[t] >= '0' && s[t] <= '9')) {
            r = json_number(s, n, &t, &keybuf, 1);
            if (r < 0) goto done;
            if (r != 1) goto none; /* a float */
            if (buf_add(&keybuf, "", 1) < 0) goto done; /* NUL-terminated */
            kv = PyLong_FromString(keybuf.p, NULL, 10);
        } else {
            goto none; /* null / boolean keys */
        }
        if (!kv) goto done;
        PyTuple_SET_ITEM(key, k, kv);
    }
    if (nkey == 1) { /* a one-column key is the value itself, as itemgetter gives it */
        PyObject *only = Py_NewRef(PyTuple_GET_ITEM(key, 0));
        Py_SETREF(key, only);
    }
    /* the row: cells in column order */
    rowbuf.len = 0;
    if (buf_reserve(&rowbuf, scratch.len + (size_t)ncols) < 0) goto done;
    char sep = style == 1 ? '\t' : ',';
    for (Py_ssize_t c = 0; c < ncols; c++) {
        if (c) rowbuf.p[rowbuf.len++] = sep;
        buf_put(&rowbuf, scratch.p + cell_start[c], (size_t)cell_len[c]);
    }
    rowbytes = PyBytes_FromStringAndSize(rowbuf.p, (Py_ssize_t)rowbuf.len);
    if (!rowbytes) goto done;
    if (va) {
        char tmp[24];
        memcpy(tmp, s + va, (size_t)(vb - va));
        tmp[vb - va] = 0;
        version = PyLong_FromString(tmp, NULL, 10);
        if (!version) goto done;
    } else {
        version = Py_NewRef(Py_None);
    }
    result = PyTuple_Pack(4, stream, key, rowbytes, version);
    goto done;
bad_plan:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "plan: (members: tuple, key: tuple of column "
                                          "indexes, kinds: bytes, style: 0 or 1)");
    goto done;
none:
    Py_CLEAR(key);
    if (rare_control && !pg_slow && style == 0) { /* the renderer's exact path, see pg_slow */
        pg_slow = 1;
        goto again;
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(stream);
    Py_XDECREF(key);
    Py_XDECREF(rowbytes);
    Py_XDECREF(version);
    return result;
}

static PyMethodDef methods[] = {
    {"row", (PyCFunction)(void (*)(void))row, METH_FASTCALL, "RECORD line -> (stream, key, COPY row, version) or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rows",
    "Singer RECORD lines -> PostgreSQL / MySQL load rows in C (optional speed-up).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__rows(void) { return PyModule_Create(&module); }
