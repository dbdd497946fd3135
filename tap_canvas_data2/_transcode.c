/*
 * TSV block -> Singer RECORD lines, in one pass of C (the tap's hot path).
 *
 * Optional speed-up of tap_canvas_data2/_tsvjson.py: it writes exactly the lines that the
 * pure-Python transcoder writes, and it gives up (returns None) on anything unusual, so that
 * the caller hands the block to the generic parser (same records, same errors).
 *
 * transcode(data, ncols, action, columns, deleted, head, tail, json_values)
 *   data      bytes: complete TSV lines (no header, no final newline)
 *   ncols     fields per line
 *   action    index of meta.action, or -1 (snapshot objects)
 *   columns   tuple of (prefix: bytes, field index or -1, kind) for upsert lines
 *   deleted   the same for delete lines (key columns, then the deletion timestamp)
 *   head/tail bytes around the members of every line
 *   json_values  tuple of lists of str (one list per JSON column, in order of `columns`,
 *             one entry per line): the JSON text, already checked and compacted by Python
 * -> (bytes, upserts, deletes) or None
 *
 * kinds: 0 int, 1 float, 2 bool, 3 string, 4 JSON (object/array)
 * A prefix is the member's leading text, e.g. `,"name":`; string values get their quotes
 * here.  `\N` (NULL) becomes null in every kind.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jsonnum.h"
#include "utf8.h"

enum { K_INT = 0, K_FLOAT = 1, K_BOOL = 2, K_STR = 3, K_JSON = 4 };

typedef struct {
    const char *prefix;
    Py_ssize_t prefix_len;
    Py_ssize_t field; /* -1: not in this object -> null */
    int kind;
    Py_ssize_t json; /* index into json_values for K_JSON */
} Column;

/* -?(0|[1-9][0-9]*) */
static int json_int(const char *s, Py_ssize_t n) {
    JsonNumber m;
    return json_number_scan(s, n, &m) && !m.is_float && m.end == n;
}

/* a JSON number: 1 = as it is; 2 = beyond a double (1e400: the parser's float() makes it
 * inf, which orjson writes as null); 0 = not a JSON number */
static int json_number(const char *s, Py_ssize_t n) {
    JsonNumber m;
    if (!json_number_scan(s, n, &m) || m.end != n) return 0;
    if (m.exp_digits > 2) { /* large exponent: does it overflow? */
        char tmp[64];
        if (n >= (Py_ssize_t)sizeof tmp) return 0;
        memcpy(tmp, s, (size_t)n);
        tmp[n] = 0;
        return isinf(strtod(tmp, NULL)) ? 2 : 1;
    }
    return 1;
}

/* NaN / Infinity spellings Python's float() takes (orjson writes them as null) */
static int non_finite(const char *s, Py_ssize_t n) {
    if (n && (s[0] == '-' || s[0] == '+')) { s++; n--; }
    return (n == 3 && !PyOS_strnicmp(s, "nan", 3)) || (n == 3 && !PyOS_strnicmp(s, "inf", 3)) ||
           (n == 8 && !PyOS_strnicmp(s, "infinity", 8));
}

static const char HEX[] = "0123456789abcdef";

/* A TSV string field as a JSON string (quotes included); 0 on an escape the parser would
 * not read the same way (unknown, or \N inside a value). */
static int put_string(Buf *b, const char *s, Py_ssize_t n) {
    b->p[b->len++] = '"';
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        buf_put(b, s + run, (size_t)(i - run));
        if (c == '\\') {
            if (++i >= n) return 0;
            switch (s[i]) {
            case '\\': buf_put(b, "\\\\", 2); break;
            case 't': buf_put(b, "\\t", 2); break;
            case 'n': buf_put(b, "\\n", 2); break;
            case 'r': buf_put(b, "\\r", 2); break;
            case 'b': buf_put(b, "\\b", 2); break;
            case 'f': buf_put(b, "\\f", 2); break;
            case 'v': buf_put(b, "\\u000b", 6); break;
            case '0': buf_put(b, "\\u0000", 6); break;
            default: return 0;
            }
        } else if (c == '"') {
            buf_put(b, "\\\"", 2);
        } else {
            switch (c) {
            case '\b': buf_put(b, "\\b", 2); break;
            case '\f': buf_put(b, "\\f", 2); break;
            case '\n': buf_put(b, "\\n", 2); break;
            case '\r': buf_put(b, "\\r", 2); break;
            case '\t': buf_put(b, "\\t", 2); break;
            default: {
                char u[6] = {'\\', 'u', '0', '0', HEX[c >> 4], HEX[c & 15]};
                buf_put(b, u, 6);
            }
            }
        }
        run = i + 1;
    }
    buf_put(b, s + run, (size_t)(n - run));
    b->p[b->len++] = '"';
    return 1;
}

