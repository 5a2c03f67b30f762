/*
 * Native decoder of MySQL/MariaDB binlog row images (optional speed-up).
 *
 * Mirrors connectors/mysql/source/rowimage.py, which stays the reference:
 * the tests run both on the same bytes and compare the values and types.
 *
 * Program(names, specs): compiled once per table version from one spec tuple
 * per column, ``(op, first, second, obj, conv)`` (see the OP_* codes and Col below and
 * rowimage._native_spec). ``Program.decode(buf, off, end, pairs)`` decodes
 * every row image in ``buf[off:end]`` (a whole rows-event body) into a list of
 * dicts ``{name: value}``, or ``(before, after)`` tuples when ``pairs``.
 * ``conv`` (optional) is called on each decoded non-NULL value; OP_PY
 * columns call a Python decoder ``dec(buf, off) -> (value, new_off)``.
 * Truncated or malformed input raises ValueError, never reads past ``end``.
 *
 * EventBuilder builds a change event and its position from four positional
 * constructors (cdc._cslots.Maker, or the classes themselves).
 *
 * State: no static objects. The module keeps its constants and its two heap types
 * in per-module state (multi-phase init); a Program or EventBuilder holds the
 * constants it uses, taken from its module when it is made. The module declares
 * that it needs the GIL (Py_mod_gil, where Python has it): it walks borrowed
 * references and dict/list internals under it.
 *
 * One concern: turning row-image bytes into the values (and events) rowimage.py and
 * binlog.py make in Python, as fast as the CPython API allows; the decoder, its
 * spec checks and the event builder share the column facts and module state.
 *
 * CPython C API only, C11.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <structmember.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

enum {
    OP_INT = 1,      /* integer: size (1,2,3,4,8), is_unsigned */
    OP_FLOAT = 2,    /* float32, shortest decimal (cdc.serde.value_codecs.shortest_float32) */
    OP_DOUBLE = 3,
    OP_DECIMAL = 4,  /* decimal: precision, scale; obj = the Python decoder (fallback) */
    OP_STR = 5,      /* text: prefix = length prefix bytes (1..4), encoding (0 utf-8,
                        1 MySQL latin1: obj = its 256-character decoding table, 2 ascii) */
    OP_BYTES = 6,    /* bytes: prefix = length prefix bytes (1..4), pad_to (0: no padding) */
    OP_ENUM = 7,     /* packed: size; obj = ("", *labels) */
    OP_SET = 8,      /* packed: size; obj = labels */
    OP_BIT = 9,      /* packed: size (bytes) */
    OP_DATE = 10,    /* obj = zero() */
    OP_DATETIME2 = 11, /* temporal: fsp; obj = zero() */
    OP_TIMESTAMP2 = 12, /* temporal: fsp; obj = zero() */
    OP_TIME2 = 13,   /* temporal: fsp */
    OP_YEAR = 14,
    OP_PY = 15,      /* obj = dec(buf, off) -> (value, off) */
    OP_MAX = 15
};

/* One column of a Program: its op and the spec's two integers, named per op. Every
 * member of the union is a pair of ints, so they share a common initial sequence:
 * ``spec`` is written from the spec tuple and the op's own member read (C11 6.5.2.3). */
typedef struct {
    int op;
    union {
        struct { int first, second; } spec;            /* as given: (op, first, second, ...) */
        struct { int size, is_unsigned; } integer;     /* OP_INT */
        struct { int precision, scale; } decimal;      /* OP_DECIMAL */
        struct { int prefix, encoding; } text;         /* OP_STR */
        struct { int prefix, pad_to; } bytes;          /* OP_BYTES */
        struct { int size, unused; } packed;           /* OP_ENUM, OP_SET, OP_BIT: bytes */
        struct { int fsp, unused; } temporal;          /* OP_DATETIME2, OP_TIMESTAMP2, OP_TIME2 */
    };
    PyObject *obj;  /* owned, may be NULL */
    PyObject *conv; /* owned, may be NULL */
} Col;

typedef struct {
    PyObject_HEAD
    Py_ssize_t ncols;
    Py_ssize_t null_bytes;
    PyObject *names; /* tuple of str */
    Col *cols;
    PyObject *decimal; /* decimal.Decimal */
    PyObject *empty;   /* "" (an enum index out of range) */
    PyObject *comma;   /* "," (SET members) */
} Program;

/* Per-module state. */
typedef struct {
    PyObject *decimal;
    PyObject *empty;
    PyObject *comma;
    PyObject *false_str;
    PyObject *one;
    PyObject *program_type;
    PyObject *builder_type;
} ModState;

static struct PyModuleDef module_def;

/* The state of the module that defined ``type`` (a borrowed pointer), or NULL with an error. */
static ModState *
state_of_type(PyTypeObject *type)
{
    PyObject *m = PyType_GetModuleByDef(type, &module_def);
    return m == NULL ? NULL : (ModState *)PyModule_GetState(m);
}

/* ------------------------------------------------------------------ helpers */

static int
short_input(const Program *p, Py_ssize_t col, Py_ssize_t off, Py_ssize_t need, Py_ssize_t end)
{
    PyObject *name = (col >= 0 && p != NULL) ? PyTuple_GET_ITEM(p->names, col) : NULL;
    if (name != NULL) {
        PyErr_Format(PyExc_ValueError,
                     "truncated row image: column %R needs %zd bytes at offset %zd, "
                     "the event body ends at %zd", name, need, off, end);
    } else {
        PyErr_Format(PyExc_ValueError,
                     "truncated row image: %zd bytes needed at offset %zd, "
                     "the event body ends at %zd", need, off, end);
    }
    return -1;
}

