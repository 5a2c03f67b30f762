/* Native Avro decoding of change records (optional; cdc/serde/reader.py is the reference).
 *
 * A writer schema is compiled once, in Python (reader.describe), into a flat
 * table of nodes; Program() turns that table into C structs, and read() walks
 * it over one Avro body. Records come back as dicts (or tuples, for the
 * envelope), with the same values the generated Python reader returns; a
 * "conv" node applies a column's logical conversion (date, timestamp,
 * decimal...) in C for the common cases and calls the Python converter for
 * everything else (sentinels, out-of-range values, rare types), so results
 * are identical to the Python path by construction.
 *
 * Malformed input raises the exception class given to Program() (the
 * codec's SerializationError): never a crash. So does a record over its
 * decoding limits (cdc/serde/limits.py): every array item and map entry of a
 * record is counted against max_items before it is allocated, so a few bytes
 * claiming a billion zero-width items (nulls, empty records, fixed(0)) are
 * refused instead of filling memory. Any other exception (MemoryError, an
 * error raised by a Python converter) propagates unchanged.
 * Only the CPython C API, C11. One concern (the native reader of change records)
 * in one file, as a C extension module is one translation unit.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum {
    OP_NULL = 0,
    OP_BOOL = 1,
    OP_LONG = 2,
    OP_FLOAT = 3,
    OP_DOUBLE = 4,
    OP_STRING = 5,
    OP_BYTES = 6,
    OP_FIXED = 7,
    OP_ENUM = 8,
    OP_UNION = 9,
    OP_RECORD = 10,
    OP_ARRAY = 11,
    OP_MAP = 12,
    OP_CONV = 13,
};

enum {
    CV_CALL = 0,    /* fallback(v) */
    CV_DATE = 1,    /* days since 1970 -> datetime.date */
    CV_TS = 2,      /* microseconds since 1970 -> naive datetime.datetime */
    CV_TIME = 3,    /* microseconds -> datetime.timedelta */
    CV_DECIMAL = 4, /* two's complement big-endian bytes -> Decimal with scale */
};

#define MAX_DEPTH 1000
/* defaults of cdc.serde.limits.DecodeLimits, for read() called without limits */
#define DEFAULT_MAX_ITEMS 1000000
#define DEFAULT_MAX_BYTES (64 * 1024 * 1024)

typedef struct {
    int op;
    int conv;
    int as_tuple;        /* record: tuple instead of dict */
    int zero_width;      /* array/map: items may take no bytes */
    Py_ssize_t size;     /* fixed: size; conv decimal: scale */
    Py_ssize_t n;        /* children (record fields, union branches) */
    Py_ssize_t *kids;    /* child node indexes */
    PyObject *names;     /* record: tuple of keys; enum: tuple of symbols */
    PyObject *fallback;  /* conv: the Python converter */
} Node;

typedef struct {
    PyObject_HEAD
    Py_ssize_t count;
    Node *nodes;
    PyObject *error;
    Py_ssize_t root;
} Program;

typedef struct {
    const unsigned char *buf;
    Py_ssize_t len;
    Py_ssize_t pos;
    int depth;
    Program *prog;
    int64_t items_left; /* array items and map entries this record may still hold */
    int64_t max_items;
} Reader;

static PyObject *DecimalType = NULL;

/* ------------------------------------------------------------------ errors */

static PyObject *
fail(Reader *r, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    PyErr_Format(r->prog->error, "Avro body does not match its writer schema: %s (at byte %zd)",
                 msg, r->pos);
    return NULL;
}

