/* Native run encoder: cdc change envelopes (Avro) -> MariaDB/MySQL SQL literal rows.
 *
 * The MariaDB/MySQL sink's batch-level fast path: the engine's run walker
 * (cdc/sink/runwalk.h) with this format's hooks; connectors/mysql/sink/runs.py
 * holds the pure-Python reference of the converters and compiles the programs.
 * A run is `(v1,v2,...),(v1,v2,...)`, the VALUES list of one multi-row upsert.
 *
 * Literals are for a session without NO_BACKSLASH_ESCAPES (the sink sets its
 * sql_mode): a string's quotes are doubled and its backslashes escaped; a
 * string holding NUL is refused. Values are refused (the run ends)
 * rather than coerced: ints outside the column's range, NaN and infinite
 * floats, invalid UTF-8, strings longer than the column, dates and datetimes
 * outside years 1..9999 (a TIMESTAMP column: outside its range) or with more
 * fraction than the column keeps, timestamptz texts not in cdc's form, decimals
 * that do not fit decimal(p, s) or exceed 16 bytes.
 * Only the CPython C API, C11.
 */
#define RUN_PROGRAM_NAME "connectors.mysql.sink._crun.Program"
#include "cdc/sink/runwalk.h"

#include <math.h>

/* column converters (runs.py mirrors these numbers) */
enum {
    M_BOOL = 1,     /* boolean -> 1 or 0 */
    M_INT = 2,      /* int/long in [p1, p2] */
    M_FLOAT = 3,    /* (reserved: a FLOAT column takes the general path, which writes a
                       float's shortest single-precision decimal) */
    M_DOUBLE = 4,   /* double */
    M_TEXT = 5,     /* string: at most p1 characters (-1: any), p2 bytes (-1: any) */
    M_DATE = 6,     /* int days since 1970 */
    M_DATETIME = 7, /* long µs since 1970, p1 fractional digits kept */
    M_DECIMAL = 8,  /* bytes (two's complement), scale p1, into decimal(p2, p3) */
    M_TSTZ = 9,     /* string (cdc's UTC text), p1 fractional digits kept; p2 1: a TIMESTAMP
                       column (1970-01-01 00:00:01 to 2038-01-19 03:14:07.999999) */
    M_UUID = 10,    /* string: lowercase hyphenated, as text */
    M_BYTES = 11,   /* bytes, at most p1 of them, as X'..' */
};

#define TS_MIN_US INT64_C(1000000)
#define TS_MAX_US INT64_C(2147483647999999)

