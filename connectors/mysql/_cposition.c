/* Native sort keys of MySQL/MariaDB positions' cdc_position texts (optional;
 * connectors/mysql/position.py's regular expression is the reference, tested for parity).
 *
 * The sinks check every record's position against the partition's checkpoint; a
 * MariaDB position's text carries the GTID set, which changes with every
 * transaction, so the Python reader's per-transaction cache missed once a
 * transaction and its regular expression cost a quarter of a MariaDB sink's CPU in
 * a catch-up of 10-row transactions. Only the CPython C API, C11.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

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

/* 1 to 18 ASCII digits at *p. */
static int
number(const unsigned char *s, Py_ssize_t n, Py_ssize_t *p, uint64_t *out)
{
    uint64_t v = 0;
    int k = 0;
    while (*p < n && s[*p] >= '0' && s[*p] <= '9') {
        if (++k > 18)
            return 0;
        v = v * 10 + (uint64_t)(s[*p] - '0');
        (*p)++;
    }
    *out = v;
    return k > 0;
}

/* A JSON string body without '"' or '\\' up to the closing quote (left at *p). */
static int
plain(const unsigned char *s, Py_ssize_t n, Py_ssize_t *p)
{
    while (*p < n && s[*p] != '"') {
        if (s[*p] == '\\')
            return 0;
        (*p)++;
    }
    return *p < n;
}

/* text_sort_key(text) -> (file sequence, pos, index key) | None: the sort key of a
 * MySqlPosition's cdc_position text in the exact form the source writes:
 *   {"v":1,"kind":"mysql","file":"NAME.SEQ","pos":P,"index":I,"gtid_set":"...",
 *   "gtid":null|"...","server_id":S,"snapshot":B[,"vts":V],"last_in_tx":B}
 * ASCII only, numbers of at most 18 digits. None for anything else: the Python
 * reader (its regular expression) decides then. */
static PyObject *
text_sort_key(PyObject *self, PyObject *text)
{
    (void)self;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "text_sort_key(text: str)");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0)
        return NULL;
#endif
    if (!PyUnicode_IS_ASCII(text))
        Py_RETURN_NONE;
    const unsigned char *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), p = 0;
    uint64_t seq = 0, pos, index, v;
    int snapshot, last;
    if (!literal(s, n, &p, "{\"v\":1,\"kind\":\"mysql\",\"file\":\""))
        Py_RETURN_NONE;
    Py_ssize_t name = p;
    if (!plain(s, n, &p))
        Py_RETURN_NONE;
    /* the name ends in '.' and digits: its sequence */
    Py_ssize_t d = p;
    while (d > name && s[d - 1] >= '0' && s[d - 1] <= '9')
        d--;
    if (d == p || d == name || s[d - 1] != '.' || p - d > 18)
        Py_RETURN_NONE;
    for (Py_ssize_t i = d; i < p; i++)
        seq = seq * 10 + (uint64_t)(s[i] - '0');
    if (!literal(s, n, &p, "\",\"pos\":") || !number(s, n, &p, &pos)
        || !literal(s, n, &p, ",\"index\":") || !number(s, n, &p, &index)
        || !literal(s, n, &p, ",\"gtid_set\":\"") || !plain(s, n, &p)
        || !literal(s, n, &p, "\",\"gtid\":"))
        Py_RETURN_NONE;
    if (!literal(s, n, &p, "null")) {
        if (!literal(s, n, &p, "\"") || !plain(s, n, &p) || !literal(s, n, &p, "\""))
            Py_RETURN_NONE;
    }
    if (!literal(s, n, &p, ",\"server_id\":") || !number(s, n, &p, &v)
        || !literal(s, n, &p, ",\"snapshot\":") || !boolean(s, n, &p, &snapshot))
        Py_RETURN_NONE;
    if (literal(s, n, &p, ",\"vts\":") && !number(s, n, &p, &v))
        Py_RETURN_NONE;
    if (!literal(s, n, &p, ",\"last_in_tx\":") || !boolean(s, n, &p, &last)
        || !literal(s, n, &p, "}") || p != n)
        Py_RETURN_NONE;
    (void)last;
    return Py_BuildValue("(NNN)", PyLong_FromUnsignedLongLong(seq), PyLong_FromUnsignedLongLong(pos),
                         PyLong_FromUnsignedLongLong(snapshot ? index : (UINT64_C(1) << 62) + index));
}

static PyMethodDef methods[] = {
    {"text_sort_key", text_sort_key, METH_O,
     "text_sort_key(text) -> (file sequence, pos, index key) of the exact cdc_position "
     "form of a MySqlPosition, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "connectors.mysql._cposition",
    "Native sort keys of MySQL/MariaDB cdc_position texts (position.py is the reference).",
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