/* Re-raise the current exception (invalid UTF-8...) as the program's error class. */
static PyObject *
wrap_error(Reader *r, const char *what)
{
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        return NULL; /* MemoryError...: not a property of the bytes, propagate */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *text = value ? PyObject_Str(value) : NULL;
    const char *s = text ? PyUnicode_AsUTF8(text) : NULL;
    if (s == NULL) {
        PyErr_Clear();
        s = "?";
    }
    PyErr_Format(r->prog->error, "Avro body does not match its writer schema: %s: %s", what, s);
    Py_XDECREF(text);
    if (value != NULL) {
        PyObject *t2, *v2, *tb2;
        PyErr_Fetch(&t2, &v2, &tb2);
        PyErr_NormalizeException(&t2, &v2, &tb2);
        if (v2 != NULL) {
            PyException_SetCause(v2, value); /* steals value */
            value = NULL;
        }
        PyErr_Restore(t2, v2, tb2);
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return NULL;
}

/* ------------------------------------------------------------------ primitives */

static int
read_long(Reader *r, int64_t *out)
{
    uint64_t z = 0;
    int shift = 0;
    unsigned char b;
    do {
        if (r->pos >= r->len) {
            fail(r, "truncated");
            return -1;
        }
        if (shift > 63) {
            fail(r, "varint longer than 10 bytes");
            return -1;
        }
        b = r->buf[r->pos++];
        if (shift == 63 && (b & 0x7E)) {
            fail(r, "varint overflows 64 bits");
            return -1;
        }
        z |= (uint64_t)(b & 0x7F) << shift;
        shift += 7;
    } while (b & 0x80);
    *out = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return 0;
}

static int
read_length(Reader *r, Py_ssize_t *out)
{
    int64_t n;
    if (read_long(r, &n) < 0)
        return -1;
    if (n < 0) {
        fail(r, "negative length %lld", (long long)n);
        return -1;
    }
    if ((uint64_t)n > (uint64_t)(r->len - r->pos)) {
        fail(r, "truncated");
        return -1;
    }
    *out = (Py_ssize_t)n;
    return 0;
}

static double
load_double(const unsigned char *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = (u << 8) | p[i];
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static float
load_float(const unsigned char *p)
{
    uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                 ((uint32_t)p[3] << 24);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ------------------------------------------------------------------ conversions */

/* Proleptic Gregorian civil date of a day count (0 = 1970-01-01). */
static void
civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t
floor_div(int64_t a, int64_t b, int64_t *rem)
{
    int64_t q = a / b, r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) {
        q -= 1;
        r += b;
    }
    *rem = r;
    return q;
}

static PyObject *
call_fallback(Node *node, PyObject *v)
{
    return PyObject_CallOneArg(node->fallback, v);
}

/* Steals v. */
static PyObject *
convert(Node *node, PyObject *v)
{
    PyObject *out = NULL;
    switch (node->conv) {
    case CV_DATE:
    case CV_TS:
    case CV_TIME: {
        if (!PyLong_CheckExact(v))
            break;
        int overflow = 0;
        long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (n == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            break;
        }
        if (node->conv == CV_DATE) {
            /* sentinels (INT32 extremes) and far dates: the Python converter */
            if (n <= -2147483647LL || n >= 2147483647LL)
                break;
            int64_t y;
            int m, d;
            civil_from_days(n, &y, &m, &d);
            if (y < 1 || y > 9999)
                break;
            out = PyDate_FromDate((int)y, m, d);
        }
        else if (node->conv == CV_TS) {
            if (n == INT64_MAX || n <= INT64_MIN + 1)
                break;
            int64_t rem;
            int64_t days = floor_div(n, 86400000000LL, &rem);
            int64_t y;
            int m, d;
            civil_from_days(days, &y, &m, &d);
            if (y < 1 || y > 9999)
                break;
            int64_t secs = rem / 1000000;
            out = PyDateTime_FromDateAndTime((int)y, m, d, (int)(secs / 3600),
                                             (int)(secs / 60 % 60), (int)(secs % 60),
                                             (int)(rem % 1000000));
        }
        else {
            int64_t rem;
            int64_t days = floor_div(n, 86400000000LL, &rem);
            out = PyDelta_FromDSU((int)days, (int)(rem / 1000000), (int)(rem % 1000000));
        }
        Py_DECREF(v);
        return out;
    }
    case CV_DECIMAL: {
        if (!PyBytes_CheckExact(v) || PyBytes_GET_SIZE(v) > 8)
            break;
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(v);
        Py_ssize_t len = PyBytes_GET_SIZE(v);
        uint64_t u = 0;
        for (Py_ssize_t i = 0; i < len; i++)
            u = (u << 8) | p[i];
        if (len > 0 && len < 8 && (p[0] & 0x80))
            u |= ~(uint64_t)0 << (8 * len); /* sign-extend */
        int64_t unscaled = (int64_t)u;
        char text[48];
        snprintf(text, sizeof text, "%lldE%lld", (long long)unscaled, -(long long)node->size);
        PyObject *s = PyUnicode_FromString(text);
        if (s == NULL) {
            Py_DECREF(v);
            return NULL;
        }
        out = PyObject_CallOneArg(DecimalType, s);
        Py_DECREF(s);
        Py_DECREF(v);
        return out;
    }
    default:
        break;
    }
    out = call_fallback(node, v);
    Py_DECREF(v);
    return out;
}

/* ------------------------------------------------------------------ the walk */

static PyObject *read_node(Reader *r, Py_ssize_t index);

static PyObject *
read_string(Reader *r)
{
    Py_ssize_t n;
    if (read_length(r, &n) < 0)
        return NULL;
    PyObject *s = PyUnicode_DecodeUTF8((const char *)r->buf + r->pos, n, "strict");
    if (s == NULL)
        return wrap_error(r, "invalid UTF-8 in a string");
    r->pos += n;
    return s;
}

static int
block_count(Reader *r, Node *node, int64_t *count)
{
    if (read_long(r, count) < 0)
        return -1;
    if (*count < 0) {
        int64_t size;
        if (*count == INT64_MIN) {
            fail(r, "block count out of range");
            return -1;
        }
        *count = -*count;
        if (read_long(r, &size) < 0) /* the block's byte size: checked, not needed */
            return -1;
        if (size < 0 || size > r->len - r->pos) {
            fail(r, "block byte size %lld", (long long)size);
            return -1;
        }
    }
    /* items that take bytes: no more of them than bytes remain */
    if (!node->zero_width && *count > r->len - r->pos) {
        fail(r, "block of %lld items in %zd bytes", (long long)*count, r->len - r->pos);
        return -1;
    }
    if (*count > r->items_left) {
        PyErr_Format(r->prog->error,
                     "Avro body does not match its writer schema: more than %lld array items "
                     "and map entries in one record (decoding.max_items): a malformed or "
                     "hostile record; raise the sink's decoding.max_items if such records are "
                     "legitimate",
                     (long long)r->max_items);
        return -1;
    }
    r->items_left -= *count;
    return 0;
}

static PyObject *
read_record(Reader *r, Node *node)
{
    Py_ssize_t n = node->n;
    if (node->as_tuple) {
        PyObject *t = PyTuple_New(n);
        if (t == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = read_node(r, node->kids[i]);
            if (v == NULL) {
                Py_DECREF(t);
                return NULL;
            }
            PyTuple_SET_ITEM(t, i, v);
        }
        return t;
    }
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = read_node(r, node->kids[i]);
        if (v == NULL || PyDict_SetItem(d, PyTuple_GET_ITEM(node->names, i), v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *
read_node(Reader *r, Py_ssize_t index)
{
    Node *node = &r->prog->nodes[index];
    switch (node->op) {
    case OP_NULL:
        Py_RETURN_NONE;
    case OP_BOOL:
        if (r->pos >= r->len)
            return fail(r, "truncated");
        return PyBool_FromLong(r->buf[r->pos++] == 1);
    case OP_LONG: {
        int64_t v;
        if (read_long(r, &v) < 0)
            return NULL;
        return PyLong_FromLongLong(v);
    }
    case OP_FLOAT:
        if (r->len - r->pos < 4)
            return fail(r, "truncated");
        r->pos += 4;
        return PyFloat_FromDouble((double)load_float(r->buf + r->pos - 4));
    case OP_DOUBLE:
        if (r->len - r->pos < 8)
            return fail(r, "truncated");
        r->pos += 8;
        return PyFloat_FromDouble(load_double(r->buf + r->pos - 8));
    case OP_STRING:
        return read_string(r);
    case OP_BYTES: {
        Py_ssize_t n;
        if (read_length(r, &n) < 0)
            return NULL;
        r->pos += n;
        return PyBytes_FromStringAndSize((const char *)r->buf + r->pos - n, n);
    }
    case OP_FIXED:
        if (r->len - r->pos < node->size)
            return fail(r, "truncated");
        r->pos += node->size;
        return PyBytes_FromStringAndSize((const char *)r->buf + r->pos - node->size, node->size);
    case OP_ENUM: {
        int64_t i;
        if (read_long(r, &i) < 0)
            return NULL;
        if (i < 0 || i >= PyTuple_GET_SIZE(node->names))
            return fail(r, "enum index %lld of %zd symbols", (long long)i,
                        PyTuple_GET_SIZE(node->names));
        PyObject *s = PyTuple_GET_ITEM(node->names, (Py_ssize_t)i);
        Py_INCREF(s);
        return s;
    }
    case OP_UNION: {
        Py_ssize_t branch;
        if (node->n <= 63) {
            /* indexes 0..63 are one zig-zag byte: 0x00, 0x02, 0x04... */
            if (r->pos >= r->len)
                return fail(r, "truncated");
            unsigned char u = r->buf[r->pos++];
            if ((u & 1) || (Py_ssize_t)(u >> 1) >= node->n)
                return fail(r, "union branch byte %d of %zd branches", (int)u, node->n);
            branch = u >> 1;
        }
        else {
            int64_t i;
            if (read_long(r, &i) < 0)
                return NULL;
            if (i < 0 || i >= node->n)
                return fail(r, "union branch %lld", (long long)i);
            branch = (Py_ssize_t)i;
        }
        return read_node(r, node->kids[branch]);
    }
    case OP_RECORD: {
        if (++r->depth > MAX_DEPTH) {
            r->depth--;
            return fail(r, "records nested deeper than %d", MAX_DEPTH);
        }
        PyObject *v = read_record(r, node);
        r->depth--;
        return v;
    }
    case OP_ARRAY:
    case OP_MAP: {
        int is_map = node->op == OP_MAP;
        PyObject *out = is_map ? PyDict_New() : PyList_New(0);
        if (out == NULL)
            return NULL;
        if (++r->depth > MAX_DEPTH) {
            r->depth--;
            Py_DECREF(out);
            return fail(r, "values nested deeper than %d", MAX_DEPTH);
        }
        for (;;) {
            int64_t count;
            if (block_count(r, node, &count) < 0)
                goto bad;
            if (count == 0)
                break;
            for (int64_t i = 0; i < count; i++) {
                PyObject *k = NULL;
                if (is_map && (k = read_string(r)) == NULL)
                    goto bad;
                PyObject *v = read_node(r, node->kids[0]);
                if (v == NULL) {
                    Py_XDECREF(k);
                    goto bad;
                }
                int rc = is_map ? PyDict_SetItem(out, k, v) : PyList_Append(out, v);
                Py_XDECREF(k);
                Py_DECREF(v);
                if (rc < 0)
                    goto bad;
            }
        }
        r->depth--;
        return out;
    bad:
        r->depth--;
        Py_DECREF(out);
        return NULL;
    }
    case OP_CONV: {
        PyObject *v = read_node(r, node->kids[0]);
        if (v == NULL || v == Py_None)
            return v;
        return convert(node, v);
    }
    default:
        PyErr_Format(PyExc_SystemError, "bad opcode %d", node->op);
        return NULL;
    }
}

/* ------------------------------------------------------------------ Program */

static void
program_clear_nodes(Program *p)
{
    if (p->nodes == NULL)
        return;
    for (Py_ssize_t i = 0; i < p->count; i++) {
        PyMem_Free(p->nodes[i].kids);
        Py_CLEAR(p->nodes[i].names);
        Py_CLEAR(p->nodes[i].fallback);
    }
    PyMem_Free(p->nodes);
    p->nodes = NULL;
    p->count = 0;
}

static int
program_traverse(Program *p, visitproc visit, void *arg)
{
    Py_VISIT(p->error);
    for (Py_ssize_t i = 0; i < p->count; i++) {
        Py_VISIT(p->nodes[i].names);
        Py_VISIT(p->nodes[i].fallback);
    }
    return 0;
}

static int
program_clear(Program *p)
{
    Py_CLEAR(p->error);
    program_clear_nodes(p);
    return 0;
}

static void
program_dealloc(Program *p)
{
    PyObject_GC_UnTrack(p);
    program_clear(p);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int
bad_node(Py_ssize_t i, const char *why)
{
    PyErr_Format(PyExc_ValueError, "program node %zd: %s", i, why);
    return -1;
}

static int
kid_index(PyObject *o, Py_ssize_t count, Py_ssize_t i, Py_ssize_t *out)
{
    Py_ssize_t k = PyLong_AsSsize_t(o);
    if (k == -1 && PyErr_Occurred())
        return -1;
    if (k < 0 || k >= count)
        return bad_node(i, "child index out of range");
    *out = k;
    return 0;
}

static int
set_kids(Node *node, PyObject *seq, Py_ssize_t count, Py_ssize_t i)
{
    if (!PyTuple_Check(seq))
        return bad_node(i, "children must be a tuple");
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    node->kids = PyMem_Calloc(n ? n : 1, sizeof(Py_ssize_t));
    if (node->kids == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    node->n = n;
    for (Py_ssize_t j = 0; j < n; j++)
        if (kid_index(PyTuple_GET_ITEM(seq, j), count, i, &node->kids[j]) < 0)
            return -1;
    return 0;
}

/* A node with exactly one child, ``o`` (an array's item, a converted value). */
static int
set_one_kid(Node *node, PyObject *o, Py_ssize_t count, Py_ssize_t i)
{
    node->kids = PyMem_Calloc(1, sizeof(Py_ssize_t));
    if (node->kids == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    node->n = 1;
    return kid_index(o, count, i, &node->kids[0]);
}

static int
parse_node(Node *node, PyObject *t, Py_ssize_t count, Py_ssize_t i)
{
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < 1)
        return bad_node(i, "not a non-empty tuple");
    Py_ssize_t len = PyTuple_GET_SIZE(t);
    long op = PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
    if (op == -1 && PyErr_Occurred())
        return -1;
    node->op = (int)op;
    switch (op) {
    case OP_NULL:
    case OP_BOOL:
    case OP_LONG:
    case OP_FLOAT:
    case OP_DOUBLE:
    case OP_STRING:
    case OP_BYTES:
        return 0;
    case OP_FIXED:
        if (len != 2)
            return bad_node(i, "fixed needs (op, size)");
        node->size = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 1));
        if (node->size == -1 && PyErr_Occurred())
            return -1;
        if (node->size < 0)
            return bad_node(i, "negative fixed size");
        return 0;
    case OP_ENUM:
        if (len != 2 || !PyTuple_Check(PyTuple_GET_ITEM(t, 1)))
            return bad_node(i, "enum needs (op, symbols tuple)");
        node->names = Py_NewRef(PyTuple_GET_ITEM(t, 1));
        return 0;
    case OP_UNION:
        if (len != 2)
            return bad_node(i, "union needs (op, branches)");
        if (set_kids(node, PyTuple_GET_ITEM(t, 1), count, i) < 0)
            return -1;
        if (node->n == 0)
            return bad_node(i, "empty union");
        return 0;
    case OP_RECORD: {
        if (len != 4 || !PyTuple_Check(PyTuple_GET_ITEM(t, 1)))
            return bad_node(i, "record needs (op, names, fields, as_tuple)");
        node->names = Py_NewRef(PyTuple_GET_ITEM(t, 1));
        if (set_kids(node, PyTuple_GET_ITEM(t, 2), count, i) < 0)
            return -1;
        if (PyTuple_GET_SIZE(node->names) != node->n)
            return bad_node(i, "record names and fields differ in number");
        int as_tuple = PyObject_IsTrue(PyTuple_GET_ITEM(t, 3));
        if (as_tuple < 0)
            return -1;
        node->as_tuple = as_tuple;
        return 0;
    }
    case OP_ARRAY:
    case OP_MAP: {
        if (len != 3)
            return bad_node(i, "array/map needs (op, item, zero_width)");
        if (set_one_kid(node, PyTuple_GET_ITEM(t, 1), count, i) < 0)
            return -1;
        int zw = PyObject_IsTrue(PyTuple_GET_ITEM(t, 2));
        if (zw < 0)
            return -1;
        node->zero_width = zw;
        return 0;
    }
    case OP_CONV: {
        if (len != 5)
            return bad_node(i, "conv needs (op, value, code, arg, fallback)");
        if (set_one_kid(node, PyTuple_GET_ITEM(t, 1), count, i) < 0)
            return -1;
        long code = PyLong_AsLong(PyTuple_GET_ITEM(t, 2));
        if (code == -1 && PyErr_Occurred())
            return -1;
        if (code < CV_CALL || code > CV_DECIMAL)
            return bad_node(i, "unknown conversion");
        node->conv = (int)code;
        node->size = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 3));
        if (node->size == -1 && PyErr_Occurred())
            return -1;
        PyObject *fb = PyTuple_GET_ITEM(t, 4);
        if (!PyCallable_Check(fb))
            return bad_node(i, "conversion fallback is not callable");
        node->fallback = Py_NewRef(fb);
        return 0;
    }
    default:
        return bad_node(i, "unknown opcode");
    }
}

static PyObject *
program_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"nodes", "root", "error", NULL};
    PyObject *nodes, *error;
    Py_ssize_t root;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!nO:Program", kwlist, &PyTuple_Type, &nodes,
                                     &root, &error))
        return NULL;
    if (!PyExceptionClass_Check(error)) {
        PyErr_SetString(PyExc_TypeError, "error must be an exception class");
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(nodes);
    if (root < 0 || root >= count) {
        PyErr_SetString(PyExc_ValueError, "root out of range");
        return NULL;
    }
    Program *p = (Program *)type->tp_alloc(type, 0);
    if (p == NULL)
        return NULL;
    p->nodes = PyMem_Calloc(count, sizeof(Node));
    if (p->nodes == NULL) {
        Py_DECREF(p);
        return PyErr_NoMemory();
    }
    p->count = count;
    p->root = root;
    p->error = Py_NewRef(error);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (parse_node(&p->nodes[i], PyTuple_GET_ITEM(nodes, i), count, i) < 0) {
            Py_DECREF(p);
            return NULL;
        }
    }
    return (PyObject *)p;
}

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cdc.serde._cdecode.Program",
    .tp_basicsize = sizeof(Program),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A compiled Avro writer schema: Program(nodes, root, error).",
    .tp_new = program_new,
    .tp_dealloc = (destructor)program_dealloc,
    .tp_traverse = (traverseproc)program_traverse,
    .tp_clear = (inquiry)program_clear,
};