static inline uint64_t
le(const unsigned char *s, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | s[i];
    return v;
}

static inline uint64_t
be(const unsigned char *s, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | s[i];
    return v;
}

static inline int64_t
floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

static inline int64_t
floormod(int64_t a, int64_t b)
{
    return a - floordiv(a, b) * b;
}

/* Python's arithmetic right shift on a (possibly negative) int64. */
static inline int64_t
asr(int64_t a, int n)
{
    return a >= 0 ? (a >> n) : -(((-(a + 1)) >> n) + 1);
}

static PyObject *
call_zero(PyObject *zero)
{
    return PyObject_CallNoArgs(zero);
}

/* Microseconds of the fractional bytes of TIME2/DATETIME2/TIMESTAMP2 (rowimage._frac). */
static inline int64_t
frac_micros(const unsigned char *s, int fsp)
{
    int n = (fsp + 1) / 2;
    static const int64_t mult[4] = {0, 10000, 100, 1};
    return n ? (int64_t)be(s, n) * mult[n] : 0;
}

/* Days since 1970-01-01 -> civil date (proleptic Gregorian), by Howard Hinnant's
 * public-domain civil_from_days algorithm. */
static void
civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = floordiv(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t dd = doy - (153 * mp + 2) / 5 + 1;
    int64_t mm = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yy + (mm <= 2));
    *m = (int)mm;
    *d = (int)dd;
}

/* cdc.serde.value_codecs.shortest_float32 */
static PyObject *
shortest_float32(double x)
{
    if (!isfinite(x) || x == 0.0) return PyFloat_FromDouble(x);
    float want = (float)x;
    for (int digits = 6; digits < 10; digits++) {
        char *s = PyOS_double_to_string(x, 'g', digits, 0, NULL);
        if (s == NULL) return NULL;
        double y = PyOS_string_to_double(s, NULL, NULL);
        PyMem_Free(s);
        if (y == -1.0 && PyErr_Occurred()) return NULL;
        float got = (float)y;
        if (memcmp(&got, &want, sizeof(float)) == 0) return PyFloat_FromDouble(y);
    }
    return PyFloat_FromDouble(x);
}

static const int DIG2BYTES[10] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 4};

/* Writes v as exactly n decimal digits (zero-padded; v < 10**n); returns the end. */
static char *
put_digits(char *w, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        w[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return w + n;
}

static Py_ssize_t
decimal_size(int precision, int scale)
{
    int intg = precision - scale;
    return DIG2BYTES[intg % 9] + (intg / 9) * 4 + (scale / 9) * 4 + DIG2BYTES[scale % 9];
}

/* MySQL binary DECIMAL -> Decimal, as rowimage._decimal builds it; returns NULL
 * with no error set when a digit group is out of range (the caller then uses
 * the Python decoder, which defines the value of such bytes). */
static PyObject *
decode_decimal(PyObject *decimal_type, const unsigned char *src, int precision, int scale,
               int *fallback)
{
    int intg = precision - scale;
    int intg0 = intg / 9, intg0x = intg % 9, frac0 = scale / 9, frac0x = scale % 9;
    int lead = DIG2BYTES[intg0x], tail = DIG2BYTES[frac0x];
    int size = lead + intg0 * 4 + frac0 * 4 + tail;
    unsigned char raw[64];
    char text[160];
    static const uint64_t pow10[10] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                       100000000, 1000000000};
    memcpy(raw, src, (size_t)size);
    int negative = !(raw[0] & 0x80);
    raw[0] ^= 0x80;
    if (negative) {
        for (int i = 0; i < size; i++) raw[i] ^= 0xFF;
    }
    char *w = text;
    if (negative) *w++ = '-';
    char *digits = w;
    int pos = 0;
    if (lead) {
        uint64_t v = be(raw, lead);
        if (v >= pow10[intg0x]) { *fallback = 1; return NULL; }
        w = put_digits(w, v, intg0x);
        pos = lead;
    }
    for (int g = 0; g < intg0 + frac0; g++) {
        uint64_t v = be(raw + pos, 4);
        if (v >= 1000000000u) { *fallback = 1; return NULL; }
        w = put_digits(w, v, 9);
        pos += 4;
    }
    if (tail) {
        uint64_t v = be(raw + pos, tail);
        if (v >= pow10[frac0x]) { *fallback = 1; return NULL; }
        w = put_digits(w, v, frac0x);
    }
    /* str(int): no leading zeros, "0" for zero */
    char *first = digits;
    while (first < w - 1 && *first == '0') first++;
    if (first == w) {  /* no digits at all (precision 0) */
        *w++ = '0';
    }
    else if (first != digits) {
        memmove(digits, first, (size_t)(w - first));
        w -= first - digits;
    }
    if (scale) {
        *w++ = 'E';
        *w++ = '-';
        if (scale >= 10) *w++ = (char)('0' + scale / 10);
        *w++ = (char)('0' + scale % 10);
    }
    PyObject *s = PyUnicode_FromStringAndSize(text, w - text);
    if (s == NULL) return NULL;
    PyObject *d = PyObject_CallOneArg(decimal_type, s);
    Py_DECREF(s);
    return d;
}

/* ------------------------------------------------------------------ one column */