static int
put(Buf *b, const char *s, Py_ssize_t n)
{
    if (reserve(b, n) < 0)
        return NOMEM;
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

/* Decimal digits of v (at most 20 and a sign) at o; their count. */
static int
fmt_int(char *o, int64_t v)
{
    char t[24];
    int k = 0, n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        t[k++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (v < 0)
        o[n++] = '-';
    while (k)
        o[n++] = t[--k];
    return n;
}

/* v (0 <= v < 10^width) zero-padded to width digits at o. */
static void
fmt_pad(char *o, int64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        o[i] = (char)('0' + (int)(v % 10));
        v /= 10;
    }
}

static void
civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

/* YYYY-MM-DD of days since 1970 (years 1..9999) at o: 10 characters. */
static void
fmt_date(char *o, int64_t days)
{
    int64_t y, m, d;
    civil_from_days(days, &y, &m, &d);
    fmt_pad(o, y, 4);
    o[4] = '-';
    fmt_pad(o + 5, m, 2);
    o[7] = '-';
    fmt_pad(o + 8, d, 2);
}

/* 'YYYY-MM-DD HH:MM:SS[.ffffff]' of µs since 1970 (years 1..9999). */
static int
put_datetime(Buf *b, int64_t v)
{
    int64_t days = v >= 0 ? v / DAY_US : -((-v + DAY_US - 1) / DAY_US);
    int64_t us = v - days * DAY_US;
    int64_t secs = us / 1000000, frac = us % 1000000;
    char t[32];
    t[0] = '\'';
    fmt_date(t + 1, days);
    t[11] = ' ';
    fmt_pad(t + 12, secs / 3600, 2);
    t[14] = ':';
    fmt_pad(t + 15, secs / 60 % 60, 2);
    t[17] = ':';
    fmt_pad(t + 18, secs % 60, 2);
    int k = 20;
    if (frac) {
        t[k++] = '.';
        fmt_pad(t + k, frac, 6);
        k += 6;
    }
    t[k++] = '\'';
    return put(b, t, k);
}

static int
put_double(Buf *b, double v)
{
    /* repr(v), then "e0" when it has no exponent (PyMySQL's escape_float) */
    char *r = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (r == NULL)
        return NOMEM;
    size_t n = strlen(r);
    int rc = put(b, r, (Py_ssize_t)n);
    if (rc == 0 && strchr(r, 'e') == NULL)
        rc = put(b, "e0", 2);
    PyMem_Free(r);
    return rc;
}

/* The unscaled decimal `raw` (big-endian two's complement) with `scale` digits after
 * the point, into decimal(tprec, tscale) exactly (tprec -1: any). */
static int
put_decimal(Buf *b, const unsigned char *s, Py_ssize_t n, int scale, int tprec, int tscale)
{
    if (n < 1 || n > 16)
        return REFUSE;
    int neg = s[0] & 0x80;
    /* magnitude as 128 bits */
    unsigned __int128 u = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        u = (u << 8) | s[i];
    if (neg) {
        if (n < 16)
            u |= ~(unsigned __int128)0 << (8 * n);
        u = ~u + 1;
    }
    char digits[48];
    int nd = 0;
    while (u) {
        digits[nd++] = (char)('0' + (int)(u % 10));
        u /= 10;
    }
    /* digits[] is little-endian; nz: significant digits without trailing zeros */
    int tz = 0;
    while (tz < nd && digits[tz] == '0')
        tz++;
    int nz = nd - tz;
    if (tprec >= 0 && nz && (nz - (nd - scale) > tscale || nd - scale > tprec - tscale))
        return REFUSE;
    char t[64];
    int k = 0;
    if (neg && nd)
        t[k++] = '-';
    if (nd <= scale) {
        t[k++] = '0';
    } else {
        for (int i = nd - 1; i >= scale; i--)
            t[k++] = digits[i];
    }
    if (scale > 0) {
        t[k++] = '.';
        for (int i = scale - 1; i >= 0; i--)
            t[k++] = i < nd ? digits[i] : '0';
    }
    return put(b, t, k);
}

/* One column value at c into b: 0, REFUSE, or NOMEM. */
static int
column(const Instr *in, Cur *c, Buf *b)
{
    int64_t v;
    Py_ssize_t n;
    if (in->b >= 0) { /* nullable: ["null", T] or [T, "null"] */
        if (read_long(c, &v) < 0 || v < 0 || v > 1)
            return REFUSE;
        if (v == in->b)
            return put(b, "NULL", 4);
    }
    switch (in->a) {
    case M_BOOL:
        if (c->pos >= c->len || c->buf[c->pos] > 1)
            return REFUSE;
        return put(b, c->buf[c->pos++] ? "1" : "0", 1);
    case M_INT: {
        if (read_long(c, &v) < 0)
            return REFUSE;
        if (in->avro_int && (v < INT32_MIN || v > INT32_MAX))
            return REFUSE;
        if (v < in->p1 || v > in->p2)
            return REFUSE;
        char t[24];
        return put(b, t, fmt_int(t, v));
    }
    case M_DOUBLE: {
        if (c->len - c->pos < 8)
            return REFUSE;
        const unsigned char *s = c->buf + c->pos;
        uint64_t bits = 0;
        for (int i = 7; i >= 0; i--)
            bits = (bits << 8) | s[i];
        c->pos += 8;
        double d;
        memcpy(&d, &bits, 8);
        if (!isfinite(d))
            return REFUSE; /* no FLOAT/DOUBLE value: the general path names it */
        return put_double(b, d);
    }
    case M_TEXT: {
        if (read_len(c, &n) < 0)
            return REFUSE;
        const unsigned char *s = c->buf + c->pos;
        c->pos += n;
        Py_ssize_t chars = utf8_chars(s, n); /* (refuses NUL) */
        if (chars < 0 || (in->p1 >= 0 && chars > in->p1) || (in->p2 >= 0 && n > in->p2))
            return REFUSE;
        Py_ssize_t extra = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            extra += s[i] == '\'' || s[i] == '\\';
        if (reserve(b, n + extra + 2) < 0)
            return NOMEM;
        unsigned char *o = b->data + b->len;
        *o++ = '\'';
        for (Py_ssize_t i = 0; i < n; i++) {
            if (s[i] == '\'' || s[i] == '\\')
                *o++ = s[i]; /* '' and \\ */
            *o++ = s[i];
        }
        *o++ = '\'';
        b->len = o - b->data;
        return 0;
    }
    case M_DATE:
        if (read_long(c, &v) < 0 || v < MIN_DAYS || v > MAX_DAYS)
            return REFUSE;
        char t[12];
        t[0] = '\'';
        fmt_date(t + 1, v);
        t[11] = '\'';
        return put(b, t, 12);
    case M_DATETIME:
        if (read_long(c, &v) < 0 || v < MIN_DAYS * DAY_US || v >= (MAX_DAYS + 1) * DAY_US)
            return REFUSE;
        if (in->p1 < 6 && v % POW10[6 - in->p1])
            return REFUSE;
        return put_datetime(b, v);
    case M_TSTZ: {
        if (read_len(c, &n) < 0)
            return REFUSE;
        const unsigned char *s = c->buf + c->pos;
        c->pos += n;
        if (parse_tstz(s, n, &v) < 0 || (in->p1 < 6 && v % POW10[6 - in->p1]))
            return REFUSE;
        if (in->p2 && (v < TS_MIN_US || v > TS_MAX_US))
            return REFUSE;
        return put_datetime(b, v);
    }
    case M_UUID: {
        if (read_len(c, &n) < 0 || n != 36)
            return REFUSE;
        const unsigned char *s = c->buf + c->pos;
        c->pos += n;
        for (int i = 0; i < 36; i++) {
            int hyphen = i == 8 || i == 13 || i == 18 || i == 23;
            if (hyphen ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                return REFUSE; /* not the form the general path writes */
        }
        if (put(b, "'", 1) < 0 || put(b, (const char *)s, 36) < 0 || put(b, "'", 1) < 0)
            return NOMEM;
        return 0;
    }
    case M_BYTES: {
        static const char hex[] = "0123456789ABCDEF";
        if (read_len(c, &n) < 0 || n > in->p1)
            return REFUSE;
        const unsigned char *s = c->buf + c->pos;
        c->pos += n;
        if (reserve(b, 2 * n + 3) < 0)
            return NOMEM;
        unsigned char *o = b->data + b->len;
        *o++ = 'X';
        *o++ = '\'';
        for (Py_ssize_t i = 0; i < n; i++) {
            *o++ = (unsigned char)hex[s[i] >> 4];
            *o++ = (unsigned char)hex[s[i] & 15];
        }
        *o++ = '\'';
        b->len = o - b->data;
        return 0;
    }
    case M_DECIMAL: {
        if (read_len(c, &n) < 0)
            return REFUSE;
        const unsigned char *s = c->buf + c->pos;
        c->pos += n;
        return put_decimal(b, s, n, (int)in->p1, (int)in->p2, (int)in->p3);
    }
    }
    return REFUSE;
}

static int
check_instr(const Instr *in)
{
    if (in->a < M_BOOL || in->a > M_BYTES || in->a == M_FLOAT) {
        PyErr_SetString(PyExc_ValueError, "bad converter");
        return -1;
    }
    if ((in->a == M_DATETIME || in->a == M_TSTZ) && (in->p1 < 0 || in->p1 > 6)) {
        PyErr_SetString(PyExc_ValueError, "fraction out of range");
        return -1;
    }
    if (in->a == M_DECIMAL && (in->p1 < 0 || in->p1 > 38 || in->p2 > 65 || in->p3 < 0 || in->p3 > 38)) {
        PyErr_SetString(PyExc_ValueError, "decimal scale or precision out of range");
        return -1;
    }
    return 0;
}

/* `(` (`,(` after the first row), values separated by commas, `)`. */
static int
row_begin(const Program *p, Buf *b, Py_ssize_t row)
{
    (void)p;
    return row ? put(b, ",(", 2) : put(b, "(", 1);
}

static int
col_begin(Buf *b, int index)
{
    return index ? put(b, ",", 1) : 0;
}

static int
row_end(Buf *b)
{
    return put(b, ")", 1);
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS,
     "encode(program, values, start, stop, origin, header_len) -> (rows, payload, positions)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "connectors.mysql.sink._crun",
    "cdc change envelopes -> MariaDB/MySQL SQL literal rows (see runs.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__crun(void)
{
    if (PyType_Ready(&ProgramType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ProgramType);
    if (PyModule_AddObject(m, "Program", (PyObject *)&ProgramType) < 0) {
        Py_DECREF(&ProgramType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
