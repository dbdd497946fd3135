/*
 * A growable output buffer, shared by the C speed-ups (see utf8.h).
 */
#ifndef CANVAS_DATA2_BUF_H
#define CANVAS_DATA2_BUF_H

#include <Python.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

/* Room for `extra` more bytes; -1 with MemoryError set when there is none. */
static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + extra) cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Append n bytes (room reserved before). */
static inline void buf_put(Buf *b, const char *s, size_t n) {
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* Append n bytes, growing the buffer: 0, or -1 with MemoryError set. */
static inline int buf_add(Buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    buf_put(b, s, n);
    return 0;
}

#endif