/* Decodes column ``i`` at *off (bounds-checked against end); new reference. */
static PyObject *
decode_col(Program *p, Py_ssize_t i, PyObject *bufobj, const unsigned char *buf,
           Py_ssize_t *offp, Py_ssize_t end)
{
    const Col *c = &p->cols[i];
    Py_ssize_t off = *offp;
    const unsigned char *s = buf + off;
    Py_ssize_t left = end - off;
    PyObject *v = NULL;
    Py_ssize_t need;

#define NEED(n)                                                  \
    do {                                                         \
        need = (n);                                              \
        if (left < need) {                                       \
            short_input(p, i, off, need, end);                   \
            return NULL;                                         \
        }                                                        \
    } while (0)

    switch (c->op) {
    case OP_INT: {
        NEED(c->integer.size);
        uint64_t u = le(s, c->integer.size);
        if (c->integer.is_unsigned) {
            v = PyLong_FromUnsignedLongLong(u);
        }
        else {
            int bits = c->integer.size * 8;
            int64_t x = (int64_t)u;
            if (bits < 64 && (u >> (bits - 1)) & 1) x = (int64_t)(u - ((uint64_t)1 << bits));
            v = PyLong_FromLongLong(x);
        }
        off += c->integer.size;
        break;
    }
    case OP_FLOAT: {
        NEED(4);
        float f;
        uint32_t u = (uint32_t)le(s, 4);
        memcpy(&f, &u, 4);
        v = shortest_float32((double)f);
        off += 4;
        break;
    }
    case OP_DOUBLE: {
        NEED(8);
        double d;
        uint64_t u = le(s, 8);
        memcpy(&d, &u, 8);
        v = PyFloat_FromDouble(d);
        off += 8;
        break;
    }
    case OP_DECIMAL: {
        Py_ssize_t size = decimal_size(c->decimal.precision, c->decimal.scale);
        NEED(size);
        int fallback = 0;
        v = decode_decimal(p->decimal, s, c->decimal.precision, c->decimal.scale, &fallback);
        if (v == NULL && fallback) goto python;
        off += size;
        break;
    }
    case OP_STR:
    case OP_BYTES: {
        NEED(c->text.prefix);
        Py_ssize_t n = (Py_ssize_t)le(s, c->text.prefix);
        NEED(c->text.prefix + n);
        /* text.prefix is bytes.prefix too (the same place in the union) */
        const char *start = (const char *)s + c->text.prefix;
        if (c->op == OP_STR) {
            if (c->text.encoding == 0) v = PyUnicode_DecodeUTF8(start, n, NULL);
            else if (c->text.encoding == 1) v = PyUnicode_DecodeCharmap(start, n, c->obj, NULL);
            else v = PyUnicode_DecodeASCII(start, n, NULL);
        }
        else if (c->bytes.pad_to > n) {
            v = PyBytes_FromStringAndSize(NULL, c->bytes.pad_to);
            if (v != NULL) {
                char *dst = PyBytes_AS_STRING(v);
                memcpy(dst, start, (size_t)n);
                memset(dst + n, 0, (size_t)(c->bytes.pad_to - n));
            }
        }
        else {
            v = PyBytes_FromStringAndSize(start, n);
        }
        off += c->text.prefix + n;
        break;
    }
    case OP_ENUM: {
        NEED(c->packed.size);
        uint64_t idx = le(s, c->packed.size);
        if (idx < (uint64_t)PyTuple_GET_SIZE(c->obj)) v = PyTuple_GET_ITEM(c->obj, (Py_ssize_t)idx);
        else v = p->empty;
        Py_INCREF(v);
        off += c->packed.size;
        break;
    }
    case OP_SET: {
        NEED(c->packed.size);
        uint64_t mask = le(s, c->packed.size);
        Py_ssize_t n = PyTuple_GET_SIZE(c->obj);
        PyObject *parts = PyList_New(0);
        if (parts == NULL) return NULL;
        for (Py_ssize_t k = 0; k < n && k < 64; k++) {
            if ((mask >> k) & 1) {
                if (PyList_Append(parts, PyTuple_GET_ITEM(c->obj, k)) < 0) {
                    Py_DECREF(parts);
                    return NULL;
                }
            }
        }
        v = PyUnicode_Join(p->comma, parts);
        Py_DECREF(parts);
        off += c->packed.size;
        break;
    }
    case OP_BIT:
        NEED(c->packed.size);
        v = PyBytes_FromStringAndSize((const char *)s, c->packed.size);
        off += c->packed.size;
        break;
    case OP_DATE: {
        NEED(3);
        uint32_t x = (uint32_t)le(s, 3);
        int day = x & 31, month = (x >> 5) & 15, year = (int)(x >> 9);
        if (!(day && month && year)) v = call_zero(c->obj);
        else v = PyDate_FromDate(year, month, day);
        off += 3;
        break;
    }
    case OP_DATETIME2: {
        int size = 5 + (c->temporal.fsp + 1) / 2;
        NEED(size);
        int64_t x = (int64_t)be(s, 5) - INT64_C(0x8000000000);
        int64_t ymd = asr(x, 17), hms = x & 0x1FFFF;
        int64_t ym = asr(ymd, 5);
        int64_t year = floordiv(ym, 13), month = floormod(ym, 13), day = ymd & 31;
        if (!(day && month && year)) {
            v = call_zero(c->obj);
        }
        else {
            int64_t us = frac_micros(s + 5, c->temporal.fsp);
            v = PyDateTime_FromDateAndTime((int)year, (int)month, (int)day, (int)(hms >> 12),
                                           (int)((hms >> 6) & 63), (int)(hms & 63), (int)us);
        }
        off += size;
        break;
    }
    case OP_TIMESTAMP2: {
        int size = 4 + (c->temporal.fsp + 1) / 2;
        NEED(size);
        int64_t secs = (int64_t)be(s, 4);
        int64_t us = frac_micros(s + 4, c->temporal.fsp);
        if (!secs && !us) {
            v = call_zero(c->obj);
        }
        else {
            int64_t total = secs * 1000000 + us;
            int64_t days = floordiv(total, INT64_C(86400000000));
            int64_t rem = total - days * INT64_C(86400000000);
            int y, m, d;
            civil_from_days(days, &y, &m, &d);
            int64_t sod = rem / 1000000;
            v = PyDateTimeAPI->DateTime_FromDateAndTime(
                y, m, d, (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60),
                (int)(rem % 1000000), PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
        }
        off += size;
        break;
    }
    case OP_TIME2: {
        int fsp = c->temporal.fsp;
        int size = 3 + (fsp + 1) / 2;
        NEED(size);
        int64_t n = (int64_t)be(s, size), packed;
        if (fsp >= 5) {
            packed = n - INT64_C(0x800000000000);
        }
        else {
            int64_t intpart, frac;
            if (fsp >= 3) {
                intpart = (n >> 16) - 0x800000;
                frac = n & 0xFFFF;
                if (intpart < 0 && frac) { intpart += 1; frac -= 0x10000; }
                frac *= 100;
            }
            else if (fsp >= 1) {
                intpart = (n >> 8) - 0x800000;
                frac = n & 0xFF;
                if (intpart < 0 && frac) { intpart += 1; frac -= 0x100; }
                frac *= 10000;
            }
            else {
                intpart = n - 0x800000;
                frac = 0;
            }
            packed = intpart * (INT64_C(1) << 24) + frac;
        }
        int neg = packed < 0;
        if (neg) packed = -packed;
        int64_t hms = packed >> 24, micros = packed & 0xFFFFFF;
        int64_t total = ((((hms >> 12) & 0x3FF) * 3600 + ((hms >> 6) & 0x3F) * 60 + (hms & 0x3F))
                         * 1000000) + micros;
        if (neg) total = -total;
        int64_t days = floordiv(total, INT64_C(86400000000));
        int64_t rem = total - days * INT64_C(86400000000);
        v = PyDelta_FromDSU((int)days, (int)(rem / 1000000), (int)(rem % 1000000));
        off += size;
        break;
    }
    case OP_YEAR:
        NEED(1);
        v = PyLong_FromLong(s[0] ? s[0] + 1900 : 0);
        off += 1;
        break;
    case OP_PY:
    python: {
        PyObject *offobj = PyLong_FromSsize_t(off);
        if (offobj == NULL) return NULL;
        PyObject *args[2] = {bufobj, offobj};
        /* OP_PY's decoder, or OP_DECIMAL's fallback for out-of-range digit groups */
        PyObject *res = PyObject_Vectorcall(c->obj, args, 2, NULL);
        Py_DECREF(offobj);
        if (res == NULL) return NULL;
        if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 2) {
            Py_DECREF(res);
            PyErr_SetString(PyExc_TypeError, "a column decoder must return (value, offset)");
            return NULL;
        }
        Py_ssize_t newoff = PyLong_AsSsize_t(PyTuple_GET_ITEM(res, 1));
        if (newoff == -1 && PyErr_Occurred()) {
            Py_DECREF(res);
            return NULL;
        }
        if (newoff < off || newoff > end) {
            Py_DECREF(res);
            short_input(p, i, off, newoff - off, end);
            return NULL;
        }
        v = Py_NewRef(PyTuple_GET_ITEM(res, 0));
        Py_DECREF(res);
        off = newoff;
        /* a Python decoder applies its own conversion */
        *offp = off;
        return v;
    }
    default:
        PyErr_SetString(PyExc_SystemError, "bad row-image op");
        return NULL;
    }
#undef NEED
    if (v == NULL) return NULL;
    if (c->conv != NULL && v != Py_None) {
        PyObject *w = PyObject_CallOneArg(c->conv, v);
        Py_DECREF(v);
        v = w;
        if (v == NULL) return NULL;
    }
    *offp = off;
    return v;
}

