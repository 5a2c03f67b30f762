/*
 * Native Avro encoding of row images and change envelopes (one concern, one C
 * extension module).
 *
 * Mirrors the generated Python fast path of cdc/serde/encode.py (RowEncoder._fast and
 * TableEncoder.encode_value) for rows whose values are the common canonical types.
 * Anything else raises SlowPath, and the Python code re-encodes the row on its checked
 * path, which owns every error message: this file never decides that a value is wrong,
 * only that it is not the easy case. SlowPath is the only "not handled here" signal:
 * every other exception (MemoryError, KeyboardInterrupt, an error of a mapping or a
 * fallback) propagates unchanged.
 *
 * A RowProgram is immutable once built (its fields are set in __new__; __init__ does
 * nothing), so a fallback that calls back into it cannot free what an encode walks; it
 * is GC-tracked, since its fallbacks may refer back to it.
 *
 * Wire format (Avro 1.11 binary): zig-zag varints for int/long, length-prefixed
 * strings/bytes, union = branch index then value, record = fields back to back.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <limits.h>
#include <string.h>

enum {
    OP_CALL = 0,
    OP_BOOLEAN = 1,
    OP_INT = 2,
    OP_STRING = 3,
    OP_BYTES = 4,
    OP_DOUBLE = 5,
    OP_DATE = 6,
    OP_TIMESTAMP = 7,
    OP_TIMESTAMPTZ = 8,
    OP_DECIMAL = 9, /* lo = scale, hi = precision */
};

static PyObject *DecimalType; /* decimal.Decimal */

static PyObject *SlowPath; /* cdc.serde._cencode.SlowPath */

/* ------------------------------------------------------------------ output buffer */

typedef struct {
    char *p;
    Py_ssize_t len;
    Py_ssize_t cap;
    char stack[2048];
} Buf;

static void buf_init(Buf *b) {
    b->p = b->stack;
    b->len = 0;
    b->cap = (Py_ssize_t)sizeof(b->stack);
}

static void buf_free(Buf *b) {
    if (b->p != b->stack) PyMem_Free(b->p);
}

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + extra) cap *= 2;
    char *p;
    if (b->p == b->stack) {
        p = PyMem_Malloc((size_t)cap);
        if (p != NULL) memcpy(p, b->stack, (size_t)b->len);
    } else {
        p = PyMem_Realloc(b->p, (size_t)cap);
    }
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int put_byte(Buf *b, char c) {
    if (buf_reserve(b, 1) < 0) return -1;
    b->p[b->len++] = c;
    return 0;
}

static inline int put_raw(Buf *b, const char *s, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

static inline int put_long(Buf *b, long long n) {
    if (buf_reserve(b, 10) < 0) return -1;
    unsigned long long z = ((unsigned long long)n << 1) ^ (unsigned long long)(n >> 63);
    char *o = b->p + b->len;
    while (z >= 0x80) {
        *o++ = (char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    *o++ = (char)z;
    b->len = o - b->p;
    return 0;
}

static inline int put_string(Buf *b, const char *s, Py_ssize_t n) {
    if (put_long(b, (long long)n) < 0) return -1;
    return put_raw(b, s, n);
}

static PyObject *buf_bytes(Buf *b) {
    return PyBytes_FromStringAndSize(b->p, b->len);
}

static int slow(void) {
    PyErr_SetNone(SlowPath);
    return -1;
}

/* ------------------------------------------------------------------ calendar */

/* Days from 1970-01-01 to a proleptic Gregorian date (valid for years 1..9999). */
static long long days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* ------------------------------------------------------------------ row programs */

typedef struct {
    PyObject *name;     /* column name (str) */
    PyObject *fallback; /* callable(value) -> bytes, for OP_CALL and non-common temporals */
    PyObject *absent;   /* bytes written when a before image lacks the column */
    long long lo, hi;   /* OP_INT range */
    int nullable;
    int op;
} Field;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    Field *fields;
} RowProgram;

static void RowProgram_free_fields(RowProgram *self) {
    Field *fields = self->fields;
    Py_ssize_t n = self->n;
    self->fields = NULL;
    self->n = 0;
    if (fields == NULL) return;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(fields[i].name);
        Py_XDECREF(fields[i].fallback);
        Py_XDECREF(fields[i].absent);
    }
    PyMem_Free(fields);
}

static int RowProgram_traverse(RowProgram *self, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Py_VISIT(self->fields[i].name);
        Py_VISIT(self->fields[i].fallback);
        Py_VISIT(self->fields[i].absent);
    }
    return 0;
}

static int RowProgram_clear(RowProgram *self) {
    RowProgram_free_fields(self);
    return 0;
}

