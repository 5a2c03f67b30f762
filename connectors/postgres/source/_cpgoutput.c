/*
 * Native parsing of pgoutput TupleData (the column values of Insert/Update/Delete).
 *
 * Mirrors decoder._read_tuple for well-formed input. On anything malformed it raises
 * ValueError without detail: the caller re-parses with the Python reference, which
 * owns the error message and the offset it reports.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* TupleData at *pos_io of buf[0:end]: a new tuple, or NULL with ValueError (malformed). */
static PyObject *parse_tuple(const unsigned char *buf, Py_ssize_t end, Py_ssize_t *pos_io,
                             PyObject *unchanged) {
    Py_ssize_t pos = *pos_io;
    if (pos < 0 || pos > end || end - pos < 2) goto malformed; /* no overflow on any pos */
    Py_ssize_t ncols = ((Py_ssize_t)buf[pos] << 8) | buf[pos + 1];
    pos += 2;
    PyObject *values = PyTuple_New(ncols);
    if (values == NULL) return NULL;
    for (Py_ssize_t i = 0; i < ncols; i++) {
        if (pos >= end) goto malformed_values;
        unsigned char kind = buf[pos];
        PyObject *v;
        if (kind == 't' || kind == 'b') {
            if (end - pos < 5) goto malformed_values;
            uint32_t n = ((uint32_t)buf[pos + 1] << 24) | ((uint32_t)buf[pos + 2] << 16) |
                         ((uint32_t)buf[pos + 3] << 8) | (uint32_t)buf[pos + 4];
            Py_ssize_t start = pos + 5;
            if ((Py_ssize_t)n > end - start) goto malformed_values;
            if (kind == 't') {
                v = PyUnicode_DecodeUTF8((const char *)buf + start, (Py_ssize_t)n, "strict");
                if (v == NULL) {
                    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                        Py_DECREF(values);
                        return NULL;
                    }
                    PyErr_Clear();
                    goto malformed_values;
                }
            } else {
                v = PyBytes_FromStringAndSize((const char *)buf + start, (Py_ssize_t)n);
                if (v == NULL) {
                    Py_DECREF(values);
                    return NULL;
                }
            }
            pos = start + (Py_ssize_t)n;
        } else if (kind == 'n') {
            v = Py_NewRef(Py_None);
            pos += 1;
        } else if (kind == 'u') {
            v = Py_NewRef(unchanged);
            pos += 1;
        } else {
            goto malformed_values;
        }
        PyTuple_SET_ITEM(values, i, v);
    }
    *pos_io = pos;
    return values;
malformed_values:
    Py_DECREF(values);
malformed:
    PyErr_SetNone(PyExc_ValueError);
    return NULL;
}

/* read_tuple(buf: bytes, pos: int, unchanged: object) -> (tuple, next_pos) */
static PyObject *read_tuple(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "read_tuple(buf: bytes, pos: int, unchanged)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    PyObject *values = parse_tuple((const unsigned char *)PyBytes_AS_STRING(args[0]),
                                   PyBytes_GET_SIZE(args[0]), &pos, args[2]);
    if (values == NULL) return NULL;
    return Py_BuildValue("(Nn)", values, pos);
}

/*
 * parse_row(buf: bytes, in_stream: bool, unchanged) -> (relid, new, old, old_kind)
 *
 * An Insert ('I'), Update ('U') or Delete ('D') message, whole: new/old are tuples or
 * None, old_kind is 'K', 'O' or None. ValueError for anything else or malformed input.
 */
static PyObject *parse_row(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "parse_row(buf: bytes, in_stream: bool, unchanged)");
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t end = PyBytes_GET_SIZE(args[0]);
    int in_stream = PyObject_IsTrue(args[1]);
    if (in_stream < 0) return NULL;
    PyObject *unchanged = args[2];
    PyObject *new_t = NULL, *old_t = NULL;
    const char *kind = NULL;
    Py_ssize_t pos = in_stream ? 5 : 1; /* tag, then the xid inside a stream block */
    if (end < pos + 5) goto malformed;
    unsigned char tag = buf[0];
    uint32_t relid = ((uint32_t)buf[pos] << 24) | ((uint32_t)buf[pos + 1] << 16) |
                     ((uint32_t)buf[pos + 2] << 8) | (uint32_t)buf[pos + 3];
    unsigned char marker = buf[pos + 4];
    pos += 5;
    if (tag == 'I') {
        if (marker != 'N') goto malformed;
        new_t = parse_tuple(buf, end, &pos, unchanged);
        if (new_t == NULL) goto fail;
    } else if (tag == 'U') {
        if (marker == 'K' || marker == 'O') {
            kind = marker == 'K' ? "K" : "O";
            old_t = parse_tuple(buf, end, &pos, unchanged);
            if (old_t == NULL) goto fail;
            if (pos >= end) goto malformed;
            marker = buf[pos++];
        }
        if (marker != 'N') goto malformed;
        new_t = parse_tuple(buf, end, &pos, unchanged);
        if (new_t == NULL) goto fail;
    } else if (tag == 'D') {
        if (marker != 'K' && marker != 'O') goto malformed;
        kind = marker == 'K' ? "K" : "O";
        old_t = parse_tuple(buf, end, &pos, unchanged);
        if (old_t == NULL) goto fail;
    } else {
        goto malformed;
    }
    if (pos != end) goto malformed;
    if (new_t == NULL) new_t = Py_NewRef(Py_None);
    if (old_t == NULL) old_t = Py_NewRef(Py_None);
    PyObject *kind_obj = kind == NULL ? Py_NewRef(Py_None) : PyUnicode_InternFromString(kind);
    if (kind_obj == NULL) goto fail;
    return Py_BuildValue("(kNNN)", (unsigned long)relid, new_t, old_t, kind_obj);
malformed:
    PyErr_SetNone(PyExc_ValueError);
fail:
    Py_XDECREF(new_t);
    Py_XDECREF(old_t);
    return NULL;
}

static PyMethodDef methods[] = {
    {"read_tuple", (PyCFunction)(void (*)(void))read_tuple, METH_FASTCALL,
     "read_tuple(buf, pos, unchanged) -> (values, next_pos); ValueError if malformed"},
    {"parse_row", (PyCFunction)(void (*)(void))parse_row, METH_FASTCALL,
     "parse_row(buf, in_stream, unchanged) -> (relid, new, old, old_kind); ValueError if not"},
    {NULL, NULL, 0, NULL},
};

/* No module state at all: multi-phase init, safe in any interpreter; it declares that
 * it needs the GIL (it fills tuples under it) where Python has Py_mod_gil. */
static PyModuleDef_Slot module_slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "connectors.postgres.source._cpgoutput",
    .m_doc = "Native pgoutput TupleData parsing (decoder._read_tuple is the reference).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__cpgoutput(void) { return PyModuleDef_Init(&module_def); }
