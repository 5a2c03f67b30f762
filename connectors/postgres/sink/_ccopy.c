/* Native run encoder: cdc change envelopes (Avro) -> PostgreSQL binary COPY tuples.
 *
 * The PostgreSQL sink's batch-level fast path: the engine's run walker
 * (cdc/sink/runwalk.h) with this format's hooks; connectors/postgres/sink/copyrun.py
 * holds the pure-Python reference of the converters and compiles the programs.
 * A Program is a flat list of instructions, one per Avro value of the envelope
 * in schema order (records have no framing in Avro, so the fields of `source`
 * and of the `after` row are inlined). encode() walks consecutive envelopes of
 * one writer schema and appends, for each that qualifies (op c or r and no
 * before image, or for an update program op u and no before image or one with
 * the after image's key; no unchanged/absent/special-value flags, a position
 * text, not of the sink's own origin, every value convertible exactly to its
 * replica column, a key not seen earlier in the run), one binary COPY tuple
 * of the after image; it stops at the
 * first one that does not, without raising: the caller hands that record to
 * the general path, which decides and names every problem. So the only
 * exceptions are MemoryError and TypeError for wrong arguments.
 *
 * Values are refused (the run ends) rather than coerced: out-of-range ints,
 * NaN floats, invalid or NUL-containing UTF-8, strings longer than varchar(n),
 * dates and timestamps outside years 1..9999 or with more fraction than the
 * column keeps, decimals that do not fit numeric(p, s) or exceed 16 bytes,
 * uuids not in lowercase hyphenated form, timestamptz texts not in cdc's form.
 * Only the CPython C API, C11.
 */
#define RUN_PROGRAM_NAME "connectors.postgres.sink._ccopy.Program"
#include "cdc/sink/runwalk.h"

/* column converters (copyrun.py mirrors these numbers) */
enum {
    C_BOOL = 1, C_INT2 = 2, C_INT4 = 3, C_INT8 = 4, C_FLOAT4 = 5, C_FLOAT8 = 6, C_TEXT = 7,
    C_BYTEA = 8, C_DATE = 9, C_TS = 10, C_TSTZ = 11, C_UUID = 12, C_NUMERIC = 13,
};