static void RowProgram_dealloc(RowProgram *self) {
    PyObject_GC_UnTrack(self);
    RowProgram_free_fields(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* RowProgram(fields): a sequence of (name, nullable, op, lo, hi, fallback, absent). */
static PyObject *RowProgram_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *spec;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "RowProgram takes one positional argument");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O:RowProgram", &spec)) return NULL;
    /* a tuple copy: parsing the items below cannot change what we walk */
    PyObject *seq = PySequence_Tuple(spec);
    if (seq == NULL) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    Field *fields = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(Field));
    if (fields == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(seq, i);
        PyObject *name, *fallback, *absent;
        int nullable, op;
        long long lo, hi;
        if (!PyTuple_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "a RowProgram field is a tuple");
            goto fail;
        }
        if (!PyArg_ParseTuple(item, "UpiLLOS:RowProgram field", &name, &nullable, &op, &lo, &hi,
                              &fallback, &absent)) {
            goto fail;
        }
        if (op < OP_CALL || op > OP_DECIMAL) {
            PyErr_Format(PyExc_ValueError, "unknown opcode %d", op);
            goto fail;
        }
        if (!PyCallable_Check(fallback)) {
            PyErr_SetString(PyExc_TypeError, "a field's fallback must be callable");
            goto fail;
        }
        fields[i].absent = Py_NewRef(absent);
        fields[i].name = Py_NewRef(name);
        fields[i].fallback = Py_NewRef(fallback);
        fields[i].nullable = nullable;
        fields[i].op = op;
        fields[i].lo = lo;
        fields[i].hi = hi;
        continue;
    fail:
        for (Py_ssize_t j = 0; j < i; j++) {
            Py_DECREF(fields[j].name);
            Py_DECREF(fields[j].fallback);
            Py_DECREF(fields[j].absent);
        }
        PyMem_Free(fields);
        Py_DECREF(seq);
        return NULL;
    }
    Py_DECREF(seq);
    RowProgram *self = (RowProgram *)type->tp_alloc(type, 0);
    if (self == NULL) {
        for (Py_ssize_t j = 0; j < n; j++) {
            Py_DECREF(fields[j].name);
            Py_DECREF(fields[j].fallback);
            Py_DECREF(fields[j].absent);
        }
        PyMem_Free(fields);
        return NULL;
    }
    self->fields = fields;
    self->n = n;
    return (PyObject *)self;
}

static int put_fallback(Buf *b, const Field *f, PyObject *v) {
    PyObject *r = PyObject_CallOneArg(f->fallback, v);
    if (r == NULL) return -1;
    if (!PyBytes_Check(r)) {
        Py_DECREF(r);
        return slow();
    }
    int rc = put_raw(b, PyBytes_AS_STRING(r), PyBytes_GET_SIZE(r));
    Py_DECREF(r);
    return rc;
}

/*
 * A Decimal of a decimal(precision, scale) column as Avro's unscaled big-endian two's
 * complement bytes. Handles the plain text form with at most 18 significant digits;
 * 1 = not handled (exponent form, NaN, too many digits: the Python encoder decides).
 */
static int put_decimal_text(Buf *b, const Field *f, const char *s, Py_ssize_t n);

static int put_decimal(Buf *b, const Field *f, PyObject *v) {
    PyObject *text = PyObject_Str(v);
    if (text == NULL) return -1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL) {
        Py_DECREF(text);
        return -1;
    }
    int rc = put_decimal_text(b, f, s, n);
    Py_DECREF(text);
    return rc;
}

/* The plain decimal text s[0:n] (sign, digits, one point) as put_decimal; 1 = not handled. */
static int put_decimal_text(Buf *b, const Field *f, const char *s, Py_ssize_t n) {
    int scale = (int)f->lo, precision = (int)f->hi;
    long long unscaled = 0;
    int digits = 0, frac = -1, neg = 0, rc = 1, seen = 0;
    Py_ssize_t i = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i == n) goto out;
    for (; i < n; i++) {
        char c = s[i];
        if (c == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (c < '0' || c > '9') goto out; /* exponent, NaN, Infinity */
        seen = 1;
        if (frac >= 0) {
            if (frac >= scale) {
                if (c != '0') goto out; /* more fractional digits than the scale */
                continue;
            }
            frac++;
        }
        if (unscaled == 0 && c == '0') continue;
        if (++digits > 18) goto out;
        unscaled = unscaled * 10 + (c - '0');
    }
    if (!seen) goto out; /* "." or "-.": not a number */
    for (int k = frac < 0 ? 0 : frac; k < scale; k++) {
        if (unscaled != 0 && ++digits > 18) goto out;
        unscaled *= 10;
    }
    if (digits > precision) goto out;
    if (neg) unscaled = -unscaled;
    /* minimal two's complement length: (bit_length(|n|) + 8) // 8, as int.to_bytes */
    unsigned long long mag = unscaled < 0 ? (unsigned long long)(-unscaled) : (unsigned long long)unscaled;
    int bits = 0;
    while (mag) {
        bits++;
        mag >>= 1;
    }
    int len = (bits + 8) / 8;
    char out[9];
    unsigned long long u = (unsigned long long)unscaled;
    for (int k = len - 1; k >= 0; k--) {
        out[k] = (char)(u & 0xFF);
        u >>= 8;
    }
    rc = put_string(b, out, len);
out:
    return rc;
}

