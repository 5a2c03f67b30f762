/*
 * take(messages, start, buffers, make): consumed Kafka messages into the sink's
 * per-partition buffers, in C.
 *
 * The reference is the loop of SinkWorker._add (cdc/sink/worker.py): for each
 * message it asks error(), topic(), partition(), offset(), key(), value() and
 * headers() and appends a Record to the buffer of (topic, partition). Those seven
 * method calls and the Record's construction were a fifth of a snapshot sink's
 * Python time; here they cost no Python frame.
 *
 * Only the plain case is handled: no error, an assigned partition, no headers.
 * take() stops at the first message that is not plain and returns
 * (records added, index of that message), or (added, len(messages)) when all
 * were plain; the caller handles that message with the reference code and calls
 * take() again after it. ``make`` builds a Record from its eight fields in order
 * (cdc.native.positional_constructor(Record)).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *s_error, *s_topic, *s_partition, *s_offset, *s_key, *s_value, *s_headers;
static PyObject *zero;

static PyObject *
take(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "take(messages, start, buffers, make)");
        return NULL;
    }
    PyObject *messages = args[0], *buffers = args[2], *make = args[3];
    if (!PyList_CheckExact(messages) || !PyDict_CheckExact(buffers)) {
        PyErr_SetString(PyExc_TypeError, "take: messages must be a list, buffers a dict");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "take: start must not be negative");
        return NULL;
    }
    Py_ssize_t added = 0;
    /* Owned: the (topic, partition) the buffer below was found for. */
    PyObject *last_topic = NULL, *last_part = NULL, *buf = NULL;
    PyObject *m = NULL, *topic = NULL, *part = NULL, *offset = NULL, *key = NULL, *value = NULL;
    int failed = 0;

    for (; i < PyList_GET_SIZE(messages); i++) {
        m = Py_NewRef(PyList_GET_ITEM(messages, i));
        PyObject *err = PyObject_CallMethodNoArgs(m, s_error);
        if (err == NULL) goto fail;
        int plain = err == Py_None;
        Py_DECREF(err);
        if (!plain) break;
        PyObject *headers = PyObject_CallMethodNoArgs(m, s_headers);
        if (headers == NULL) goto fail;
        int has_headers = headers == Py_None ? 0 : PyObject_IsTrue(headers);
        Py_DECREF(headers);
        if (has_headers < 0) goto fail;
        if (has_headers) break;
        topic = PyObject_CallMethodNoArgs(m, s_topic);
        if (topic == NULL) goto fail;
        part = PyObject_CallMethodNoArgs(m, s_partition);
        if (part == NULL) goto fail;
        if (!PyUnicode_CheckExact(topic) || !PyLong_CheckExact(part)) break;
        if (last_topic == NULL || PyObject_RichCompareBool(part, last_part, Py_EQ) != 1
                || PyUnicode_Compare(topic, last_topic) != 0) {
            if (PyErr_Occurred()) goto fail;
            PyObject *tp = PyTuple_Pack(2, topic, part);
            if (tp == NULL) goto fail;
            PyObject *found = PyDict_GetItemWithError(buffers, tp);  /* borrowed */
            Py_DECREF(tp);
            if (found == NULL) {
                if (PyErr_Occurred()) goto fail;
                break;  /* not assigned: the reference logs it */
            }
            if (!PyList_CheckExact(found)) break;
            Py_XSETREF(buf, Py_NewRef(found));
            Py_XSETREF(last_topic, Py_NewRef(topic));
            Py_XSETREF(last_part, Py_NewRef(part));
        }
        offset = PyObject_CallMethodNoArgs(m, s_offset);
        if (offset == NULL) goto fail;
        if (offset == Py_None) Py_SETREF(offset, Py_NewRef(zero));
        else {
            int truth = PyObject_IsTrue(offset);  /* `m.offset() or 0` */
            if (truth < 0) goto fail;
            if (!truth) Py_SETREF(offset, Py_NewRef(zero));
        }
        key = PyObject_CallMethodNoArgs(m, s_key);
        if (key == NULL) goto fail;
        value = PyObject_CallMethodNoArgs(m, s_value);
        if (value == NULL) goto fail;
        PyObject *fields[8] = {topic, part, offset, key, value, Py_None, Py_None, Py_None};
        PyObject *record = PyObject_Vectorcall(make, fields, 8, NULL);
        if (record == NULL) goto fail;
        int appended = PyList_Append(buf, record);
        Py_DECREF(record);
        if (appended < 0) goto fail;
        added++;
        Py_CLEAR(topic);
        Py_CLEAR(part);
        Py_CLEAR(offset);
        Py_CLEAR(key);
        Py_CLEAR(value);
        Py_CLEAR(m);
    }
    goto done;
fail:
    failed = 1;
done:
    Py_XDECREF(m);
    Py_XDECREF(topic);
    Py_XDECREF(part);
    Py_XDECREF(offset);
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(buf);
    Py_XDECREF(last_topic);
    Py_XDECREF(last_part);
    if (failed) return NULL;
    return Py_BuildValue("(nn)", added, i);
}

static PyMethodDef methods[] = {
    {"take", (PyCFunction)(void (*)(void))take, METH_FASTCALL,
     "take(messages, start, buffers, make) -> (added, stop): plain messages into buffers."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "cdc.sink._crecords",
    "Consumed Kafka messages into the sink's buffers (take).", -1, methods,
};

PyMODINIT_FUNC PyInit__crecords(void)
{
    static const char *names[] = {"error", "topic", "partition", "offset", "key", "value",
                                  "headers"};
    PyObject **slots[] = {&s_error, &s_topic, &s_partition, &s_offset, &s_key, &s_value,
                          &s_headers};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        if (*slots[k] == NULL && (*slots[k] = PyUnicode_InternFromString(names[k])) == NULL)
            return NULL;
    }
    if (zero == NULL && (zero = PyLong_FromLong(0)) == NULL) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
#ifdef Py_GIL_DISABLED
    if (PyUnstable_Module_SetGIL(m, Py_MOD_GIL_USED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
