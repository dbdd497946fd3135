/*
 * The JSON number grammar, shared by the C speed-ups (tap_canvas_data2/_transcode.c,
 * target_dap_sql/_rows.c): -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
 */
#ifndef CANVAS_DATA2_JSONNUM_H
#define CANVAS_DATA2_JSONNUM_H

#include <Python.h>

typedef struct {
    Py_ssize_t int_end;    /* end of the integer part (sign included) */
    Py_ssize_t end;        /* end of the number */
    Py_ssize_t exp_digits; /* digits of the exponent (0: none) */
    int is_float;          /* a fraction or an exponent */
} JsonNumber;

static inline int jn_digit(char c) { return c >= '0' && c <= '9'; }

/* Scan the number at the start of s[0:n] (what follows it is not looked at): 1 and *m
 * filled, or 0 when s does not start with a JSON number. */
static int json_number_scan(const char *s, Py_ssize_t n, JsonNumber *m) {
    Py_ssize_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n) return 0;
    if (s[i] == '0') i++;
    else if (s[i] >= '1' && s[i] <= '9') { while (i < n && jn_digit(s[i])) i++; }
    else return 0;
    m->int_end = i;
    m->exp_digits = 0;
    m->is_float = 0;
    if (i < n && s[i] == '.') {
        Py_ssize_t d = ++i;
        while (i < n && jn_digit(s[i])) i++;
        if (i == d) return 0;
        m->is_float = 1;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        Py_ssize_t d = i;
        while (i < n && jn_digit(s[i])) i++;
        if (i == d) return 0;
        m->exp_digits = i - d;
        m->is_float = 1;
    }
    m->end = i;
    return 1;
}

#endif