static int put_value(Buf *b, const Field *f, PyObject *v) {
    switch (f->op) {
    case OP_BOOLEAN:
        if (v == Py_True) return put_byte(b, 1);
        if (v == Py_False) return put_byte(b, 0);
        return slow();
    case OP_INT: {
        if (!PyLong_Check(v)) return slow();
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred()) return -1;
        if (overflow || x < f->lo || x > f->hi) return slow();
        return put_long(b, x);
    }
    case OP_STRING: {
        if (!PyUnicode_Check(v)) return slow();
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
            PyErr_Clear(); /* lone surrogates: the checked path reports them */
            return slow();
        }
        return put_string(b, s, n);
    }
    case OP_BYTES:
        if (!PyBytes_Check(v)) return slow();
        return put_string(b, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    case OP_DOUBLE: {
        if (!PyFloat_Check(v)) return slow();
        if (buf_reserve(b, 8) < 0) return -1;
        if (PyFloat_Pack8(PyFloat_AS_DOUBLE(v), b->p + b->len, 1) < 0) return -1;
        b->len += 8;
        return 0;
    }
    case OP_DATE:
        if (PyDate_CheckExact(v)) {
            return put_long(b, days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v),
                                               PyDateTime_GET_DAY(v)));
        }
        return put_fallback(b, f, v);
    case OP_TIMESTAMP:
    case OP_TIMESTAMPTZ: {
        if (!PyDateTime_CheckExact(v)) return put_fallback(b, f, v);
        PyObject *tz = PyDateTime_DATE_GET_TZINFO(v);
        int y = PyDateTime_GET_YEAR(v), mo = PyDateTime_GET_MONTH(v), d = PyDateTime_GET_DAY(v);
        int h = PyDateTime_DATE_GET_HOUR(v), mi = PyDateTime_DATE_GET_MINUTE(v);
        int s = PyDateTime_DATE_GET_SECOND(v), us = PyDateTime_DATE_GET_MICROSECOND(v);
        if (f->op == OP_TIMESTAMP) {
            if (tz != Py_None) return put_fallback(b, f, v);
            long long secs = days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL + s;
            return put_long(b, secs * 1000000LL + us);
        }
        if (tz != PyDateTime_TimeZone_UTC) return put_fallback(b, f, v);
        /* datetime.isoformat() of a UTC value, "+00:00" written as "Z" */
        char text[40];
        int n;
        if (us) {
            n = snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", y, mo, d, h,
                         mi, s, us);
        } else {
            n = snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, mo, d, h, mi, s);
        }
        return put_string(b, text, n);
    }
    case OP_DECIMAL:
        if (Py_TYPE(v) == (PyTypeObject *)DecimalType) {
            int rc = put_decimal(b, f, v);
            if (rc <= 0) return rc;
        }
        return put_fallback(b, f, v);
    default:
        return put_fallback(b, f, v);
    }
}

/*
 * Write a row. With ``absent`` (a list), a column the row lacks is written as its
 * placeholder and its name appended; without it, a missing column is the slow path.
 */
static int put_row(Buf *b, const RowProgram *prog, PyObject *row, PyObject *absent) {
    int is_dict = PyDict_CheckExact(row);
    Py_ssize_t size = is_dict ? PyDict_GET_SIZE(row) : PyObject_Size(row);
    if (size < 0) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) return -1;
        PyErr_Clear(); /* not a sized mapping: the checked path says what it is */
        return slow();
    }
    if (absent == NULL ? size != prog->n : size > prog->n) return slow();
    Py_ssize_t found = 0;
    for (Py_ssize_t i = 0; i < prog->n; i++) {
        const Field *f = &prog->fields[i];
        PyObject *v;
        if (is_dict) {
            v = PyDict_GetItemWithError(row, f->name); /* borrowed */
            if (v == NULL && PyErr_Occurred()) return -1;
            Py_XINCREF(v);
        } else {
            v = PyObject_GetItem(row, f->name);
            if (v == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_KeyError)) return -1;
                PyErr_Clear(); /* the column is missing */
            }
        }
        if (v == NULL) {
            if (absent == NULL) return slow();
            if (PyList_Append(absent, f->name) < 0) return -1;
            if (put_raw(b, PyBytes_AS_STRING(f->absent), PyBytes_GET_SIZE(f->absent)) < 0) {
                return -1;
            }
            continue;
        }
        found++;
        int rc;
        if (f->nullable) {
            if (v == Py_None) {
                rc = put_byte(b, 0);
            } else {
                rc = put_byte(b, 2);
                if (rc == 0) rc = put_value(b, f, v);
            }
        } else if (v == Py_None) {
            rc = slow();
        } else {
            rc = put_value(b, f, v);
        }
        Py_DECREF(v);
        if (rc < 0) return -1;
    }
    if (found != size) return slow(); /* columns the schema lacks */
    return 0;
}