/* One image (null bitmap + present columns) -> dict; new reference. */
static PyObject *
decode_image(Program *p, PyObject *bufobj, const unsigned char *buf, Py_ssize_t *offp,
             Py_ssize_t end)
{
    Py_ssize_t off = *offp;
    if (end - off < p->null_bytes) {
        short_input(p, -1, off, p->null_bytes, end);
        return NULL;
    }
    const unsigned char *nulls = buf + off;
    off += p->null_bytes;
    PyObject *row = PyDict_New();
    if (row == NULL) return NULL;
    for (Py_ssize_t i = 0; i < p->ncols; i++) {
        PyObject *v;
        if ((nulls[i >> 3] >> (i & 7)) & 1) {
            v = Py_NewRef(Py_None);
        }
        else {
            v = decode_col(p, i, bufobj, buf, &off, end);
            if (v == NULL) {
                Py_DECREF(row);
                return NULL;
            }
        }
        int rc = PyDict_SetItem(row, PyTuple_GET_ITEM(p->names, i), v);
        Py_DECREF(v);
        if (rc < 0) {
            Py_DECREF(row);
            return NULL;
        }
    }
    *offp = off;
    return row;
}

/* ------------------------------------------------------------------ Program */

static void
Program_dealloc(Program *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->cols != NULL) {
        for (Py_ssize_t i = 0; i < self->ncols; i++) {
            Py_XDECREF(self->cols[i].obj);
            Py_XDECREF(self->cols[i].conv);
        }
        PyMem_Free(self->cols);
    }
    Py_XDECREF(self->names);
    Py_XDECREF(self->decimal);
    Py_XDECREF(self->empty);
    Py_XDECREF(self->comma);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int
