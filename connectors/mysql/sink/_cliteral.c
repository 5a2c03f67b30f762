/* SQL literal text of MariaDB/MySQL upsert rows (optional; the Python literal
 * functions of connectors/mysql/sink/dialect.py are the reference).
 *
 * row(values, fallback, no_backslash) -> "(v1,v2,...)" writes, by exact type,
 * None, bool, int, ASCII str, date, datetime and finite float as
 * literals.fast_literals() does (PyMySQL's Connection.escape text; str escaped
 * with PyMySQL's table, or only quotes doubled when the server runs with
 * NO_BACKSLASH_ESCAPES; a float as its repr, with "e0" appended when the repr
 * has no exponent), and hands every other value (non-ASCII str, Decimal,
 * NaN and infinities, timedelta, subclasses...)
 * to fallback(v), which must return its literal as a str. Tests compare both.
 * The values are walked in a private tuple copy: a fallback may change the
 * caller's list without touching what is being written.
 * Only the CPython C API, C11.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    PyObject *pieces; /* list of str, once a non-ASCII piece appeared (else NULL) */
} Out;

static int
reserve(Out *o, Py_ssize_t more)
{
    if (o->len + more <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + more)
        cap *= 2;
    char *b = PyMem_Realloc(o->buf, (size_t)cap);
    if (b == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = b;
    o->cap = cap;
    return 0;
}

static int
put(Out *o, const char *s, Py_ssize_t n)
{
    if (reserve(o, n) < 0)
        return -1;
    memcpy(o->buf + o->len, s, (size_t)n);
    o->len += n;
    return 0;
}

/* Move the ASCII buffer into the piece list (as one str). */
static int
flush(Out *o)
{
    if (o->pieces == NULL) {
        o->pieces = PyList_New(0);
        if (o->pieces == NULL)
            return -1;
    }
    if (o->len) {
        PyObject *s = PyUnicode_FromStringAndSize(o->buf, o->len);
        if (s == NULL)
            return -1;
        int rc = PyList_Append(o->pieces, s);
        Py_DECREF(s);
        if (rc < 0)
            return -1;
        o->len = 0;
    }
    return 0;
}

/* Append a str (a fallback's result). */
static int
put_str(Out *o, PyObject *s)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "a literal must be a str, not %.80s", Py_TYPE(s)->tp_name);
        return -1;
    }
    if (PyUnicode_IS_ASCII(s))
        return put(o, (const char *)PyUnicode_1BYTE_DATA(s), PyUnicode_GET_LENGTH(s));
    if (flush(o) < 0)
        return -1;
    return PyList_Append(o->pieces, s);
}

static int
put_ascii_str(Out *o, PyObject *v, int no_backslash)
{
    const unsigned char *s = PyUnicode_1BYTE_DATA(v);
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    if (reserve(o, 2 * n + 2) < 0)
        return -1;
    char *d = o->buf + o->len;
    *d++ = '\'';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (no_backslash) {
            if (c == '\'')
                *d++ = '\'';
            *d++ = (char)c;
            continue;
        }
        switch (c) {
        case 0: *d++ = '\\'; *d++ = '0'; break;
        case '\\': *d++ = '\\'; *d++ = '\\'; break;
        case '\n': *d++ = '\\'; *d++ = 'n'; break;
        case '\r': *d++ = '\\'; *d++ = 'r'; break;
        case 032: *d++ = '\\'; *d++ = 'Z'; break;
        case '"': *d++ = '\\'; *d++ = '"'; break;
        case '\'': *d++ = '\\'; *d++ = '\''; break;
        default: *d++ = (char)c;
        }
    }
    *d++ = '\'';
    o->len = d - o->buf;
    return 0;
}