static int put_prefix(Buf *b, PyObject *prefix) {
    if (prefix == NULL || prefix == Py_None) return 0;
    if (!PyBytes_Check(prefix)) {
        PyErr_SetString(PyExc_TypeError, "prefix must be bytes");
        return -1;
    }
    return put_raw(b, PyBytes_AS_STRING(prefix), PyBytes_GET_SIZE(prefix));
}

/* RowProgram.encode(row, prefix=b"") -> bytes */
static PyObject *RowProgram_encode(RowProgram *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "encode(row, prefix=b'')");
        return NULL;
    }
    Buf b;
    buf_init(&b);
    PyObject *out = NULL;
    if (put_prefix(&b, nargs == 2 ? args[1] : NULL) == 0 && put_row(&b, self, args[0], NULL) == 0) {
        out = buf_bytes(&b);
    }
    buf_free(&b);
    return out;
}

static PyMethodDef RowProgram_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))RowProgram_encode, METH_FASTCALL,
     "encode(row, prefix=b'') -> bytes: the Avro record of a full row (SlowPath if unusual)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RowProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cdc.serde._cencode.RowProgram",
    .tp_basicsize = sizeof(RowProgram),
    .tp_dealloc = (destructor)RowProgram_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A compiled row encoder (immutable): RowProgram([(name, nullable, op, lo, hi, "
              "fallback, absent), ...])",
    .tp_methods = RowProgram_methods,
    .tp_new = RowProgram_new,
    .tp_traverse = (traverseproc)RowProgram_traverse,
    .tp_clear = (inquiry)RowProgram_clear,
};

/* ------------------------------------------------------------------ envelopes */

static int put_image(Buf *b, PyObject *prog, PyObject *row, PyObject *absent) {
    if (row == Py_None) return put_byte(b, 0);
    if (put_byte(b, 2) < 0) return -1;
    return put_row(b, (RowProgram *)prog, row, absent);
}

/* A sorted [null, array<string>] of names: null when there are none. */
static int put_names(Buf *b, PyObject *names) {
    Py_ssize_t n = PyList_GET_SIZE(names);
    if (n == 0) return put_byte(b, 0);
    if (PyList_Sort(names) < 0) return -1;
    if (put_byte(b, 2) < 0 || put_long(b, n) < 0) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(names, i), &len);
        if (s == NULL || put_string(b, s, len) < 0) return -1;
    }
    return put_byte(b, 0);
}

/*
 * encode_envelope(program, prefix, before, after, source, tx, op, ts_ms) -> bytes
 *
 * The common envelope: no unchanged columns and no special values (those trailing
 * fields are null); a before image may lack columns (a delete's key-only image). ``source`` is the encoded source record,
 * ``op`` the encoded op string, ``tx`` None or (id, total_order, data_collection_order).
 */
static PyObject *encode_envelope(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_envelope(program, prefix, before, after, source, tx, op, ts_ms)");
        return NULL;
    }
    PyObject *prog = args[0], *source = args[4], *tx = args[5], *op = args[6];
    if (!PyObject_TypeCheck(prog, &RowProgramType)) {
        PyErr_SetString(PyExc_TypeError, "program must be a RowProgram");
        return NULL;
    }
    if (!PyBytes_Check(source) || !PyBytes_Check(op)) {
        PyErr_SetString(PyExc_TypeError, "source and op must be bytes");
        return NULL;
    }
    long long ts_ms = PyLong_AsLongLong(args[7]);
    if (ts_ms == -1 && PyErr_Occurred()) return NULL;
    PyObject *absent = PyList_New(0);
    if (absent == NULL) return NULL;
    Buf b;
    buf_init(&b);
    PyObject *out = NULL;
    if (put_prefix(&b, args[1]) < 0) goto done;
    if (put_image(&b, prog, args[2], absent) < 0) goto done;
    if (put_image(&b, prog, args[3], NULL) < 0) goto done;
    if (put_raw(&b, PyBytes_AS_STRING(source), PyBytes_GET_SIZE(source)) < 0) goto done;
    if (tx == Py_None) {
        if (put_byte(&b, 0) < 0) goto done;
    } else {
        PyObject *id;
        long long total, order;
        if (!PyArg_ParseTuple(tx, "ULL:transaction", &id, &total, &order)) goto done;
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(id, &n);
        if (s == NULL) goto done;
        if (put_byte(&b, 2) < 0 || put_string(&b, s, n) < 0 || put_long(&b, total) < 0 ||
            put_long(&b, order) < 0) {
            goto done;
        }
    }
    if (put_raw(&b, PyBytes_AS_STRING(op), PyBytes_GET_SIZE(op)) < 0) goto done;
    if (put_byte(&b, 2) < 0 || put_long(&b, ts_ms) < 0) goto done;
    if (put_byte(&b, 0) < 0 || put_names(&b, absent) < 0 || put_byte(&b, 0) < 0) goto done;
    out = buf_bytes(&b); /* unchanged (null), before's absent columns, specials (null) */