Program_traverse(Program *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->names);
    Py_VISIT(self->decimal);
    if (self->cols != NULL) {
        for (Py_ssize_t i = 0; i < self->ncols; i++) {
            Py_VISIT(self->cols[i].obj);
            Py_VISIT(self->cols[i].conv);
        }
    }
    return 0;
}

static int
Program_clear(Program *self)
{
    Py_CLEAR(self->decimal);
    Py_CLEAR(self->names);
    if (self->cols != NULL) {
        for (Py_ssize_t i = 0; i < self->ncols; i++) {
            Py_CLEAR(self->cols[i].obj);
            Py_CLEAR(self->cols[i].conv);
        }
    }
    return 0;
}

static int
spec_error(Py_ssize_t i, const char *what)
{
    PyErr_Format(PyExc_ValueError, "column %zd: %s", i, what);
    return -1;
}

static int
check_spec(Py_ssize_t i, Col *c)
{
    switch (c->op) {
    case OP_INT:
        if (!(c->integer.size == 1 || c->integer.size == 2 || c->integer.size == 3 ||
              c->integer.size == 4 || c->integer.size == 8))
            return spec_error(i, "integer size must be 1, 2, 3, 4 or 8");
        return 0;
    case OP_FLOAT:
    case OP_DOUBLE:
    case OP_YEAR:
        return 0;
    case OP_DECIMAL:
        if (c->decimal.precision < 1 || c->decimal.precision > 65 || c->decimal.scale < 0 ||
            c->decimal.scale > 30 || c->decimal.scale > c->decimal.precision)
            return spec_error(i, "decimal precision/scale out of range");
        if (c->obj == NULL || !PyCallable_Check(c->obj))
            return spec_error(i, "decimal needs its Python decoder");
        return 0;
    case OP_STR:
        if (c->text.prefix < 1 || c->text.prefix > 4 || c->text.encoding < 0 || c->text.encoding > 2)
            return spec_error(i, "string prefix 1..4 and encoding 0..2");
        if (c->text.encoding == 1 && (c->obj == NULL || !PyUnicode_Check(c->obj) ||
                          PyUnicode_GET_LENGTH(c->obj) != 256))
            return spec_error(i, "latin1 needs its 256-character decoding table");
        return 0;
    case OP_BYTES:
        if (c->bytes.prefix < 1 || c->bytes.prefix > 4 || c->bytes.pad_to < 0)
            return spec_error(i, "bytes prefix 1..4");
        return 0;
    case OP_ENUM:
    case OP_SET:
        if (c->packed.size < 1 || c->packed.size > 8) return spec_error(i, "enum/set size 1..8");
        if (c->obj == NULL || !PyTuple_Check(c->obj)) return spec_error(i, "labels tuple");
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(c->obj); k++) {
            if (!PyUnicode_Check(PyTuple_GET_ITEM(c->obj, k))) return spec_error(i, "labels are str");
        }
        return 0;
    case OP_BIT:
        if (c->packed.size < 1 || c->packed.size > 8) return spec_error(i, "bit bytes 1..8");
        return 0;
    case OP_DATE:
        if (c->obj == NULL || !PyCallable_Check(c->obj)) return spec_error(i, "date needs zero()");
        return 0;
    case OP_DATETIME2:
    case OP_TIMESTAMP2:
        if (c->obj == NULL || !PyCallable_Check(c->obj)) return spec_error(i, "needs zero()");
        /* fall through */
    case OP_TIME2:
        if (c->temporal.fsp < 0 || c->temporal.fsp > 6) return spec_error(i, "fsp 0..6");
        return 0;
    case OP_PY:
        if (c->obj == NULL || !PyCallable_Check(c->obj)) return spec_error(i, "decoder callable");
        return 0;
    default:
        return spec_error(i, "unknown op");
    }
}

static PyObject *
Program_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"names", "specs", NULL};
    PyObject *names, *specs;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!:Program", kwlist, &PyTuple_Type, &names,
                                     &PyTuple_Type, &specs))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (PyTuple_GET_SIZE(specs) != n) {
        PyErr_SetString(PyExc_ValueError, "one spec per name");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(names, i))) {
            PyErr_SetString(PyExc_TypeError, "column names must be str");
            return NULL;
        }
    }
    ModState *st = state_of_type(type);
    if (st == NULL) return NULL;
    Program *self = (Program *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->decimal = Py_NewRef(st->decimal);
    self->empty = Py_NewRef(st->empty);
    self->comma = Py_NewRef(st->comma);
    self->ncols = 0;
    self->cols = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Col));
    if (self->cols == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->names = Py_NewRef(names);
    self->null_bytes = (n + 7) / 8;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *spec = PyTuple_GET_ITEM(specs, i);
        Col *c = &self->cols[i];
        PyObject *obj, *conv;
        if (!PyTuple_Check(spec) ||
            !PyArg_ParseTuple(spec, "iiiOO;a spec is (op, first, second, obj, conv)", &c->op,
                              &c->spec.first, &c->spec.second,
                              &obj, &conv)) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a spec is a tuple");
            Py_DECREF(self);
            return NULL;
        }
        c->obj = obj == Py_None ? NULL : Py_NewRef(obj);
        c->conv = conv == Py_None ? NULL : Py_NewRef(conv);
        self->ncols = i + 1;
        if (c->conv != NULL && !PyCallable_Check(c->conv)) {
            spec_error(i, "conv must be callable");
            Py_DECREF(self);
            return NULL;
        }
        if (check_spec(i, c) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    self->ncols = n;
    return (PyObject *)self;
}