static void
put_be(unsigned char *out, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

/* Append a field: 4-byte length then `n` bytes (filled by the caller at the returned pointer). */
static unsigned char *
field(Buf *b, Py_ssize_t n)
{
    if (reserve(b, 4 + n) < 0)
        return NULL;
    put_be(b->data + b->len, (uint64_t)(uint32_t)n, 4);
    unsigned char *out = b->data + b->len + 4;
    b->len += 4 + n;
    return out;
}


/* ------------------------------------------------------------------ converters */


#define PG_EPOCH_DAYS 10957  /* 2000-01-01 */

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Two's complement big-endian unscaled value (1..16 bytes) with `scale` -> PostgreSQL
 * numeric binary, as psycopg dumps the equal Decimal; p2/p3: the column's precision
 * and scale (-1: unconstrained). */
static int
put_numeric(Buf *b, const unsigned char *s, Py_ssize_t n, int scale, int tprec, int tscale)
{
    if (n < 1 || n > 16)
        return REFUSE;
    unsigned __int128 mag = 0;
    int neg = (s[0] & 0x80) != 0;
    for (Py_ssize_t i = 0; i < n; i++)
        mag = (mag << 8) | (unsigned __int128)(neg ? (unsigned char)~s[i] : s[i]);
    if (neg)
        mag += 1; /* |v| of a negative two's complement value: ~v + 1 */
    char dig[48];
    int nd = 0;
    char tmp[48];
    unsigned __int128 m = mag;
    while (m) {
        tmp[nd++] = (char)('0' + (int)(m % 10));
        m /= 10;
    }
    for (int i = 0; i < nd; i++)
        dig[i] = tmp[nd - 1 - i];
    int nz = nd;
    while (nz > 0 && dig[nz - 1] == '0')
        nz--;
    if (tprec >= 0 && nz > 0) {
        int frac_used = nz - (nd - scale); /* significant fraction digits */
        if (frac_used > tscale)
            return REFUSE;
        int int_digits = nd - scale;
        if (int_digits > tprec - tscale)
            return REFUSE;
    }
    unsigned char *o;
    if (nz == 0) {
        if ((o = field(b, 8)) == NULL)
            return NOMEM;
        put_be(o, 0, 2);
        put_be(o + 2, 0, 2);
        put_be(o + 4, 0, 2);
        put_be(o + 6, (uint64_t)scale, 2);
        return 0;
    }
    int wi = (((nd - scale) % 4) + 4) % 4;
    wi = wi ? 4 - wi : 0;
    int padded = nd + wi;
    int weight = (padded - scale) / 4 - 1;
    int ngroups = (nz + wi + 3) / 4;
    if ((o = field(b, 8 + 2 * ngroups)) == NULL)
        return NOMEM;
    put_be(o, (uint64_t)ngroups, 2);
    put_be(o + 2, (uint64_t)(uint16_t)(int16_t)weight, 2);
    put_be(o + 4, neg ? 0x4000 : 0, 2);
    put_be(o + 6, (uint64_t)scale, 2);
    for (int g = 0; g < ngroups; g++) {
        int v = 0;
        for (int k = 0; k < 4; k++) {
            int i = g * 4 + k - wi; /* index into dig */
            v = v * 10 + ((i >= 0 && i < nd) ? dig[i] - '0' : 0);
        }
        put_be(o + 8 + 2 * g, (uint64_t)v, 2);
    }
    return 0;
}

/* One column value at c into b: 0, REFUSE, or NOMEM. */
static int
column(const Instr *in, Cur *c, Buf *b)
{
    int64_t v;
    Py_ssize_t n;
    unsigned char *o;
    if (in->b >= 0) { /* nullable: ["null", T] or [T, "null"] */
        if (read_long(c, &v) < 0 || v < 0 || v > 1)
            return REFUSE;
        if (v == in->b) {
            if (reserve(b, 4) < 0)
                return NOMEM;
            put_be(b->data + b->len, 0xffffffffu, 4);
            b->len += 4;
            return 0;
        }
    }
    switch (in->a) {
    case C_BOOL:
        if (c->pos >= c->len || c->buf[c->pos] > 1)
            return REFUSE;
        if ((o = field(b, 1)) == NULL)
            return NOMEM;
        o[0] = c->buf[c->pos++];
        return 0;
    case C_INT2:
    case C_INT4:
    case C_INT8: {
        if (read_long(c, &v) < 0)
            return REFUSE;
        if (in->avro_int && (v < INT32_MIN || v > INT32_MAX))
            return REFUSE;
        int w = in->a == C_INT2 ? 2 : in->a == C_INT4 ? 4 : 8;
        if ((w == 2 && (v < INT16_MIN || v > INT16_MAX)) || (w == 4 && (v < INT32_MIN || v > INT32_MAX)))
            return REFUSE;
        if ((o = field(b, w)) == NULL)
            return NOMEM;
        put_be(o, (uint64_t)v, w);
        return 0;
    }
    case C_FLOAT4:
    case C_FLOAT8: {
        int w = in->a == C_FLOAT4 ? 4 : 8;
        if (c->len - c->pos < w)
            return REFUSE;
        const unsigned char *s = c->buf + c->pos;
        uint64_t bits = 0;
        for (int i = w - 1; i >= 0; i--)
            bits = (bits << 8) | s[i];
        if (w == 4 ? ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x7fffffu))
                   : ((bits & UINT64_C(0x7ff0000000000000)) == UINT64_C(0x7ff0000000000000)
                      && (bits & UINT64_C(0xfffffffffffff))))
            return REFUSE; /* NaN: the general path decides its bits */
        c->pos += w;
        if ((o = field(b, w)) == NULL)
            return NOMEM;
        put_be(o, bits, w);
        return 0;
    }
    case C_TEXT:
    case C_BYTEA:
    case C_TSTZ:
    case C_UUID:
    case C_NUMERIC: {
        if (read_len(c, &n) < 0)
            return REFUSE;
        const unsigned char *s = c->buf + c->pos;
        c->pos += n;
        if (in->a == C_TEXT) {
            Py_ssize_t chars = utf8_chars(s, n);
            if (chars < 0 || (in->p1 >= 0 && chars > in->p1))
                return REFUSE;
        } else if (in->a == C_TSTZ) {
            int64_t us;
            if (parse_tstz(s, n, &us) < 0)
                return REFUSE;
            if (in->p1 < 6 && us % POW10[6 - in->p1])
                return REFUSE;
            if ((o = field(b, 8)) == NULL)
                return NOMEM;
            put_be(o, (uint64_t)(us - PG_EPOCH_DAYS * DAY_US), 8);
            return 0;
        } else if (in->a == C_UUID) {
            if (n != 36)
                return REFUSE;
            unsigned char u[16];
            int k = 0;
            for (int i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                    if (s[i] != '-')
                        return REFUSE;
                    continue;
                }
                int h1 = hexval(s[i]), h2 = hexval(s[i + 1]);
                if (h1 < 0 || h2 < 0)
                    return REFUSE;
                u[k++] = (unsigned char)(h1 * 16 + h2);
                i++;
            }
            if ((o = field(b, 16)) == NULL)
                return NOMEM;
            memcpy(o, u, 16);
            return 0;
        } else if (in->a == C_NUMERIC) {
            return put_numeric(b, s, n, (int)in->p1, (int)in->p2, (int)in->p3);
        }
        if ((o = field(b, n)) == NULL)
            return NOMEM;
        if (n)
            memcpy(o, s, (size_t)n);
        return 0;
    }
    case C_DATE:
        if (read_long(c, &v) < 0 || v < MIN_DAYS || v > MAX_DAYS)
            return REFUSE;
        if ((o = field(b, 4)) == NULL)
            return NOMEM;
        put_be(o, (uint64_t)(uint32_t)(int32_t)(v - PG_EPOCH_DAYS), 4);
        return 0;
    case C_TS:
        if (read_long(c, &v) < 0 || v < MIN_DAYS * DAY_US || v >= (MAX_DAYS + 1) * DAY_US)
            return REFUSE;
        if (in->p1 < 6 && v % POW10[6 - in->p1])
            return REFUSE;
        if ((o = field(b, 8)) == NULL)
            return NOMEM;
        put_be(o, (uint64_t)(v - PG_EPOCH_DAYS * DAY_US), 8);
        return 0;
    }
    return REFUSE;
}

static int
check_instr(const Instr *in)
{
    if ((in->a == C_TS || in->a == C_TSTZ) && (in->p1 < 0 || in->p1 > 6)) {
        PyErr_SetString(PyExc_ValueError, "fraction out of range");
        return -1;
    }
    if (in->a == C_NUMERIC && (in->p1 < 0 || in->p1 > 38)) {
        PyErr_SetString(PyExc_ValueError, "numeric scale out of range");
        return -1;
    }
    return 0;
}

/* A tuple: its field count, then the fields. */
static int
row_begin(const Program *p, Buf *b, Py_ssize_t row)
{
    (void)row;
    if (reserve(b, 2) < 0)
        return NOMEM;
    put_be(b->data + b->len, (uint64_t)p->ncols, 2);
    b->len += 2;
    return 0;
}

static int
col_begin(Buf *b, int index)
{
    (void)b;
    (void)index;
    return 0;
}

static int
row_end(Buf *b)
{
    (void)b;
    return 0;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS,
     "encode(program, values, start, stop, origin, header_len) -> (rows, payload, positions)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "connectors.postgres.sink._ccopy",
    "cdc change envelopes -> PostgreSQL binary COPY tuples (see copyrun.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__ccopy(void)
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