done:
    buf_free(&b);
    Py_DECREF(absent);
    return out;
}

/*
 * source_with_index(pre, head, index, tail, post) -> bytes
 *
 * A source record whose only per-event part is a text holding one integer
 * (the event's index in its transaction), written as a ["null", "string"]
 * union's string branch: pre + 0x02 + length + head + decimal(index) + tail +
 * post. A connector's source writer builds pre/head/tail/post once per
 * transaction (cdc/serde/sourceblock.py is the reference).
 */
/* The bytes of source_with_index(pre, head, index, tail, post) appended to b. */
static int put_source(Buf *b, PyObject *pre, PyObject *head, long long index, PyObject *tail,
                      PyObject *post) {
    char digits[32];
    int digits_n = snprintf(digits, sizeof digits, "%lld", index);
    Py_ssize_t head_n = PyBytes_GET_SIZE(head), tail_n = PyBytes_GET_SIZE(tail);
    if (put_raw(b, PyBytes_AS_STRING(pre), PyBytes_GET_SIZE(pre)) < 0 || put_byte(b, 2) < 0 ||
        put_long(b, head_n + digits_n + tail_n) < 0 ||
        put_raw(b, PyBytes_AS_STRING(head), head_n) < 0 || put_raw(b, digits, digits_n) < 0 ||
        put_raw(b, PyBytes_AS_STRING(tail), tail_n) < 0 ||
        put_raw(b, PyBytes_AS_STRING(post), PyBytes_GET_SIZE(post)) < 0) {
        return -1;
    }
    return 0;
}

static PyObject *source_with_index(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1]) ||
        !PyBytes_Check(args[3]) || !PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "source_with_index(pre: bytes, head: bytes, index: int, tail: bytes, "
                        "post: bytes)");
        return NULL;
    }
    long long index = PyLong_AsLongLong(args[2]);
    if (index == -1 && PyErr_Occurred()) return NULL;
    Buf b;
    buf_init(&b);
    PyObject *out = NULL;
    if (put_source(&b, args[0], args[1], index, args[3], args[4]) == 0) out = buf_bytes(&b);
    buf_free(&b);
    return out;
}

/*
 * sources_with_index(pre, head, start, count, tail, post) -> list[bytes]
 *
 * source_with_index for the indexes start .. start + count - 1, in order: the
 * source records of a snapshot batch, without a Python call per row.
 */
static PyObject *sources_with_index(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1]) ||
        !PyBytes_Check(args[4]) || !PyBytes_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError,
                        "sources_with_index(pre: bytes, head: bytes, start: int, count: int, "
                        "tail: bytes, post: bytes)");
        return NULL;
    }
    long long start = PyLong_AsLongLong(args[2]);
    if (start == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t count = PyLong_AsSsize_t(args[3]);
    if (count == -1 && PyErr_Occurred()) return NULL;
    if (count < 0) {
        PyErr_SetString(PyExc_ValueError, "sources_with_index: count must not be negative");
        return NULL;
    }
    if (count > 0 && start > LLONG_MAX - (long long)(count - 1)) {
        PyErr_SetString(PyExc_OverflowError, "sources_with_index: an index beyond 64 bits");
        return NULL;
    }
    PyObject *out = PyList_New(count);
    if (out == NULL) return NULL;
    Buf b;
    buf_init(&b);
    for (Py_ssize_t i = 0; i < count; i++) {
        b.len = 0;
        PyObject *one = NULL;
        if (put_source(&b, args[0], args[1], start + (long long)i, args[4], args[5]) == 0)
            one = buf_bytes(&b);
        if (one == NULL) {
            buf_free(&b);
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, one);
    }
    buf_free(&b);
    return out;
}

/* zigzag(n) -> bytes: one Avro long (OverflowError outside the signed 64-bit range). */
static PyObject *zigzag(PyObject *module, PyObject *arg) {
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    Buf b;
    buf_init(&b);
    put_long(&b, n);
    return buf_bytes(&b);
}


/* ------------------------------------------------------------------ rows of text values */

/*
 * A text form says what a column's text is, so that its common spelling can be
 * written without the Python value (cdc.spi.TextForm documents each; the field's op
 * must agree, which cdc/serde/encode.py checks when it builds the plan). Anything
 * not in the form's plain spelling goes through the column's converter and put_value,
 * exactly as the per-row path does.
 */
