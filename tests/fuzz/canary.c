/* make sanitize's canary: two planted bugs the sanitizer build must catch.
 * Built and loaded exactly like the extensions under test; if either call
 * returns normally, the sanitizers are not active and the run proves nothing. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

static PyObject *heap(PyObject *m, PyObject *n) {
    long k = PyLong_AsLong(n);
    char *p = malloc(8);
    if (p == NULL) return PyErr_NoMemory();
    p[k] = 1; /* k = 8: one past the end */
    free(p);
    Py_RETURN_NONE;
}

static PyObject *sign(PyObject *m, PyObject *n) {
    int k = (int)PyLong_AsLong(n);
    return PyLong_FromLong(k + 2147483647); /* k = 1: signed overflow */
}

static PyMethodDef methods[] = {
    {"heap", heap, METH_O, NULL}, {"sign", sign, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_canary", NULL, 0, methods};
PyMODINIT_FUNC PyInit__canary(void) { return PyModule_Create(&mod); }
