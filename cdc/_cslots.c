/*
 * Maker(cls, names): a fast positional constructor of frozen, slotted dataclasses.
 *
 * ``Maker(cls, names)(v1, v2, ...)`` allocates ``cls`` and sets exactly the named
 * slots, in order, through their member descriptors: what the generated dataclass
 * ``__init__`` does through ``object.__setattr__``, without a Python frame per field.
 * Only for classes without ``__post_init__`` (its checks must run): Maker refuses others.
 * Sources build several such objects per event (position, source info, transaction,
 * event), which made it worth a C constructor shared by all connectors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stddef.h>

/* ------------------------------------------------------------------ Maker */

typedef struct {
    PyObject_HEAD
    PyTypeObject *cls;
    PyObject *descrs; /* tuple of member descriptors, in argument order */
    vectorcallfunc vectorcall;
} Maker;

static PyObject *
Maker_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Maker *self = (Maker *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t n = PyTuple_GET_SIZE(self->descrs);
    if (nargs != n || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_Format(PyExc_TypeError, "%s maker takes exactly %zd positional arguments (%zd given)",
                     self->cls->tp_name, n, nargs);
        return NULL;
    }
    PyObject *obj = self->cls->tp_alloc(self->cls, 0);
    if (obj == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyTuple_GET_ITEM(self->descrs, i);
        if (Py_TYPE(d)->tp_descr_set(d, obj, args[i]) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}

static PyObject *
Maker_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"cls", "names", NULL};
    PyObject *cls, *names;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!:Maker", kwlist, &PyType_Type, &cls,
                                     &PyTuple_Type, &names))
        return NULL;
    PyTypeObject *tp = (PyTypeObject *)cls;
    if (tp->tp_new != PyBaseObject_Type.tp_new) {
        PyErr_Format(PyExc_TypeError, "%s has its own __new__", tp->tp_name);
        return NULL;
    }
    PyObject *post = PyObject_GetAttrString(cls, "__post_init__");
    if (post != NULL) {
        Py_DECREF(post);
        PyErr_Format(PyExc_TypeError,
                     "%s has __post_init__, which a Maker would skip: construct it normally",
                     tp->tp_name);
        return NULL;
    }
    if (!PyErr_ExceptionMatches(PyExc_AttributeError))
        return NULL;
    PyErr_Clear();
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    PyObject *descrs = PyTuple_New(n);
    if (descrs == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_Check(name)) {
            Py_DECREF(descrs);
            PyErr_SetString(PyExc_TypeError, "names must be str");
            return NULL;
        }
        PyObject *d = PyObject_GetAttr(cls, name);
        if (d == NULL) {
            Py_DECREF(descrs);
            return NULL;
        }
        if (!Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "%s.%U is not a slot", tp->tp_name, name);
            Py_DECREF(d);
            Py_DECREF(descrs);
            return NULL;
        }
        PyTuple_SET_ITEM(descrs, i, d);
    }
    Maker *self = (Maker *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(descrs);
        return NULL;
    }
    self->cls = (PyTypeObject *)Py_NewRef(cls);
    self->descrs = descrs;
    self->vectorcall = Maker_vectorcall;
    return (PyObject *)self;
}

static void
Maker_dealloc(Maker *self)
{
    PyObject_GC_UnTrack(self);
    Py_XDECREF(self->cls);
    Py_XDECREF(self->descrs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Maker_traverse(Maker *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cls);
    Py_VISIT(self->descrs);
    return 0;
}

static int
Maker_clear(Maker *self)
{
    Py_CLEAR(self->cls);
    Py_CLEAR(self->descrs);
    return 0;
}

static PyTypeObject MakerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cdc._cslots.Maker",
    .tp_basicsize = sizeof(Maker),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Maker(cls, names): builds instances of a slotted class from positional values.",
    .tp_new = Maker_new,
    .tp_dealloc = (destructor)Maker_dealloc,
    .tp_traverse = (traverseproc)Maker_traverse,
    .tp_clear = (inquiry)Maker_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Maker, vectorcall),
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "cdc._cslots",
    "Fast positional constructors of frozen slotted dataclasses (Maker).", -1, NULL,
};

PyMODINIT_FUNC PyInit__cslots(void)
{
    if (PyType_Ready(&MakerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
#ifdef Py_GIL_DISABLED
    /* a single-phase module declares its GIL use this way (Py_mod_gil is for slots) */
    if (PyUnstable_Module_SetGIL(m, Py_MOD_GIL_USED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    if (PyModule_AddObjectRef(m, "Maker", (PyObject *)&MakerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