enum {
    FORM_CALL = 0,      /* converter(text), then put_value */
    FORM_SAME = 1,      /* the text is the value (OP_STRING) */
    FORM_INT = 2,       /* [-]digits (OP_INT) */
    FORM_BOOL = 3,      /* "t" / "f" (OP_BOOLEAN) */
    FORM_DECIMAL = 4,   /* [-]digits[.digits] (OP_DECIMAL) */
    FORM_DATE = 5,      /* YYYY-MM-DD (OP_DATE) */
    FORM_TIMESTAMP = 6, /* YYYY-MM-DD HH:MM:SS[.f{1,6}] (OP_TIMESTAMP) */
    FORM_DOUBLE = 7,    /* what float() reads (OP_DOUBLE) */
};

static int two(const char *s, int *out) {
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') return 0;
    *out = (s[0] - '0') * 10 + (s[1] - '0');
    return 1;
}

/* YYYY-MM-DD at s (10 bytes), a real calendar date of years 1..9999. */
static int iso_date(const char *s, int *y, int *m, int *d) {
    int hi, lo;
    if (!two(s, &hi) || !two(s + 2, &lo) || s[4] != '-' || !two(s + 5, m) || s[7] != '-' ||
        !two(s + 8, d)) {
        return 0;
    }
    *y = hi * 100 + lo;
    if (*y < 1 || *m < 1 || *m > 12 || *d < 1) return 0;
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (*y % 4 == 0 && *y % 100 != 0) || *y % 400 == 0;
    return *d <= days[*m - 1] + (*m == 2 && leap);
}

/* 1 = written, 0 = not the plain spelling (the caller converts), -1 = error. */
static int put_text_plain(Buf *b, const Field *f, int form, const char *s, Py_ssize_t n) {
    switch (form) {
    case FORM_SAME:
        return put_string(b, s, n) < 0 ? -1 : 1;
    case FORM_INT: {
        Py_ssize_t i = 0;
        int neg = 0;
        if (n > 0 && s[0] == '-') {
            neg = 1;
            i = 1;
        }
        if (i == n || n - i > 18) return 0; /* 18 digits cannot overflow a long long */
        long long x = 0;
        for (; i < n; i++) {
            if (s[i] < '0' || s[i] > '9') return 0;
            x = x * 10 + (s[i] - '0');
        }
        if (neg) x = -x;
        if (x < f->lo || x > f->hi) return 0;
        return put_long(b, x) < 0 ? -1 : 1;
    }
    case FORM_BOOL:
        if (n == 1 && (s[0] == 't' || s[0] == 'f')) return put_byte(b, s[0] == 't') < 0 ? -1 : 1;
        return 0;
    case FORM_DECIMAL: {
        int rc = put_decimal_text(b, f, s, n);
        return rc < 0 ? -1 : rc == 0;
    }
    case FORM_DATE: {
        int y, m, d;
        if (n != 10 || !iso_date(s, &y, &m, &d)) return 0;
        return put_long(b, days_from_civil(y, m, d)) < 0 ? -1 : 1;
    }
    case FORM_TIMESTAMP: {
        int y, mo, d, h, mi, sec, us = 0;
        if (n < 19 || !iso_date(s, &y, &mo, &d) || s[10] != ' ' || !two(s + 11, &h) ||
            s[13] != ':' || !two(s + 14, &mi) || s[16] != ':' || !two(s + 17, &sec) || h > 23 ||
            mi > 59 || sec > 59) {
            return 0;
        }
        if (n > 19) {
            if (s[19] != '.' || n < 21 || n > 26) return 0;
            int scale = 100000;
            for (Py_ssize_t i = 20; i < n; i++, scale /= 10) {
                if (s[i] < '0' || s[i] > '9') return 0;
                us += (s[i] - '0') * scale;
            }
        }
        long long secs = days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL + sec;
        return put_long(b, secs * 1000000LL + us) < 0 ? -1 : 1;
    }
    case FORM_DOUBLE: {
        if (n == 0 || n > 64) return 0;
        char tmp[65];
        memcpy(tmp, s, (size_t)n);
        tmp[n] = '\0';
        char *end = NULL;
        double x = PyOS_string_to_double(tmp, &end, NULL);
        if (x == -1.0 && PyErr_Occurred()) {
            PyErr_Clear(); /* not a number: float() raises the same, on the slow path */
            return 0;
        }
        if (end != tmp + n) return 0;
        if (buf_reserve(b, 8) < 0) return -1;
        if (PyFloat_Pack8(x, b->p + b->len, 1) < 0) return -1;
        b->len += 8;
        return 1;
    }
    default:
        return 0;
    }
}

/* One field of a text row: v is the column's text (str) or None. */
static int put_text_field(Buf *b, const Field *f, int form, PyObject *conv, PyObject *v) {
    if (v == Py_None) return f->nullable ? put_byte(b, 0) : slow();
    if (f->nullable && put_byte(b, 2) < 0) return -1;
    if (form != FORM_CALL && PyUnicode_Check(v)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
            PyErr_Clear();
            return slow();
        }
        int rc = put_text_plain(b, f, form, s, n);
        if (rc != 0) return rc < 0 ? -1 : 0;
    }
    PyObject *value = PyUnicode_Check(v) ? PyObject_CallOneArg(conv, v) : Py_NewRef(v);
    if (value == NULL) return -1;
    int rc = put_value(b, f, value);
    Py_DECREF(value);
    return rc;
}

