/* The engine's run walker: cdc change envelopes (Avro) -> rows in a replica's bulk format.
 *
 * Shared by the connectors' native run encoders (cdc.spi.RunEncoder; the
 * PostgreSQL sink's binary COPY tuples, the MariaDB/MySQL sink's SQL literal
 * rows); cdc/sink/runprogram.py compiles the programs run here and holds the
 * pure-Python reference walker. A Program is a flat list of instructions, one
 * per Avro value of the envelope in schema order (records have no framing in
 * Avro, so the fields of `source` and of the `after` row are inlined).
 * encode() walks consecutive envelopes of one writer schema and appends, for
 * each that qualifies (op c or r and no before image, or for an update program
 * op u and no before image or one with the after image's key; no
 * unchanged/absent/special-value flags, a position text, not of the sink's own
 * origin, every value convertible exactly to its replica column, a key not
 * seen earlier in the run), one row of the after image; it stops at the first
 * one that does not, without raising, and once the payload holds max_bytes (0:
 * no limit): the caller hands the rest to the general path, which decides and
 * names every problem. So the only exceptions are MemoryError and TypeError
 * for wrong arguments.
 *
 * This header knows no database. The including file (one C extension) defines,
 * before including it, RUN_PROGRAM_NAME (the Program type's qualified name),
 * and after it the format's hooks declared below: column() writes one value
 * (or refuses it), check_instr() validates a column instruction's parameters,
 * and row_begin(), col_begin(), row_end() frame rows and columns.
 * Only the CPython C API, C11.
 */
#ifndef CDC_SINK_RUNWALK_H
#define CDC_SINK_RUNWALK_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* instruction kinds (cdc/sink/runprogram.py mirrors these numbers) */
enum {
    I_SKIP = 0,      /* skip a value of node `a` */
    I_OP = 1,        /* string: "c" or "r" (`a` 0), "u" (`a` 1) */
    I_NULL = 2,      /* union: must take branch `a` (null) */
    I_BRANCH = 3,    /* union: must take branch `a` (the row record follows) */
    I_POSITION = 4,  /* string, or union with null branch `a` (-1: plain string) */
    I_ORIGIN = 5,    /* likewise */
    I_EMPTY = 6,     /* union with null branch `a` of array/map: null or no items */
    I_COL = 7,       /* a row column: converter `a`, null branch `b`, params p1 p2 p3, key flag */
    I_BEFORE = 8,    /* union with null branch `a`: null skips the `b` instructions that follow
                        (the before row: I_SKIP and I_BKEY only) */
    I_BKEY = 9,      /* a key column of the before row, as I_COL, into the before key */
};

/* skip nodes */
enum {
    N_NULL = 0, N_BOOL = 1, N_INT = 2, N_FLOAT = 3, N_DOUBLE = 4, N_BYTES = 5, N_FIXED = 6,
    N_UNION = 7, N_RECORD = 8, N_ARRAY = 9, N_MAP = 10,
};


#define MAX_DEPTH 64

typedef struct {
    int kind;
    Py_ssize_t size; /* fixed size */
    Py_ssize_t n;
    Py_ssize_t *kids;
} SNode;

typedef struct {
    int kind, a, b, key, avro_int;
    int64_t p1, p2, p3;
} Instr;

typedef struct {
    PyObject_HEAD
    Py_ssize_t nnodes, ninstr;
    SNode *nodes;
    Instr *instr;
    int ncols;
    Py_ssize_t max_bytes; /* a run ends once its payload holds this many bytes (0: never) */
} Program;

typedef struct {
    const unsigned char *buf;
    Py_ssize_t len, pos;
} Cur;

typedef struct {
    unsigned char *data;
    Py_ssize_t len, cap;
} Buf;

/* ------------------------------------------------------------------ reading */
#define REFUSE 1 /* the value does not qualify: the run ends before this record */
#define NOMEM (-1)