PyDoc_STRVAR(Program_decode_doc,
"decode(buf, off, end, pairs) -> list\n\n"
"Every row image in buf[off:end]: dicts, or (before, after) tuples when pairs.");

static PyObject *
Program_decode(Program *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "decode(buf, off, end, pairs)");
        return NULL;
    }
    PyObject *bufobj = args[0];
    if (!PyBytes_Check(bufobj)) {
        PyErr_SetString(PyExc_TypeError, "buf must be bytes");
        return NULL;
    }
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    if (off == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred()) return NULL;
    int pairs = PyObject_IsTrue(args[3]);
    if (pairs < 0) return NULL;
    Py_ssize_t size = PyBytes_GET_SIZE(bufobj);
    if (off < 0 || end < off || end > size) {
        PyErr_Format(PyExc_ValueError, "bad range [%zd, %zd) of a %zd-byte buffer", off, end, size);
        return NULL;
    }
    if (self->decimal == NULL || self->names == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a cleared Program cannot decode");
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(bufobj);
    if (off < end && self->ncols == 0) {
        /* an image would take no bytes: the loop below would never end */
        PyErr_SetString(PyExc_ValueError,
                        "malformed rows event: its TableMap has no columns, so a row image "
                        "takes no bytes and the event body cannot be split into rows");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    while (off < end) {
        PyObject *item = decode_image(self, bufobj, buf, &off, end);
        if (item == NULL) goto fail;
        if (pairs) {
            PyObject *after = decode_image(self, bufobj, buf, &off, end);
            if (after == NULL) {
                Py_DECREF(item);
                goto fail;
            }
            PyObject *pair = PyTuple_Pack(2, item, after);
            Py_DECREF(item);
            Py_DECREF(after);
            if (pair == NULL) goto fail;
            item = pair;
        }
        int rc = PyList_Append(out, item);
        Py_DECREF(item);
        if (rc < 0) goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef Program_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))Program_decode, METH_FASTCALL, Program_decode_doc},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Program_slots[] = {
    {Py_tp_doc, "A compiled row-image decoder of one table version: Program(names, specs)."},
    {Py_tp_new, Program_new},
    {Py_tp_dealloc, Program_dealloc},
    {Py_tp_traverse, Program_traverse},
    {Py_tp_clear, Program_clear},
    {Py_tp_methods, Program_methods},
    {0, NULL},
};

static PyType_Spec Program_spec = {
    .name = "connectors.mysql.source._crowimage.Program",
    .basicsize = sizeof(Program),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Program_slots,
};

/* ------------------------------------------------------------------ changes */