/* A plan: (program, forms, converters, columns) with one entry per program field. */
typedef struct {
    RowProgram *prog;
    PyObject *forms, *convs, *cols; /* tuples */
} Plan;

static int get_plan(PyObject *spec, Plan *p) {
    PyObject *prog;
    if (!PyArg_ParseTuple(spec, "OO!O!O!:plan", &prog, &PyTuple_Type, &p->forms, &PyTuple_Type,
                          &p->convs, &PyTuple_Type, &p->cols)) {
        return -1;
    }
    if (!PyObject_TypeCheck(prog, &RowProgramType)) {
        PyErr_SetString(PyExc_TypeError, "a plan's program must be a RowProgram");
        return -1;
    }
    p->prog = (RowProgram *)prog;
    Py_ssize_t n = p->prog->n;
    if (PyTuple_GET_SIZE(p->forms) != n || PyTuple_GET_SIZE(p->convs) != n ||
        PyTuple_GET_SIZE(p->cols) != n) {
        PyErr_SetString(PyExc_ValueError, "a plan needs one form, converter and column per field");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *form = PyTuple_GET_ITEM(p->forms, i), *col = PyTuple_GET_ITEM(p->cols, i);
        if (!PyLong_Check(form) || !PyLong_Check(col) || !PyCallable_Check(PyTuple_GET_ITEM(p->convs, i))) {
            PyErr_SetString(PyExc_TypeError, "a plan's forms and columns are ints, converters callables");
            return -1;
        }
        long c = PyLong_AsLong(col), fm = PyLong_AsLong(form);
        if ((c == -1 || fm == -1) && PyErr_Occurred()) return -1;
        if (c < 0 || fm < FORM_CALL || fm > FORM_DOUBLE) {
            PyErr_SetString(PyExc_ValueError, "a plan's column or form is out of range");
            return -1;
        }
    }
    return 0;
}

/* The record of a plan's fields taken from the text tuple ``row`` (width columns). */
static int put_text_row(Buf *b, const Plan *p, PyObject *row, Py_ssize_t width) {
    for (Py_ssize_t i = 0; i < p->prog->n; i++) {
        Py_ssize_t col = PyLong_AsSsize_t(PyTuple_GET_ITEM(p->cols, i));
        if (col >= width) return slow();
        int form = (int)PyLong_AsLong(PyTuple_GET_ITEM(p->forms, i));
        if (put_text_field(b, &p->prog->fields[i], form, PyTuple_GET_ITEM(p->convs, i),
                           PyTuple_GET_ITEM(row, col)) < 0) {
            return -1;
        }
    }
    return 0;
}

/*
 * encode_text_rows(value_plan, key_plan, rows, head, sources, tail, value_prefix,
 *                  key_prefix, width, slow_errors) -> (keys, values)
 *
 * For each text tuple rows[i] (width columns; None for NULL): the value
 * value_prefix + head + record + sources[i] + tail and the key key_prefix + key
 * record (None without a key plan). A row whose encoding raises one of slow_errors
 * (SlowPath among them) gets None as both key and value: the caller encodes it on
 * its checked path, which owns the error. Other exceptions propagate.
 */