static int parse_columns(PyObject *seq, Column **out, Py_ssize_t *count, Py_ssize_t *njson) {
    PyObject *fast = PySequence_Fast(seq, "columns must be a sequence");
    if (!fast) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    Column *cols = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Column));
    if (!cols) { Py_DECREF(fast); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        PyObject *prefix;
        Py_ssize_t field;
        int kind;
        if (!PyArg_ParseTuple(item, "Sni", &prefix, &field, &kind)) {
            PyMem_Free(cols);
            Py_DECREF(fast);
            return -1;
        }
        cols[i].prefix = PyBytes_AS_STRING(prefix);
        cols[i].prefix_len = PyBytes_GET_SIZE(prefix);
        cols[i].field = field;
        cols[i].kind = kind;
        cols[i].json = -1;
        if (kind == K_JSON && field >= 0 && njson) cols[i].json = (*njson)++;
    }
    /* the prefixes stay alive: they belong to the caller's tuples */
    Py_DECREF(fast);
    *out = cols;
    *count = n;
    return 0;
}

/* Emit one line's members; 0 = give up on the block, -1 = error. */
static int put_members(Buf *b, const Column *cols, Py_ssize_t ncol, const char **fs,
                       const Py_ssize_t *fl, PyObject *json_values, Py_ssize_t row) {
    for (Py_ssize_t j = 0; j < ncol; j++) {
        const Column *c = &cols[j];
        const char *s = c->field >= 0 ? fs[c->field] : NULL;
        Py_ssize_t n = c->field >= 0 ? fl[c->field] : 0;
        if (buf_reserve(b, (size_t)c->prefix_len + 6 * (size_t)n + 8) < 0) return -1;
        buf_put(b, c->prefix, (size_t)c->prefix_len);
        if (!s || (n == 2 && s[0] == '\\' && s[1] == 'N')) {
            buf_put(b, "null", 4);
            continue;
        }
        switch (c->kind) {
        case K_INT:
            if (!json_int(s, n)) return 0;
            buf_put(b, s, (size_t)n);
            break;
        case K_FLOAT:
            switch (json_number(s, n)) {
            case 1: buf_put(b, s, (size_t)n); break;
            case 2: buf_put(b, "null", 4); break;
            default:
                if (non_finite(s, n)) buf_put(b, "null", 4);
                else return 0;
            }
            break;
        case K_BOOL:
            if ((n == 4 && !memcmp(s, "true", 4)) || (n == 5 && !memcmp(s, "false", 5)))
                buf_put(b, s, (size_t)n);
            else return 0;
            break;
        case K_STR:
            if (!put_string(b, s, n)) return 0;
            break;
        default: { /* K_JSON */
            PyObject *list = PyTuple_GET_ITEM(json_values, c->json);
            PyObject *text = PyList_GET_ITEM(list, row);
            Py_ssize_t tn;
            const char *ts = PyUnicode_AsUTF8AndSize(text, &tn);
            if (!ts) return -1;
            if (buf_reserve(b, (size_t)tn + 8) < 0) return -1;
            buf_put(b, ts, (size_t)tn);
        }
        }
    }
    return 1;
}