static PyObject *
key_of(PyObject *image, PyObject *key_names)
{
    Py_ssize_t n = PyTuple_GET_SIZE(key_names);
    PyObject *key = PyDict_New();
    if (key == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyTuple_GET_ITEM(key_names, i);
        PyObject *v = PyObject_GetItem(image, k);
        if (v == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        int rc = PyDict_SetItem(key, k, v);
        Py_DECREF(v);
        if (rc < 0) {
            Py_DECREF(key);
            return NULL;
        }
    }
    return key;
}

static int
append4(PyObject *out, PyObject *op, PyObject *key, PyObject *before, PyObject *after)
{
    PyObject *t = PyTuple_Pack(4, op, key, before, after);
    if (t == NULL) return -1;
    int rc = PyList_Append(out, t);
    Py_DECREF(t);
    return rc;
}

PyDoc_STRVAR(changes_doc,
"changes(kind, key_names, images, ops) -> list of (op, key, before, after)\n\n"
"binlog._changes in C: kind 0 write, 1 update (images are (before, after) pairs),\n"
"2 delete; ops = (CREATE, UPDATE, DELETE); a key change is a delete and a create.");

static PyObject *
changes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyLong_Check(args[0]) || !PyTuple_Check(args[1]) ||
        !PyList_Check(args[2]) || !PyTuple_Check(args[3]) || PyTuple_GET_SIZE(args[3]) != 3) {
        PyErr_SetString(PyExc_TypeError, "changes(kind: int, key_names: tuple, images: list, ops: 3-tuple)");
        return NULL;
    }
    long kind = PyLong_AsLong(args[0]);
    if (kind == -1 && PyErr_Occurred()) return NULL;
    PyObject *key_names = args[1], *images = args[2];
    PyObject *create = PyTuple_GET_ITEM(args[3], 0), *update = PyTuple_GET_ITEM(args[3], 1),
             *delete = PyTuple_GET_ITEM(args[3], 2);
    int keyed = PyTuple_GET_SIZE(key_names) > 0;
    Py_ssize_t n = PyList_GET_SIZE(images);
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(images) && i < n; i++) {
        PyObject *img = PyList_GET_ITEM(images, i);
        Py_INCREF(img);
        int rc = 0;
        if (kind == 0 || kind == 2) {
            PyObject *key = keyed ? key_of(img, key_names) : Py_NewRef(Py_None);
            if (key == NULL) rc = -1;
            else {
                rc = kind == 0 ? append4(out, create, key, Py_None, img)
                               : append4(out, delete, key, img, Py_None);
                Py_DECREF(key);
            }
        }
        else if (kind == 1) {
            if (!PyTuple_Check(img) || PyTuple_GET_SIZE(img) != 2) {
                PyErr_SetString(PyExc_TypeError, "update images are (before, after) pairs");
                rc = -1;
            }
            else if (!keyed) {
                rc = append4(out, update, Py_None, PyTuple_GET_ITEM(img, 0), PyTuple_GET_ITEM(img, 1));
            }
            else {
                PyObject *before = PyTuple_GET_ITEM(img, 0), *after = PyTuple_GET_ITEM(img, 1);
                PyObject *old_key = key_of(before, key_names);
                PyObject *new_key = old_key ? key_of(after, key_names) : NULL;
                int same = new_key ? PyObject_RichCompareBool(old_key, new_key, Py_EQ) : -1;
                if (same < 0) rc = -1;
                else if (same) rc = append4(out, update, new_key, before, after);
                else {
                    /* Debezium's rule: a key change is a delete of the old key and a create */
                    rc = append4(out, delete, old_key, before, Py_None);
                    if (rc == 0) rc = append4(out, create, new_key, Py_None, after);
                }
                Py_XDECREF(old_key);
                Py_XDECREF(new_key);
            }
        }
        else {
            PyErr_SetString(PyExc_ValueError, "kind must be 0, 1 or 2");
            rc = -1;
        }
        Py_DECREF(img);
        if (rc < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

/* ------------------------------------------------------------------ EventBuilder */

/* EventBuilder(position, source, event, transaction): four positional constructors
 * (cdc._cslots.Maker) of MySqlPosition, SourceInfo, ChangeEvent, TransactionInfo. Called as
 *   builder(op, schema, key, before, after, index, order, last, tx)
 * with tx = (file, pos, gtid_before, gtid_after, gtid, server_id, connector, name,
 *            version, db_version, ts_ms, tx_id, unchanged, vts)
 * it returns (event, position), the fields set exactly as binlog.BinlogReader._event
 * sets them (ts_ms: now, in epoch milliseconds). */
typedef struct {
    PyObject_HEAD
    PyObject *makers[4];
    vectorcallfunc vectorcall;
    PyObject *false_str; /* "false" (SourceInfo.snapshot) */
    PyObject *one;       /* 1 */
} EventBuilder;

enum { TX_FILE, TX_POS, TX_GTID_BEFORE, TX_GTID_AFTER, TX_GTID, TX_SERVER_ID, TX_CONNECTOR,
       TX_NAME, TX_VERSION, TX_DB_VERSION, TX_TS_MS, TX_ID, TX_UNCHANGED, TX_VTS, TX_FIELDS };


static PyObject *
EventBuilder_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    EventBuilder *self = (EventBuilder *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 9 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError,
                        "builder(op, schema, key, before, after, index, order, last, tx)");
        return NULL;
    }
    PyObject *tx = args[8];
    if (self->false_str == NULL || self->makers[0] == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a cleared EventBuilder cannot build");
        return NULL;
    }
    if (!PyTuple_Check(tx) || PyTuple_GET_SIZE(tx) != TX_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "tx must be the 14-tuple of transaction facts");
        return NULL;
    }
    int last = PyObject_IsTrue(args[7]);
    if (last < 0) return NULL;
    PyObject *index = args[5];
    PyObject *last_obj = last ? Py_True : Py_False;
#define TX(i) PyTuple_GET_ITEM(tx, (i))
    PyObject *pargs[9] = {TX(TX_FILE), TX(TX_POS), index,
                          last ? TX(TX_GTID_AFTER) : TX(TX_GTID_BEFORE), TX(TX_GTID),
                          TX(TX_SERVER_ID), Py_False, last_obj, TX(TX_VTS)};
    PyObject *position = PyObject_Vectorcall(self->makers[0], pargs, 9, NULL);
    if (position == NULL) return NULL;
    PyObject *sargs[9] = {TX(TX_CONNECTOR), TX(TX_NAME), TX(TX_VERSION), TX(TX_DB_VERSION),
                          position, TX(TX_TS_MS), TX(TX_GTID), self->false_str, Py_None};
    PyObject *source = PyObject_Vectorcall(self->makers[1], sargs, 9, NULL);
    PyObject *total = NULL, *txinfo = NULL, *now = NULL, *event = NULL, *result = NULL;
    if (source == NULL) goto done;
    total = PyNumber_Add(index, self->one);
    if (total == NULL) goto done;
    PyObject *targs[3] = {TX(TX_ID), total, args[6]};
    txinfo = PyObject_Vectorcall(self->makers[3], targs, 3, NULL);
    if (txinfo == NULL) goto done;
    struct timespec ts;
    if (timespec_get(&ts, TIME_UTC) != TIME_UTC) {
        PyErr_SetString(PyExc_OSError, "timespec_get failed");
        goto done;
    }
    now = PyLong_FromLongLong((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    if (now == NULL) goto done;
    PyObject *eargs[9] = {args[0], args[1], args[2], args[3], args[4], source, now, txinfo,
                          TX(TX_UNCHANGED)};
    event = PyObject_Vectorcall(self->makers[2], eargs, 9, NULL);
    if (event == NULL) goto done;
    result = PyTuple_Pack(2, event, position);
#undef TX
done:
    Py_XDECREF(event);
    Py_XDECREF(now);
    Py_XDECREF(txinfo);
    Py_XDECREF(total);
    Py_XDECREF(source);
    Py_DECREF(position);
    return result;
}

static PyObject *
EventBuilder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *m[4];
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "EventBuilder takes positional arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OOOO:EventBuilder", &m[0], &m[1], &m[2], &m[3]))
        return NULL;
    for (int i = 0; i < 4; i++) {
        if (!PyCallable_Check(m[i])) {
            PyErr_Format(PyExc_TypeError, "maker %d is not callable", i);
            return NULL;
        }
    }
    ModState *st = state_of_type(type);
    if (st == NULL) return NULL;
    EventBuilder *self = (EventBuilder *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    for (int i = 0; i < 4; i++) self->makers[i] = Py_NewRef(m[i]);
    self->false_str = Py_NewRef(st->false_str);
    self->one = Py_NewRef(st->one);
    self->vectorcall = EventBuilder_vectorcall;
    return (PyObject *)self;
}