/* The format's hooks (defined by the including file). */
static int column(const Instr *in, Cur *c, Buf *b);    /* 0, REFUSE, or NOMEM */
static int check_instr(const Instr *in);               /* 0, or -1 with an exception */
static int row_begin(const Program *p, Buf *b, Py_ssize_t row); /* 0, or NOMEM */
static int col_begin(Buf *b, int index);               /* 0, or NOMEM */
static int row_end(Buf *b);                            /* 0, or NOMEM */

/* ------------------------------------------------------------------ reading */

static int
read_long(Cur *c, int64_t *out)
{
    uint64_t v = 0;
    int shift = 0;
    for (;;) {
        if (c->pos >= c->len || shift > 63)
            return -1;
        unsigned char b = c->buf[c->pos++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
        shift += 7;
    }
    *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    return 0;
}

static int
read_len(Cur *c, Py_ssize_t *n)
{
    int64_t v;
    if (read_long(c, &v) < 0 || v < 0 || v > c->len - c->pos)
        return -1;
    *n = (Py_ssize_t)v;
    return 0;
}

static int
skip(Program *p, Cur *c, Py_ssize_t idx, int depth)
{
    if (depth > MAX_DEPTH)
        return -1;
    SNode *nd = &p->nodes[idx];
    int64_t v;
    Py_ssize_t n;
    switch (nd->kind) {
    case N_NULL:
        return 0;
    case N_BOOL:
        if (c->pos >= c->len)
            return -1;
        c->pos++;
        return 0;
    case N_INT:
        return read_long(c, &v);
    case N_FLOAT:
    case N_DOUBLE:
        n = nd->kind == N_FLOAT ? 4 : 8;
        if (c->len - c->pos < n)
            return -1;
        c->pos += n;
        return 0;
    case N_BYTES:
        if (read_len(c, &n) < 0)
            return -1;
        c->pos += n;
        return 0;
    case N_FIXED:
        if (c->len - c->pos < nd->size)
            return -1;
        c->pos += nd->size;
        return 0;
    case N_UNION:
        if (read_long(c, &v) < 0 || v < 0 || v >= nd->n)
            return -1;
        return skip(p, c, nd->kids[v], depth + 1);
    case N_RECORD:
        for (Py_ssize_t i = 0; i < nd->n; i++)
            if (skip(p, c, nd->kids[i], depth + 1) < 0)
                return -1;
        return 0;
    case N_ARRAY:
    case N_MAP:
        for (;;) {
            int64_t count;
            if (read_long(c, &count) < 0)
                return -1;
            if (count == 0)
                return 0;
            if (count < 0) { /* a block with its byte size: skip it whole */
                Py_ssize_t size;
                if (read_len(c, &size) < 0)
                    return -1;
                c->pos += size;
                continue;
            }
            if (count > c->len - c->pos)
                return -1; /* every item takes a byte at least... unless zero-width */
            for (int64_t i = 0; i < count; i++) {
                if (nd->kind == N_MAP) {
                    if (read_len(c, &n) < 0)
                        return -1;
                    c->pos += n;
                }
                if (skip(p, c, nd->kids[0], depth + 1) < 0)
                    return -1;
            }
        }
    }
    return -1;
}

/* ------------------------------------------------------------------ output */

static int
reserve(Buf *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    unsigned char *d = PyMem_Realloc(b->data, (size_t)cap);
    if (d == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}


/* Strict UTF-8 (as Python's decoder: no overlongs, surrogates or > U+10FFFF), no NUL.
 * Returns the number of code points, or -1. */
static Py_ssize_t
utf8_chars(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t chars = 0, i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return -1;
            i++;
        } else if (c >= 0xc2 && c <= 0xdf) {
            if (i + 1 >= n || (s[i + 1] & 0xc0) != 0x80)
                return -1;
            i += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            if (i + 2 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80)
                return -1;
            if (c == 0xe0 && s[i + 1] < 0xa0)
                return -1; /* overlong */
            if (c == 0xed && s[i + 1] >= 0xa0)
                return -1; /* surrogate */
            i += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            if (i + 3 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80
                || (s[i + 3] & 0xc0) != 0x80)
                return -1;
            if (c == 0xf0 && s[i + 1] < 0x90)
                return -1;
            if (c == 0xf4 && s[i + 1] >= 0x90)
                return -1;
            i += 4;
        } else {
            return -1;
        }
        chars++;
    }
    return chars;
}
/* ------------------------------------------------------------------ cdc's time forms */