static PyObject *transcode(PyObject *self, PyObject *args) {
    Py_buffer data;
    Py_ssize_t ncols, action;
    PyObject *colseq, *delseq, *json_values;
    const char *head, *tail;
    Py_ssize_t head_len, tail_len;
    if (!PyArg_ParseTuple(args, "y*nnOOy#y#O!", &data, &ncols, &action, &colseq, &delseq, &head,
                          &head_len, &tail, &tail_len, &PyTuple_Type, &json_values))
        return NULL;
    PyObject *result = NULL;
    Column *cols = NULL, *dels = NULL;
    Py_ssize_t ncol = 0, ndel = 0, njson = 0;
    const char **fs = NULL;
    Py_ssize_t *fl = NULL;
    Buf b = {NULL, 0, 0};
    const char *p = data.buf;
    Py_ssize_t n = data.len, upserts = 0, deletes = 0;

    if (ncols < 1 || parse_columns(colseq, &cols, &ncol, &njson) < 0 ||
        parse_columns(delseq, &dels, &ndel, NULL) < 0)
        goto done;
    for (Py_ssize_t j = 0; j < ncol; j++)
        if (cols[j].field >= ncols) { PyErr_SetString(PyExc_ValueError, "field index"); goto done; }
    for (Py_ssize_t j = 0; j < ndel; j++)
        if (dels[j].field >= ncols || dels[j].field < 0 || dels[j].kind == K_JSON) {
            PyErr_SetString(PyExc_ValueError, "deleted column");
            goto done;
        }
    if (action >= ncols || PyTuple_GET_SIZE(json_values) != njson) {
        PyErr_SetString(PyExc_ValueError, "action index or json_values");
        goto done;
    }
    fs = PyMem_Malloc(sizeof(char *) * (size_t)ncols);
    fl = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)ncols);
    if (!fs || !fl) { PyErr_NoMemory(); goto done; }
    if (!utf8_valid((const unsigned char *)p, n)) { result = Py_NewRef(Py_None); goto done; }

    Py_ssize_t pos = 0, row = 0;
    while (pos <= n) {
        const char *line = p + pos;
        const char *nl = memchr(line, '\n', (size_t)(n - pos));
        Py_ssize_t len = nl ? nl - line : n - pos;
        /* split on tabs: exactly ncols fields */
        Py_ssize_t k = 0, start = 0;
        for (;;) {
            const char *t = memchr(line + start, '\t', (size_t)(len - start));
            Py_ssize_t end = t ? t - line : len;
            if (k == ncols) { result = Py_NewRef(Py_None); goto done; }
            fs[k] = line + start;
            fl[k++] = end - start;
            if (!t) break;
            start = end + 1;
        }
        if (k != ncols) { result = Py_NewRef(Py_None); goto done; }
        int del = 0;
        if (action >= 0) {
            if (fl[action] == 1 && fs[action][0] == 'D') del = 1;
            else if (!(fl[action] == 1 && fs[action][0] == 'U')) {
                result = Py_NewRef(Py_None); /* unknown action: the parser reports it */
                goto done;
            }
        }
        if (buf_reserve(&b, (size_t)(head_len + tail_len) + 1) < 0) goto done;
        buf_put(&b, head, (size_t)head_len);
        int ok = del ? put_members(&b, dels, ndel, fs, fl, json_values, row)
                     : put_members(&b, cols, ncol, fs, fl, json_values, row);
        if (ok < 0) { if (!PyErr_Occurred()) PyErr_NoMemory(); goto done; }
        if (ok == 0) { result = Py_NewRef(Py_None); goto done; }
        if (buf_reserve(&b, (size_t)tail_len + 1) < 0) goto done;
        buf_put(&b, tail, (size_t)tail_len);
        b.p[b.len++] = '\n';
        if (del) deletes++; else upserts++;
        row++;
        if (!nl) break;
        pos += len + 1;
    }
    for (Py_ssize_t j = 0; j < njson; j++)
        if (PyList_GET_SIZE(PyTuple_GET_ITEM(json_values, j)) != row) {
            PyErr_SetString(PyExc_ValueError, "json_values: one entry per line");
            goto done;
        }
    {
        PyObject *out = PyBytes_FromStringAndSize(b.p ? b.p : "", (Py_ssize_t)b.len);
        if (out) result = Py_BuildValue("(Nnn)", out, upserts, deletes);
    }
done:
    PyMem_Free(b.p);
    PyMem_Free(fs);
    PyMem_Free(fl);
    PyMem_Free(cols);
    PyMem_Free(dels);
    PyBuffer_Release(&data);
    return result;
}

/* fields(data, ncols, index) -> list of bytes: one column of a block (for JSON columns),
 * or None when a line does not have ncols fields. */
static PyObject *fields(PyObject *self, PyObject *args) {
    Py_buffer data;
    Py_ssize_t ncols, index;
    if (!PyArg_ParseTuple(args, "y*nn", &data, &ncols, &index)) return NULL;
    PyObject *out = PyList_New(0);
    const char *p = data.buf;
    Py_ssize_t n = data.len, pos = 0;
    if (!out) goto fail;
    if (index < 0 || index >= ncols) { PyErr_SetString(PyExc_ValueError, "index"); goto fail; }
    while (pos <= n) {
        const char *line = p + pos;
        const char *nl = memchr(line, '\n', (size_t)(n - pos));
        Py_ssize_t len = nl ? nl - line : n - pos;
        Py_ssize_t k = 0, start = 0, fstart = -1, fend = -1;
        for (;;) {
            const char *t = memchr(line + start, '\t', (size_t)(len - start));
            Py_ssize_t end = t ? t - line : len;
            if (k == index) { fstart = start; fend = end; }
            k++;
            if (!t) break;
            start = end + 1;
        }
        if (k != ncols) { Py_DECREF(out); PyBuffer_Release(&data); Py_RETURN_NONE; }
        PyObject *f = PyBytes_FromStringAndSize(line + fstart, fend - fstart);
        if (!f || PyList_Append(out, f) < 0) { Py_XDECREF(f); goto fail; }
        Py_DECREF(f);
        if (!nl) break;
        pos += len + 1;
    }
    PyBuffer_Release(&data);
    return out;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&data);
    return NULL;
}

static PyMethodDef methods[] = {
    {"transcode", transcode, METH_VARARGS, "TSV block -> RECORD lines, or None (see module)."},
    {"fields", fields, METH_VARARGS, "One column of a TSV block as a list of bytes, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_transcode",
    "TSV -> Singer RECORD lines in C (optional speed-up of _tsvjson).", -1, methods,
};

PyMODINIT_FUNC PyInit__transcode(void) { return PyModule_Create(&module); }