/* ------------------------------------------------------------------ module functions */

static PyObject *
decode(Program *prog, PyObject *data, Py_ssize_t start, int whole, Py_ssize_t *end,
       int64_t max_items, int64_t max_bytes)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Reader r = {view.buf, view.len, start, 0, prog, max_items, max_items};
    PyObject *v = NULL;
    if (start < 0 || start > view.len) {
        PyErr_Format(prog->error, "start %zd outside a body of %zd bytes", start, view.len);
        goto done;
    }
    if (view.len - start > max_bytes) {
        PyErr_Format(prog->error,
                     "an Avro body of %zd bytes is longer than decoding.max_record_bytes "
                     "(%lld); raise the sink's decoding.max_record_bytes if such records are "
                     "legitimate",
                     view.len - start, (long long)max_bytes);
        goto done;
    }
    v = read_node(&r, prog->root);
    if (v != NULL && whole && r.pos != r.len) {
        Py_CLEAR(v);
        PyErr_Format(prog->error,
                     "Avro body does not match its writer schema: %zd bytes left over",
                     r.len - r.pos);
    }
    *end = r.pos;
done:
    PyBuffer_Release(&view);
    return v;
}

static int
limit_arg(PyObject *o, int64_t *out)
{
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0) {
        PyErr_SetString(PyExc_ValueError, "decoding limits must be >= 0");
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static PyObject *
mod_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError,
                        "read(program, buf, start=0, max_items=1000000, max_bytes=64 MiB)");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[0], &ProgramType)) {
        PyErr_SetString(PyExc_TypeError, "read() needs a Program");
        return NULL;
    }
    Py_ssize_t start = 0, end;
    int64_t max_items = DEFAULT_MAX_ITEMS, max_bytes = DEFAULT_MAX_BYTES;
    if (nargs >= 3) {
        start = PyLong_AsSsize_t(args[2]);
        if (start == -1 && PyErr_Occurred())
            return NULL;
    }
    if (nargs >= 4 && limit_arg(args[3], &max_items) < 0)
        return NULL;
    if (nargs >= 5 && limit_arg(args[4], &max_bytes) < 0)
        return NULL;
    return decode((Program *)args[0], args[1], start, 1, &end, max_items, max_bytes);
}