/* Dates and timestamps as cdc writes them (days and µs since 1970; TIMESTAMPTZ as
 * ISO 8601 text in UTC ending in Z, the fraction only when not zero). */

static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

#define MIN_DAYS (-719162)   /* 0001-01-01 since 1970-01-01 */
#define MAX_DAYS 2932896     /* 9999-12-31 */
#define DAY_US INT64_C(86400000000)

static const int64_t POW10[7] = {1, 10, 100, 1000, 10000, 100000, 1000000};

static int
digits(const unsigned char *s, int n, int64_t *out)
{
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int
days_in_month(int64_t y, int64_t m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

/* cdc's TIMESTAMPTZ text "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" -> microseconds since 1970. */
static int
parse_tstz(const unsigned char *s, Py_ssize_t n, int64_t *us)
{
    int64_t y, mo, d, h, mi, se, f = 0;
    if (n != 20 && n != 27)
        return -1;
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':'
        || s[n - 1] != 'Z')
        return -1;
    if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d)
        || digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
        return -1;
    if (n == 27) {
        if (s[19] != '.' || digits(s + 20, 6, &f) || f == 0)
            return -1; /* cdc writes a fraction only when it is not zero */
    }
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59
        || se > 59)
        return -1;
    *us = days_from_civil(y, mo, d) * DAY_US + ((h * 60 + mi) * 60 + se) * 1000000 + f;
    return 0;
}

/* ------------------------------------------------------------------ key set */

typedef struct {
    Py_ssize_t *slots; /* row index + 1, 0: empty */
    Py_ssize_t cap;    /* slots (a power of two, at least twice the rows) */
    Py_ssize_t *kstart, *klen; /* per row: its key bytes in a separate buffer */
    Py_ssize_t rowcap;
    Buf keys;
} KeySet;