static PyObject *encode_text_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 10 || !PyList_Check(args[2]) || !PyBytes_Check(args[3]) ||
        !PyList_Check(args[4]) || !PyBytes_Check(args[5]) || !PyBytes_Check(args[6]) ||
        !PyBytes_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_text_rows(value_plan, key_plan, rows: list, head: bytes, "
                        "sources: list, tail: bytes, value_prefix: bytes, key_prefix: bytes, "
                        "width: int, slow_errors)");
        return NULL;
    }
    Plan vp, kp;
    int keyed = args[1] != Py_None;
    if (get_plan(args[0], &vp) < 0 || (keyed && get_plan(args[1], &kp) < 0)) return NULL;
    PyObject *rows = args[2], *sources = args[4], *slow_errors = args[9];
    Py_ssize_t width = PyLong_AsSsize_t(args[8]);
    if (width == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    if (PyList_GET_SIZE(sources) != n) {
        PyErr_SetString(PyExc_ValueError, "one source per row");
        return NULL;
    }
    PyObject *keys = PyList_New(n), *values = PyList_New(n);
    if (keys == NULL || values == NULL) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i), *src = PyList_GET_ITEM(sources, i);
        PyObject *value = NULL, *key = NULL;
        if (!PyBytes_Check(src)) {
            PyErr_SetString(PyExc_TypeError, "sources must be bytes");
            goto fail;
        }
        if (PyTuple_Check(row) && PyTuple_GET_SIZE(row) == width) {
            Buf b;
            buf_init(&b);
            int rc = put_prefix(&b, args[6]);
            if (rc == 0) rc = put_raw(&b, PyBytes_AS_STRING(args[3]), PyBytes_GET_SIZE(args[3]));
            if (rc == 0) rc = put_text_row(&b, &vp, row, width);
            if (rc == 0) rc = put_raw(&b, PyBytes_AS_STRING(src), PyBytes_GET_SIZE(src));
            if (rc == 0) rc = put_raw(&b, PyBytes_AS_STRING(args[5]), PyBytes_GET_SIZE(args[5]));
            if (rc == 0) value = buf_bytes(&b);
            buf_free(&b);
            if (value != NULL && keyed) {
                buf_init(&b);
                rc = put_prefix(&b, args[7]);
                if (rc == 0) rc = put_text_row(&b, &kp, row, width);
                if (rc == 0) key = buf_bytes(&b);
                buf_free(&b);
                if (key == NULL) Py_CLEAR(value);
            }
            if (value == NULL) {
                if (!PyErr_Occurred() || !PyErr_ExceptionMatches(slow_errors)) goto fail;
                PyErr_Clear(); /* the caller's checked path encodes this row */
            }
        }
        PyList_SET_ITEM(values, i, value != NULL ? value : Py_NewRef(Py_None));
        PyList_SET_ITEM(keys, i, key != NULL ? key : Py_NewRef(Py_None));
    }
    return Py_BuildValue("(NN)", keys, values);
fail:
    Py_XDECREF(keys);
    Py_XDECREF(values);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"encode_envelope", (PyCFunction)(void (*)(void))encode_envelope, METH_FASTCALL,
     "encode_envelope(program, prefix, before, after, source, tx, op, ts_ms) -> bytes"},
    {"zigzag", zigzag, METH_O, "zigzag(n) -> bytes: an Avro long"},
    {"encode_text_rows", (PyCFunction)(void (*)(void))encode_text_rows, METH_FASTCALL,
     "encode_text_rows(value_plan, key_plan, rows, head, sources, tail, value_prefix, "
     "key_prefix, width, slow_errors) -> (keys, values); None where a row is not handled"},
    {"source_with_index", (PyCFunction)(void (*)(void))source_with_index, METH_FASTCALL,
     "source_with_index(pre, head, index, tail, post) -> bytes"},
    {"sources_with_index", (PyCFunction)(void (*)(void))sources_with_index, METH_FASTCALL,
     "sources_with_index(pre, head, start, count, tail, post) -> list[bytes]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "cdc.serde._cencode",
    "Native Avro row and envelope encoding (see cdc/serde/encode.py for the reference).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__cencode(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    PyObject *decimal = PyImport_ImportModule("decimal");
    if (decimal == NULL) return NULL;
    DecimalType = PyObject_GetAttrString(decimal, "Decimal");
    Py_DECREF(decimal);
    if (DecimalType == NULL) return NULL;
    if (PyType_Ready(&RowProgramType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
#ifdef Py_GIL_DISABLED
    /* a single-phase module declares its GIL use this way (Py_mod_gil is for slots) */
    if (PyUnstable_Module_SetGIL(m, Py_MOD_GIL_USED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    SlowPath = PyErr_NewExceptionWithDoc(
        "cdc.serde._cencode.SlowPath",
        "The row is not the common case: encode it on the checked Python path.", NULL, NULL);
    if (SlowPath == NULL || PyModule_AddObjectRef(m, "SlowPath", SlowPath) < 0) goto fail;
    if (PyModule_AddObjectRef(m, "RowProgram", (PyObject *)&RowProgramType) < 0) goto fail;
    static const struct { const char *name; int value; } ops[] = {
        {"OP_CALL", OP_CALL},       {"OP_BOOLEAN", OP_BOOLEAN},
        {"OP_INT", OP_INT},         {"OP_STRING", OP_STRING},
        {"OP_BYTES", OP_BYTES},     {"OP_DOUBLE", OP_DOUBLE},
        {"OP_DATE", OP_DATE},       {"OP_TIMESTAMP", OP_TIMESTAMP},
        {"OP_TIMESTAMPTZ", OP_TIMESTAMPTZ}, {"OP_DECIMAL", OP_DECIMAL},
        {"FORM_CALL", FORM_CALL},   {"FORM_SAME", FORM_SAME},
        {"FORM_INT", FORM_INT},     {"FORM_BOOL", FORM_BOOL},
        {"FORM_DECIMAL", FORM_DECIMAL}, {"FORM_DATE", FORM_DATE},
        {"FORM_TIMESTAMP", FORM_TIMESTAMP}, {"FORM_DOUBLE", FORM_DOUBLE},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (PyModule_AddIntConstant(m, ops[i].name, ops[i].value) < 0) goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