static PyObject *
mod_read_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 5 || !PyObject_TypeCheck(args[0], &ProgramType)) {
        PyErr_SetString(PyExc_TypeError,
                        "read_record(program, buf, pos, max_items=1000000, max_bytes=64 MiB)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[2]), end = 0;
    if (start == -1 && PyErr_Occurred())
        return NULL;
    int64_t max_items = DEFAULT_MAX_ITEMS, max_bytes = DEFAULT_MAX_BYTES;
    if (nargs >= 4 && limit_arg(args[3], &max_items) < 0)
        return NULL;
    if (nargs >= 5 && limit_arg(args[4], &max_bytes) < 0)
        return NULL;
    PyObject *v = decode((Program *)args[0], args[1], start, 0, &end, max_items, max_bytes);
    if (v == NULL)
        return NULL;
    PyObject *out = Py_BuildValue("(Nn)", v, end);
    return out;
}


static PyMethodDef methods[] = {
    {"read", (PyCFunction)(void (*)(void))mod_read, METH_FASTCALL,
     "read(program, buf, start=0, max_items=1000000, max_bytes=64 MiB): the value encoded "
     "in buf[start:], which it must fill, within the decoding limits."},
    {"read_record", (PyCFunction)(void (*)(void))mod_read_record, METH_FASTCALL,
     "read_record(program, buf, pos, max_items=1000000, max_bytes=64 MiB) -> (value, next "
     "position)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cdc.serde._cdecode",
    "Native Avro decoding of change records (cdc.serde.reader is the reference).", -1, methods,
};

PyMODINIT_FUNC
PyInit__cdecode(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    PyObject *decimal = PyImport_ImportModule("decimal");
    if (decimal == NULL)
        return NULL;
    DecimalType = PyObject_GetAttrString(decimal, "Decimal");
    Py_DECREF(decimal);
    if (DecimalType == NULL)
        return NULL;
    if (PyType_Ready(&ProgramType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
#ifdef Py_GIL_DISABLED
    /* a single-phase module declares its GIL use this way (Py_mod_gil is for slots) */
    if (PyUnstable_Module_SetGIL(m, Py_MOD_GIL_USED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    if (PyModule_AddObjectRef(m, "Program", (PyObject *)&ProgramType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "OP_NULL", OP_NULL);
    PyModule_AddIntConstant(m, "OP_BOOL", OP_BOOL);
    PyModule_AddIntConstant(m, "OP_LONG", OP_LONG);
    PyModule_AddIntConstant(m, "OP_FLOAT", OP_FLOAT);
    PyModule_AddIntConstant(m, "OP_DOUBLE", OP_DOUBLE);
    PyModule_AddIntConstant(m, "OP_STRING", OP_STRING);
    PyModule_AddIntConstant(m, "OP_BYTES", OP_BYTES);
    PyModule_AddIntConstant(m, "OP_FIXED", OP_FIXED);
    PyModule_AddIntConstant(m, "OP_ENUM", OP_ENUM);
    PyModule_AddIntConstant(m, "OP_UNION", OP_UNION);
    PyModule_AddIntConstant(m, "OP_RECORD", OP_RECORD);
    PyModule_AddIntConstant(m, "OP_ARRAY", OP_ARRAY);
    PyModule_AddIntConstant(m, "OP_MAP", OP_MAP);
    PyModule_AddIntConstant(m, "OP_CONV", OP_CONV);
    PyModule_AddIntConstant(m, "CV_CALL", CV_CALL);
    PyModule_AddIntConstant(m, "CV_DATE", CV_DATE);
    PyModule_AddIntConstant(m, "CV_TS", CV_TS);
    PyModule_AddIntConstant(m, "CV_TIME", CV_TIME);
    PyModule_AddIntConstant(m, "CV_DECIMAL", CV_DECIMAL);
    return m;
}
