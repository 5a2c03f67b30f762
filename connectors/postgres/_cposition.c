/* Native sort keys of PostgreSQL positions' cdc_position texts (optional;
 * connectors/postgres/position_text.py is the reference, tested for parity).
 *
 * The sinks check every record's position against the partition's checkpoint;
 * reading the key straight from the text, without a regular expression or a
 * PgPosition, keeps that check cheap. Only the CPython C API, C11.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* text_sort_key(head, text) -> (lsn, index key) | None: the sort key of a
 * PgPosition's cdc_position text in the exact form the source writes, i.e. text matching
 *   head [0-9A-F]{1,8} "/" [0-9A-F]{1,8} '","index":' digits ',"snapshot":' (true|false)
 *   ',"last_in_tx":' (true|false) "}"
 * with ASCII digits (at most 18 of them). None for anything else: the Python
 * parser (connectors.postgres.position_text.text_key, a regular expression) decides then. */
static int
hex8(const unsigned char *s, Py_ssize_t n, Py_ssize_t *p, uint64_t *out)
{
    Py_ssize_t i = *p;
    uint64_t v = 0;
    int k = 0;
    while (i < n && k < 8) {
        unsigned char c = s[i];
        if (c >= '0' && c <= '9')
            v = (v << 4) | (uint64_t)(c - '0');
        else if (c >= 'A' && c <= 'F')
            v = (v << 4) | (uint64_t)(c - 'A' + 10);
        else
            break;
        i++;
        k++;
    }
    if (k == 0)
        return 0;
    *p = i;
    *out = v;
    return 1;
}

static int
literal(const unsigned char *s, Py_ssize_t n, Py_ssize_t *p, const char *lit)
{
    size_t len = strlen(lit);
    if ((size_t)(n - *p) < len || memcmp(s + *p, lit, len) != 0)
        return 0;
    *p += (Py_ssize_t)len;
    return 1;
}

static int
boolean(const unsigned char *s, Py_ssize_t n, Py_ssize_t *p, int *out)
{
    if (literal(s, n, p, "true")) {
        *out = 1;
        return 1;
    }
    if (literal(s, n, p, "false")) {
        *out = 0;
        return 1;
    }
    return 0;
}

static PyObject *
text_sort_key(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "text_sort_key(head: str, text: str)");
        return NULL;
    }
    PyObject *head = args[0], *text = args[1];
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(head) < 0 || PyUnicode_READY(text) < 0)
        return NULL;
#endif
    if (!PyUnicode_IS_ASCII(head) || !PyUnicode_IS_ASCII(text))
        Py_RETURN_NONE;
    const unsigned char *h = PyUnicode_1BYTE_DATA(head), *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t hn = PyUnicode_GET_LENGTH(head), n = PyUnicode_GET_LENGTH(text), p = hn;
    uint64_t hi, lo, index = 0;
    int snapshot, last, digits = 0;
    if (n < hn || memcmp(s, h, (size_t)hn) != 0)
        Py_RETURN_NONE;
    if (!hex8(s, n, &p, &hi) || !literal(s, n, &p, "/") || !hex8(s, n, &p, &lo)
        || !literal(s, n, &p, "\",\"index\":"))
        Py_RETURN_NONE;
    while (p < n && s[p] >= '0' && s[p] <= '9') {
        if (++digits > 18)
            Py_RETURN_NONE;
        index = index * 10 + (uint64_t)(s[p] - '0');
        p++;
    }
    if (digits == 0 || !literal(s, n, &p, ",\"snapshot\":") || !boolean(s, n, &p, &snapshot)
        || !literal(s, n, &p, ",\"last_in_tx\":") || !boolean(s, n, &p, &last)
        || !literal(s, n, &p, "}") || p != n)
        Py_RETURN_NONE;
    (void)last;
    return Py_BuildValue("(NN)", PyLong_FromUnsignedLongLong((hi << 32) | lo),
                         PyLong_FromUnsignedLongLong(snapshot ? index : (UINT64_C(1) << 62) + index));
}

static PyMethodDef methods[] = {
    {"text_sort_key", (PyCFunction)(void (*)(void))text_sort_key, METH_FASTCALL,
     "text_sort_key(head, text) -> (lsn, index key) of the exact cdc_position form of a "
     "PgPosition, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "connectors.postgres._cposition",
    "Native sort keys of PostgreSQL cdc_position texts (position_text.py is the reference).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__cposition(void)
{
    PyObject *m = PyModule_Create(&module);
#ifdef Py_GIL_DISABLED
    if (m != NULL && PyUnstable_Module_SetGIL(m, Py_MOD_GIL_USED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