static int
put_value(Out *o, PyObject *v, PyObject *fallback, int no_backslash)
{
    char tmp[64];
    int n;
    if (v == Py_None)
        return put(o, "NULL", 4);
    if (v == Py_True)
        return put(o, "1", 1);
    if (v == Py_False)
        return put(o, "0", 1);
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow) {
            if (x == -1 && PyErr_Occurred())
                return -1;
            n = snprintf(tmp, sizeof tmp, "%lld", x);
            return put(o, tmp, n);
        }
        PyObject *s = PyLong_Type.tp_repr(v);
        if (s == NULL)
            return -1;
        int rc = put_str(o, s);
        Py_DECREF(s);
        return rc;
    }
    if (PyUnicode_CheckExact(v) && PyUnicode_IS_ASCII(v))
        return put_ascii_str(o, v, no_backslash);
    if (PyDateTime_CheckExact(v)) {
        int us = PyDateTime_DATE_GET_MICROSECOND(v);
        if (us)
            n = snprintf(tmp, sizeof tmp, "'%04d-%02d-%02d %02d:%02d:%02d.%06d'",
                         PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v),
                         PyDateTime_DATE_GET_HOUR(v), PyDateTime_DATE_GET_MINUTE(v),
                         PyDateTime_DATE_GET_SECOND(v), us);
        else
            n = snprintf(tmp, sizeof tmp, "'%04d-%02d-%02d %02d:%02d:%02d'",
                         PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v),
                         PyDateTime_DATE_GET_HOUR(v), PyDateTime_DATE_GET_MINUTE(v),
                         PyDateTime_DATE_GET_SECOND(v));
        return put(o, tmp, n);
    }
    if (PyDate_CheckExact(v)) {
        n = snprintf(tmp, sizeof tmp, "'%04d-%02d-%02d'", PyDateTime_GET_YEAR(v),
                     PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v));
        return put(o, tmp, n);
    }
    if (PyFloat_CheckExact(v) && isfinite(PyFloat_AS_DOUBLE(v))) {
        /* float.__repr__'s text (the same call), as literals._float_literal writes it */
        char *r = PyOS_double_to_string(PyFloat_AS_DOUBLE(v), 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (r == NULL)
            return -1;
        size_t len = strlen(r);
        int rc = put(o, r, (Py_ssize_t)len);
        if (rc == 0 && memchr(r, 'e', len) == NULL)
            rc = put(o, "e0", 2);
        PyMem_Free(r);
        return rc;
    }
    PyObject *s = PyObject_CallOneArg(fallback, v);
    if (s == NULL)
        return -1;
    int rc = put_str(o, s);
    Py_DECREF(s);
    return rc;
}

static PyObject *
mod_row(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "row(values, fallback, no_backslash)");
        return NULL;
    }
    int no_backslash = PyObject_IsTrue(args[2]);
    if (no_backslash < 0)
        return NULL;
    /* A tuple (a copy of a list): the fallback runs Python code that may mutate the
     * caller's list, which must not free or move the items walked here. */
    PyObject *seq = PySequence_Tuple(args[0]);
    if (seq == NULL)
        return NULL;
    Out o = {NULL, 0, 0, NULL};
    PyObject *result = NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(seq);
    PyObject **items = &PyTuple_GET_ITEM(seq, 0);
    if (put(&o, "(", 1) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i && put(&o, ",", 1) < 0)
            goto done;
        if (put_value(&o, items[i], args[1], no_backslash) < 0)
            goto done;
    }
    if (put(&o, ")", 1) < 0)
        goto done;
    if (o.pieces == NULL) {
        result = PyUnicode_FromStringAndSize(o.buf, o.len);
    } else if (flush(&o) == 0) {
        PyObject *empty = PyUnicode_FromStringAndSize("", 0);
        if (empty != NULL) {
            result = PyUnicode_Join(empty, o.pieces);
            Py_DECREF(empty);
        }
    }
done:
    PyMem_Free(o.buf);
    Py_XDECREF(o.pieces);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"row", (PyCFunction)(void (*)(void))mod_row, METH_FASTCALL,
     "row(values, fallback, no_backslash) -> the row's SQL literal text \"(v1,v2,...)\"."},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *m)
{
    /* the datetime C API capsule: process-wide, as for every extension using it */
    PyDateTime_IMPORT;
    return PyDateTimeAPI == NULL ? -1 : 0;
}

/* No module state: multi-phase init; it declares that it needs the GIL where Python
 * has Py_mod_gil. */
static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "connectors.mysql.sink._cliteral",
    .m_doc = "SQL literal text of MariaDB/MySQL rows (dialect._literals is the reference).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC
PyInit__cliteral(void)
{
    return PyModuleDef_Init(&module);
}