static uint64_t
hash_bytes(const unsigned char *s, Py_ssize_t n)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (Py_ssize_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static void
slot_put(KeySet *ks, Py_ssize_t row)
{
    uint64_t h = hash_bytes(ks->keys.data + ks->kstart[row], ks->klen[row]);
    Py_ssize_t mask = ks->cap - 1;
    Py_ssize_t i = (Py_ssize_t)(h & (uint64_t)mask);
    while (ks->slots[i] != 0)
        i = (i + 1) & mask;
    ks->slots[i] = row + 1;
}

/* Room for row `row` (sets grow with the run: a run that ends at once costs little). */
static int
key_reserve(KeySet *ks, Py_ssize_t row)
{
    if (row >= ks->rowcap) {
        Py_ssize_t rc = ks->rowcap ? ks->rowcap * 2 : 32;
        Py_ssize_t *a = PyMem_Realloc(ks->kstart, (size_t)rc * sizeof(Py_ssize_t));
        if (a == NULL)
            return -1;
        ks->kstart = a;
        Py_ssize_t *b = PyMem_Realloc(ks->klen, (size_t)rc * sizeof(Py_ssize_t));
        if (b == NULL)
            return -1;
        ks->klen = b;
        ks->rowcap = rc;
    }
    if (2 * (row + 1) > ks->cap) {
        Py_ssize_t cap = ks->cap ? ks->cap * 2 : 64;
        Py_ssize_t *slots = PyMem_Calloc((size_t)cap, sizeof(Py_ssize_t));
        if (slots == NULL)
            return -1;
        PyMem_Free(ks->slots);
        ks->slots = slots;
        ks->cap = cap;
        for (Py_ssize_t r = 0; r < row; r++)
            slot_put(ks, r);
    }
    return 0;
}

/* 1 when the key (keys.data[start:start+len]) is new (and added), 0 when seen. */
static int
key_add(KeySet *ks, Py_ssize_t row, Py_ssize_t start, Py_ssize_t len)
{
    uint64_t h = hash_bytes(ks->keys.data + start, len);
    Py_ssize_t mask = ks->cap - 1;
    Py_ssize_t i = (Py_ssize_t)(h & (uint64_t)mask);
    for (;;) {
        Py_ssize_t r = ks->slots[i];
        if (r == 0)
            break;
        r -= 1;
        if (ks->klen[r] == len && memcmp(ks->keys.data + ks->kstart[r], ks->keys.data + start, (size_t)len) == 0)
            return 0;
        i = (i + 1) & mask;
    }
    ks->slots[i] = row + 1;
    ks->kstart[row] = start;
    ks->klen[row] = len;
    return 1;
}

/* ------------------------------------------------------------------ Program */

static void
program_dealloc(Program *self)
{
    if (self->nodes != NULL) {
        for (Py_ssize_t i = 0; i < self->nnodes; i++)
            PyMem_Free(self->nodes[i].kids);
        PyMem_Free(self->nodes);
    }
    PyMem_Free(self->instr);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int64_t
item_long(PyObject *t, Py_ssize_t i, int *err)
{
    PyObject *o = PyTuple_GET_ITEM(t, i);
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        *err = 1;
    return (int64_t)v;
}

/* Program(nodes, instructions): nodes are (kind, size, (kid, ...)); instructions are
 * (kind, a, b, p1, p2, p3, key, avro_int), as cdc/sink/runprogram.py compiles them; max_bytes
 * (optional, 0: no limit) ends a run once its payload holds that many bytes. */
static int
program_init(Program *self, PyObject *args, PyObject *kwds)
{
    PyObject *nodes, *instr;
    Py_ssize_t max_bytes = 0;
    if (!PyArg_ParseTuple(args, "O!O!|n", &PyTuple_Type, &nodes, &PyTuple_Type, &instr, &max_bytes))
        return -1;
    if (max_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "max_bytes is at least 0");
        return -1;
    }
    Py_ssize_t nn = PyTuple_GET_SIZE(nodes), ni = PyTuple_GET_SIZE(instr);
    if (self->nodes != NULL || self->instr != NULL) {
        PyErr_SetString(PyExc_TypeError, "Program is initialised once");
        return -1;
    }
    self->nodes = PyMem_Calloc((size_t)(nn ? nn : 1), sizeof(SNode));
    self->instr = PyMem_Calloc((size_t)(ni ? ni : 1), sizeof(Instr));
    if (self->nodes == NULL || self->instr == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->nnodes = nn;
    self->ninstr = ni;
    int err = 0;
    for (Py_ssize_t i = 0; i < nn; i++) {
        PyObject *t = PyTuple_GET_ITEM(nodes, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3 || !PyTuple_Check(PyTuple_GET_ITEM(t, 2))) {
            PyErr_SetString(PyExc_TypeError, "a node is (kind, size, kids)");
            return -1;
        }
        SNode *nd = &self->nodes[i];
        nd->kind = (int)item_long(t, 0, &err);
        nd->size = (Py_ssize_t)item_long(t, 1, &err);
        PyObject *kids = PyTuple_GET_ITEM(t, 2);
        nd->n = PyTuple_GET_SIZE(kids);
        nd->kids = PyMem_Calloc((size_t)(nd->n ? nd->n : 1), sizeof(Py_ssize_t));
        if (nd->kids == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t k = 0; k < nd->n; k++) {
            nd->kids[k] = (Py_ssize_t)item_long(kids, k, &err);
            if (!err && (nd->kids[k] < 0 || nd->kids[k] >= nn)) {
                PyErr_SetString(PyExc_ValueError, "node index out of range");
                return -1;
            }
        }
        if (err)
            return -1;
        if (nd->kind < N_NULL || nd->kind > N_MAP || nd->size < 0
            || ((nd->kind == N_ARRAY || nd->kind == N_MAP) && nd->n != 1)) {
            PyErr_SetString(PyExc_ValueError, "bad node");
            return -1;
        }
    }
    int ncols = 0;
    Py_ssize_t before_end = -1; /* the last instruction of the before row */
    for (Py_ssize_t i = 0; i < ni; i++) {
        PyObject *t = PyTuple_GET_ITEM(instr, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 8) {
            PyErr_SetString(PyExc_TypeError, "an instruction is (kind, a, b, p1, p2, p3, key, avro_int)");
            return -1;
        }
        Instr *in = &self->instr[i];
        in->kind = (int)item_long(t, 0, &err);
        in->a = (int)item_long(t, 1, &err);
        in->b = (int)item_long(t, 2, &err);
        in->p1 = item_long(t, 3, &err);
        in->p2 = item_long(t, 4, &err);
        in->p3 = item_long(t, 5, &err);
        in->key = (int)item_long(t, 6, &err);
        in->avro_int = (int)item_long(t, 7, &err);
        if (err)
            return -1;
        if ((in->kind == I_SKIP || in->kind == I_EMPTY) && (in->a < 0 || in->a >= nn)) {
            PyErr_SetString(PyExc_ValueError, "node index out of range");
            return -1;
        }
        if (in->kind == I_EMPTY) {
            SNode *nd = &self->nodes[in->a];
            if (nd->kind != N_UNION) {
                PyErr_SetString(PyExc_ValueError, "I_EMPTY takes a union node");
                return -1;
            }
        }
        if (in->kind == I_BEFORE) {
            if (in->a < 0 || in->a > 1 || in->b < 0 || in->b >= ni - i) {
                PyErr_SetString(PyExc_ValueError, "bad before instruction");
                return -1;
            }
        }
        if (i <= before_end ? in->kind != I_SKIP && in->kind != I_BKEY : in->kind == I_BKEY) {
            PyErr_SetString(PyExc_ValueError, "a before row holds I_SKIP and I_BKEY only");
            return -1;
        }
        if (in->kind == I_BEFORE)
            before_end = i + in->b;
        if (in->kind == I_COL || in->kind == I_BKEY) {
            if (in->kind == I_COL)
                ncols++;
            if (check_instr(in) < 0)
                return -1;
        }
        if (in->kind < I_SKIP || in->kind > I_BKEY) {
            PyErr_SetString(PyExc_ValueError, "bad instruction");
            return -1;
        }
    }
    if (ncols > 0x7fff) {
        PyErr_SetString(PyExc_ValueError, "too many columns");
        return -1;
    }
    self->ncols = ncols;
    self->max_bytes = max_bytes;
    return 0;
}

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = RUN_PROGRAM_NAME,
    .tp_basicsize = sizeof(Program),
    .tp_dealloc = (destructor)program_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A compiled envelope -> replica rows program.",
    .tp_init = (initproc)program_init,
    .tp_new = PyType_GenericNew,
};

/* A string value (optionally a nullable union) in s and n; s is NULL for null. */
static int
string_value(Cur *c, int null_branch, const unsigned char **s, Py_ssize_t *n)
{
    int64_t v;
    if (null_branch >= 0) {
        if (read_long(c, &v) < 0 || v < 0 || v > 1)
            return -1;
        if (v == null_branch) {
            *s = NULL;
            *n = 0;
            return 0;
        }
    }
    if (read_len(c, n) < 0)
        return -1;
    *s = c->buf + c->pos;
    c->pos += *n;
    return 0;
}

/* One envelope into b (and its key into ks): 0 qualifies, REFUSE, NOMEM. */
static int
envelope(Program *p, Cur *c, Buf *b, KeySet *ks, Buf *bkey, Py_ssize_t row, const char *origin,
         Py_ssize_t origin_len, PyObject **position)
{
    const unsigned char *pos_s = NULL, *s;
    Py_ssize_t pos_n = 0, n;
    int op_ok = 0, has_before = 0;
    int64_t v;
    Py_ssize_t key_start = ks->keys.len;
    int col = 0;
    bkey->len = 0;
    if (row_begin(p, b, row) < 0)
        return NOMEM;
    for (Py_ssize_t i = 0; i < p->ninstr; i++) {
        const Instr *in = &p->instr[i];
        switch (in->kind) {
        case I_SKIP:
            if (skip(p, c, in->a, 0) < 0)
                return REFUSE;
            break;
        case I_OP:
            if (read_len(c, &n) < 0)
                return REFUSE;
            s = c->buf + c->pos;
            c->pos += n;
            op_ok = n == 1 && (in->a ? s[0] == 'u' : (s[0] == 'c' || s[0] == 'r'));
            if (!op_ok)
                return REFUSE;
            break;
        case I_NULL:
        case I_BRANCH:
            if (read_long(c, &v) < 0 || v != in->a)
                return REFUSE;
            break;
        case I_POSITION:
            if (string_value(c, in->a, &pos_s, &pos_n) < 0 || pos_s == NULL || pos_n == 0)
                return REFUSE;
            break;
        case I_ORIGIN:
            if (string_value(c, in->a, &s, &n) < 0)
                return REFUSE;
            if (s != NULL && origin != NULL && n == origin_len && memcmp(s, origin, (size_t)n) == 0)
                return REFUSE; /* the sink's own origin: the general path skips it */
            break;
        case I_EMPTY: {
            SNode *nd = &p->nodes[in->a];
            if (read_long(c, &v) < 0 || v < 0 || v >= nd->n)
                return REFUSE;
            SNode *k = &p->nodes[nd->kids[v]];
            if (k->kind == N_NULL)
                break;
            if (k->kind != N_ARRAY && k->kind != N_MAP)
                return REFUSE;
            if (read_long(c, &v) < 0 || v != 0)
                return REFUSE; /* items: the general path handles the flags */
            break;
        }
        case I_BEFORE:
            if (read_long(c, &v) < 0 || v < 0 || v > 1)
                return REFUSE;
            if (v == in->a)
                i += in->b; /* no before image: its row instructions do not apply */
            else
                has_before = 1;
            break;
        case I_BKEY: {
            int r = column(in, c, bkey);
            if (r != 0)
                return r;
            if (reserve(bkey, 1) < 0)
                return NOMEM;
            bkey->data[bkey->len++] = 0xff; /* ends the value: the key bytes stay unambiguous */
            break;
        }
        case I_COL: {
            if (col_begin(b, col++) < 0)
                return NOMEM;
            Py_ssize_t before = b->len;
            int r = column(in, c, b);
            if (r != 0)
                return r;
            if (in->key) {
                Py_ssize_t add = b->len - before;
                if (reserve(&ks->keys, add + 1) < 0)
                    return NOMEM;
                memcpy(ks->keys.data + ks->keys.len, b->data + before, (size_t)add);
                ks->keys.len += add;
                ks->keys.data[ks->keys.len++] = 0xff;
            }
            break;
        }
        }
        if (c->pos > c->len)
            return REFUSE;
    }
    if (c->pos != c->len || !op_ok || pos_s == NULL)
        return REFUSE;
    if (row_end(b) < 0)
        return NOMEM;
    if (has_before && (bkey->len != ks->keys.len - key_start
                       || (bkey->len > 0 && memcmp(bkey->data, ks->keys.data + key_start, (size_t)bkey->len) != 0)))
        return REFUSE; /* a key change: the general path moves the row */
    if (utf8_chars(pos_s, pos_n) < 0)
        return REFUSE;
    if (key_reserve(ks, row) < 0) {
        PyErr_NoMemory();
        return NOMEM;
    }
    if (!key_add(ks, row, key_start, ks->keys.len - key_start))
        return REFUSE; /* the key is in the run already: the general path reduces */
    *position = PyUnicode_DecodeUTF8((const char *)pos_s, pos_n, "strict");
    return *position == NULL ? NOMEM : 0;
}

/* encode(program, values, start, stop, origin, header_len) -> (rows, payload, positions)
 * (each extension exposes it as its module's encode())
 *
 * values[start:stop] are Confluent-framed envelope bytes: the first header_len bytes
 * (magic byte and schema id) of each must equal the first value's, which the caller
 * matched to the program. Encodes the longest prefix that qualifies; payload holds
 * its rows (as the format frames them, nothing around them), positions each one's cdc_position text. */
static PyObject *
encode(PyObject *mod, PyObject *args)
{
    PyObject *prog_o, *values;
    Py_ssize_t start, stop, header;
    const char *origin = NULL;
    Py_ssize_t origin_len = 0;
    if (!PyArg_ParseTuple(args, "O!O!nnz#n", &ProgramType, &prog_o, &PyList_Type, &values, &start,
                          &stop, &origin, &origin_len, &header))
        return NULL;
    Program *p = (Program *)prog_o;
    Py_ssize_t total = PyList_GET_SIZE(values);
    if (start < 0)
        start = 0;
    if (stop > total)
        stop = total;
    if (header < 0)
        header = 0;
    PyObject *positions = PyList_New(0);
    if (positions == NULL)
        return NULL;
    Buf b = {0}, bkey = {0};
    KeySet ks = {0};
    const unsigned char *frame = NULL;
    Py_ssize_t rows = 0;
    for (Py_ssize_t i = start; i < stop; i++) {
        PyObject *val = PyList_GET_ITEM(values, i);
        if (!PyBytes_Check(val))
            break;
        const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(val);
        Py_ssize_t len = PyBytes_GET_SIZE(val);
        if (len < header)
            break;
        if (frame == NULL)
            frame = data;
        else if (header && memcmp(frame, data, (size_t)header) != 0)
            break; /* another schema id */
        Cur c = {data, len, header};
        Py_ssize_t mark = b.len, kmark = ks.keys.len;
        PyObject *position = NULL;
        int r = envelope(p, &c, &b, &ks, &bkey, rows, origin, origin_len, &position);
        if (r == NOMEM)
            goto error;
        if (r == REFUSE) {
            b.len = mark;
            ks.keys.len = kmark;
            break;
        }
        int appended = PyList_Append(positions, position);
        Py_DECREF(position);
        if (appended < 0)
            goto error;
        rows++;
        if (p->max_bytes && b.len >= p->max_bytes)
            break; /* the payload is full: the next run starts here */
    }
    PyObject *payload = PyBytes_FromStringAndSize(b.len ? (const char *)b.data : "", b.len);
    PyMem_Free(b.data);
    PyMem_Free(bkey.data);
    PyMem_Free(ks.slots);
    PyMem_Free(ks.kstart);
    PyMem_Free(ks.klen);
    PyMem_Free(ks.keys.data);
    if (payload == NULL) {
        Py_DECREF(positions);
        return NULL;
    }
    return Py_BuildValue("(nNN)", rows, payload, positions);
error:
    PyMem_Free(b.data);
    PyMem_Free(bkey.data);
    PyMem_Free(ks.slots);
    PyMem_Free(ks.kstart);
    PyMem_Free(ks.klen);
    PyMem_Free(ks.keys.data);
    Py_DECREF(positions);
    return NULL;
}
#endif
