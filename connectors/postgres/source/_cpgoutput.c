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

/* read_tuple(buf: bytes, pos: int, unchanged: object) -> (tuple, next_pos) */
static PyObject *read_tuple(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "read_tuple(buf: bytes, pos: int, unchanged)");
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t end = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    PyObject *unchanged = args[2];
    if (pos < 0 || pos + 2 > end) goto malformed;
    Py_ssize_t ncols = ((Py_ssize_t)buf[pos] << 8) | buf[pos + 1];
    pos += 2;
    PyObject *values = PyTuple_New(ncols);
    if (values == NULL) return NULL;
    for (Py_ssize_t i = 0; i < ncols; i++) {
        if (pos >= end) goto malformed_values;
        unsigned char kind = buf[pos];
        PyObject *v;
        if (kind == 't' || kind == 'b') {
            if (pos + 5 > end) goto malformed_values;
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
    PyObject *out = Py_BuildValue("(Nn)", values, pos);
    return out;
malformed_values:
    Py_DECREF(values);
malformed:
    PyErr_SetNone(PyExc_ValueError);
    return NULL;
}

static PyMethodDef methods[] = {
    {"read_tuple", (PyCFunction)(void (*)(void))read_tuple, METH_FASTCALL,
     "read_tuple(buf, pos, unchanged) -> (values, next_pos); ValueError if malformed"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "connectors.postgres.source._cpgoutput",
    "Native pgoutput TupleData parsing (decoder._read_tuple is the reference).", -1, methods,
};

PyMODINIT_FUNC PyInit__cpgoutput(void) { return PyModule_Create(&module_def); }