static int
EventBuilder_traverse(EventBuilder *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    for (int i = 0; i < 4; i++) Py_VISIT(self->makers[i]);
    return 0;
}

static int
EventBuilder_clear(EventBuilder *self)
{
    for (int i = 0; i < 4; i++) Py_CLEAR(self->makers[i]);
    Py_CLEAR(self->false_str);
    Py_CLEAR(self->one);
    return 0;
}

static void
EventBuilder_dealloc(EventBuilder *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    EventBuilder_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMemberDef EventBuilder_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(EventBuilder, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot EventBuilder_slots[] = {
    {Py_tp_doc, "EventBuilder(position, source, event, transaction makers): builds a binlog "
                "ChangeEvent and its position in one call."},
    {Py_tp_new, EventBuilder_new},
    {Py_tp_dealloc, EventBuilder_dealloc},
    {Py_tp_traverse, EventBuilder_traverse},
    {Py_tp_clear, EventBuilder_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, EventBuilder_members},
    {0, NULL},
};

static PyType_Spec EventBuilder_spec = {
    .name = "connectors.mysql.source._crowimage.EventBuilder",
    .basicsize = sizeof(EventBuilder),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = EventBuilder_slots,
};

static PyMethodDef module_methods[] = {
    {"changes", (PyCFunction)(void (*)(void))changes, METH_FASTCALL, changes_doc},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------ module */

static int
module_exec(PyObject *m)
{
    ModState *st = (ModState *)PyModule_GetState(m);
    /* the datetime C API capsule (process-wide, as for every extension using it) */
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return -1;
    PyObject *decimal = PyImport_ImportModule("decimal");
    if (decimal == NULL) return -1;
    st->decimal = PyObject_GetAttrString(decimal, "Decimal");
    Py_DECREF(decimal);
    if (st->decimal == NULL) return -1;
    st->empty = PyUnicode_FromString("");
    st->comma = PyUnicode_FromString(",");
    st->false_str = PyUnicode_InternFromString("false");
    st->one = PyLong_FromLong(1);
    if (st->empty == NULL || st->comma == NULL || st->false_str == NULL || st->one == NULL)
        return -1;
    st->program_type = PyType_FromModuleAndSpec(m, &Program_spec, NULL);
    if (st->program_type == NULL) return -1;
    st->builder_type = PyType_FromModuleAndSpec(m, &EventBuilder_spec, NULL);
    if (st->builder_type == NULL) return -1;
    if (PyModule_AddObjectRef(m, "EventBuilder", st->builder_type) < 0) return -1;
    if (PyModule_AddObjectRef(m, "Program", st->program_type) < 0) return -1;
    struct { const char *name; int value; } ops[] = {
        {"OP_INT", OP_INT}, {"OP_FLOAT", OP_FLOAT}, {"OP_DOUBLE", OP_DOUBLE},
        {"OP_DECIMAL", OP_DECIMAL}, {"OP_STR", OP_STR}, {"OP_BYTES", OP_BYTES},
        {"OP_ENUM", OP_ENUM}, {"OP_SET", OP_SET}, {"OP_BIT", OP_BIT}, {"OP_DATE", OP_DATE},
        {"OP_DATETIME2", OP_DATETIME2}, {"OP_TIMESTAMP2", OP_TIMESTAMP2},
        {"OP_TIME2", OP_TIME2}, {"OP_YEAR", OP_YEAR}, {"OP_PY", OP_PY},
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (PyModule_AddIntConstant(m, ops[i].name, ops[i].value) < 0) return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *m, visitproc visit, void *arg)
{
    ModState *st = (ModState *)PyModule_GetState(m);
    if (st == NULL) return 0;
    Py_VISIT(st->decimal);
    Py_VISIT(st->empty);
    Py_VISIT(st->comma);
    Py_VISIT(st->false_str);
    Py_VISIT(st->one);
    Py_VISIT(st->program_type);
    Py_VISIT(st->builder_type);
    return 0;
}

static int
module_clear(PyObject *m)
{
    ModState *st = (ModState *)PyModule_GetState(m);
    if (st == NULL) return 0;
    Py_CLEAR(st->decimal);
    Py_CLEAR(st->empty);
    Py_CLEAR(st->comma);
    Py_CLEAR(st->false_str);
    Py_CLEAR(st->one);
    Py_CLEAR(st->program_type);
    Py_CLEAR(st->builder_type);
    return 0;
}

static void
module_free(void *m)
{
    module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters
    /* the datetime C API it uses is not per-interpreter */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "connectors.mysql.source._crowimage",
    .m_doc = "Native binlog row-image decoder (see rowimage.py, the reference).",
    .m_size = sizeof(ModState),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__crowimage(void)
{
    return PyModuleDef_Init(&module_def);
}
