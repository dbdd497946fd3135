/*
 * Shared by the C speed-ups (tap_canvas_data2/_transcode.c, target_dap_sql/_rows.c).
 */
#ifndef CANVAS_DATA2_UTF8_H
#define CANVAS_DATA2_UTF8_H

#include <Python.h>
#include <string.h>

/* Is s[0:n] valid UTF-8 (as Python's strict decoder reads it: no overlong forms, no
 * surrogates, nothing beyond U+10FFFF)?  ASCII runs are checked 8 bytes at a time. */
static int utf8_valid(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            unsigned long long w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ULL)) { i += 8; continue; }
        }
        unsigned char c = s[i];
        if (c < 0x80) { i++; continue; }
        int need;
        unsigned int cp;
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
        else return 0;
        if (i + need >= n) return 0;
        for (int k = 1; k <= need; k++) {
            unsigned char d = s[i + k];
            if ((d & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (d & 0x3F);
        }
        if (need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
        if (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
        i += need + 1;
    }
    return 1;
}

#endif
