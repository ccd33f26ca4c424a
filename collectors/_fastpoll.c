/* The clean Modbus poll in one C call (collectors/fastpoll.py says when it is used and what it must equal).
 *
 * A ``Poll`` is built once per device from its plan (every point a register value, no sentinels) and its quality
 * tracker's bounds. ``poll(registers, health, ts)`` reads every point from the register bytes as received (word and
 * byte order, type, ``scale * raw + offset`` rounded as numpy computes it: one multiply, one add), checks what
 * ``QualityTracker.clean_list`` checks (range, counter not going back, ``must_move`` points not stuck) and, when all
 * pass, updates the stuck counts and counter history and returns the batch's two new columns: int64 timestamps and
 * float64 values (the points in plan order, then the health fields). When any check needs a closer look it returns
 * None and changes nothing, exactly as ``clean_list`` does.
 *
 * Compiled with -ffp-contract=off: a fused multiply-add would round once where numpy rounds twice.
 */
#define PY_SSIZE_T_CLEAN
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <Python.h>
#include <structmember.h>
#include <numpy/arrayobject.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { RAW = 0, MUL = 1, MUL_ADD = 2 };

typedef struct {
    Py_ssize_t off; /* first byte of the point in the register buffer */
    int regs;       /* registers: 1, 2 or 4 */
    char code;      /* struct code: h H i I q Q f d */
    char wswap;     /* words in reverse order (CDAB, DCBA) */
    char bswap;     /* the two bytes of every register swapped (BADC, DCBA) */
    char mode;      /* RAW, MUL or MUL_ADD */
    double scale, offset;
} Point;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n, need, nmov, ncnt;
    Point *pts;
    double *lo, *hi, *cur;
    Py_ssize_t *mov, *cnt;          /* plan indices of must_move points and of counters */
    double *last;                   /* per moving point: its last value */
    long long *unch, *unch_new;     /* per moving point: polls unchanged */
    double *prev, *prev2;           /* per counter: previous and the one before */
    long long stuck;
    int ahead;                      /* set by poll(): the state here is newer than the tracker's */
} PollObject;

static double read_point(const unsigned char *buf, const Point *p) {
    unsigned char be[8];
    int r, k;
    uint64_t u = 0;
    for (r = 0; r < p->regs; r++) {
        const unsigned char *s = buf + p->off + 2 * (p->wswap ? p->regs - 1 - r : r);
        be[2 * r] = p->bswap ? s[1] : s[0];
        be[2 * r + 1] = p->bswap ? s[0] : s[1];
    }
    for (k = 0; k < 2 * p->regs; k++)
        u = (u << 8) | be[k];
    switch (p->code) {
    case 'h': return (double)(int16_t)(uint16_t)u;
    case 'H': return (double)(uint16_t)u;
    case 'i': return (double)(int32_t)(uint32_t)u;
    case 'I': return (double)(uint32_t)u;
    case 'q': return (double)(int64_t)u;
    case 'Q': return (double)u;
    case 'f': { uint32_t w = (uint32_t)u; float f; memcpy(&f, &w, 4); return (double)f; }
    default: { double d; memcpy(&d, &u, 8); return d; } /* 'd' */
    }
}

static void Poll_dealloc(PollObject *self) {
    PyMem_Free(self->pts);
    PyMem_Free(self->lo);
    PyMem_Free(self->mov);
    PyMem_Free(self->last);
    PyMem_Free(self->unch);
    PyMem_Free(self->prev);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int as_doubles(PyObject *seq, Py_ssize_t n, double *out, const char *what) {
    PyObject *fast = PySequence_Fast(seq, what);
    Py_ssize_t i;
    if (fast == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(fast) != n) {
        PyErr_Format(PyExc_ValueError, "%s: %zd values for %zd entries", what, PySequence_Fast_GET_SIZE(fast), n);
        Py_DECREF(fast);
        return -1;
    }
    for (i = 0; i < n; i++) {
        out[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (out[i] == -1.0 && PyErr_Occurred()) { Py_DECREF(fast); return -1; }
    }
    Py_DECREF(fast);
    return 0;
}

static int as_indices(PyObject *seq, Py_ssize_t n, Py_ssize_t *out, Py_ssize_t limit, const char *what) {
    PyObject *fast = PySequence_Fast(seq, what);
    Py_ssize_t i;
    if (fast == NULL) return -1;
    for (i = 0; i < n; i++) {
        out[i] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(fast, i));
        if (out[i] == -1 && PyErr_Occurred()) { Py_DECREF(fast); return -1; }
        if (out[i] < 0 || out[i] >= limit) {
            PyErr_Format(PyExc_ValueError, "%s: index %zd outside 0..%zd", what, out[i], limit - 1);
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

/* Poll(layout, lo, hi, moving, counters, stuck_polls): layout is one (byte offset, registers, struct code,
 * word swap, byte swap, scale, offset) per point in plan order; lo and hi the bounds per point (finite); moving
 * and counters the plan indices of must_move and counter points. */
static int Poll_init(PollObject *self, PyObject *args, PyObject *kwds) {
    PyObject *layout, *lo, *hi, *moving, *counters, *fast;
    long long stuck;
    Py_ssize_t i, n;
    static char *kwlist[] = {"layout", "lo", "hi", "moving", "counters", "stuck_polls", NULL};
    if (self->pts != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Poll is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOL", kwlist, &layout, &lo, &hi, &moving, &counters, &stuck))
        return -1;
    fast = PySequence_Fast(layout, "layout");
    if (fast == NULL) return -1;
    n = PySequence_Fast_GET_SIZE(fast);
    self->n = n;
    self->stuck = stuck;
    self->nmov = PySequence_Size(moving);
    self->ncnt = PySequence_Size(counters);
    if (self->nmov < 0 || self->ncnt < 0) { Py_DECREF(fast); return -1; }
    self->pts = PyMem_Calloc(n ? n : 1, sizeof(Point));
    self->lo = PyMem_Calloc(3 * (n ? n : 1), sizeof(double));
    self->mov = PyMem_Calloc(self->nmov + self->ncnt + 1, sizeof(Py_ssize_t));
    self->last = PyMem_Calloc(self->nmov + 1, sizeof(double));
    self->unch = PyMem_Calloc(2 * (self->nmov + 1), sizeof(long long));
    self->prev = PyMem_Calloc(2 * (self->ncnt + 1), sizeof(double));
    if (!self->pts || !self->lo || !self->mov || !self->last || !self->unch || !self->prev) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    self->hi = self->lo + n;
    self->cur = self->lo + 2 * n;
    self->cnt = self->mov + self->nmov;
    self->unch_new = self->unch + self->nmov + 1;
    self->prev2 = self->prev + self->ncnt + 1;
    for (i = 0; i < n; i++) {
        Point *p = &self->pts[i];
        const char *code;
        int ws, bs;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "nisppdd", &p->off, &p->regs, &code, &ws, &bs,
                              &p->scale, &p->offset)) {
            Py_DECREF(fast);
            return -1;
        }
        p->code = code[0];
        if (strlen(code) != 1 || !strchr("hHiIqQfd", p->code)) {
            PyErr_Format(PyExc_ValueError, "layout point %zd: struct code %s is not a register number", i, code);
            Py_DECREF(fast);
            return -1;
        }
        if (p->regs != (strchr("hH", p->code) ? 1 : strchr("iIf", p->code) ? 2 : 4) || p->off < 0) {
            PyErr_Format(PyExc_ValueError, "layout point %zd: %d registers of struct code %c at byte %zd", i,
                         p->regs, p->code, p->off);
            Py_DECREF(fast);
            return -1;
        }
        p->wswap = (char)ws;
        p->bswap = (char)bs;
        p->mode = (p->scale == 1.0 && p->offset == 0.0) ? RAW : (p->offset == 0.0 ? MUL : MUL_ADD);
        if (p->off + 2 * p->regs > self->need) self->need = p->off + 2 * p->regs;
    }
    Py_DECREF(fast);
    if (as_doubles(lo, n, self->lo, "lo") < 0 || as_doubles(hi, n, self->hi, "hi") < 0) return -1;
    if (as_indices(moving, self->nmov, self->mov, n, "moving") < 0) return -1;
    if (as_indices(counters, self->ncnt, self->cnt, n, "counters") < 0) return -1;
    for (i = 0; i < self->nmov; i++) self->last[i] = NAN;
    for (i = 0; i < self->ncnt; i++) self->prev[i] = self->prev2[i] = NAN;
    return 0;
}

static PyObject *Poll_poll(PollObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer view;
    PyObject *health, *hfast, *out;
    PyArrayObject *ts_col, *val_col;
    long long ts;
    Py_ssize_t i, n = self->n, nh, width;
    double *cur = self->cur, *v;
    int64_t *t;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "poll(registers, health, ts)");
        return NULL;
    }
    ts = PyLong_AsLongLong(args[2]);
    if (ts == -1 && PyErr_Occurred()) return NULL;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    if (view.len < self->need) {
        PyErr_Format(PyExc_ValueError, "%zd register bytes, the plan reads %zd", view.len, self->need);
        PyBuffer_Release(&view);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        const Point *p = &self->pts[i];
        double x = read_point((const unsigned char *)view.buf, p);
        if (p->mode == MUL) x = x * p->scale;
        else if (p->mode == MUL_ADD) x = x * p->scale + p->offset;
        cur[i] = x;
    }
    PyBuffer_Release(&view);
    for (i = 0; i < n; i++) /* NaN fails both */
        if (!(self->lo[i] <= cur[i] && cur[i] <= self->hi[i])) Py_RETURN_NONE;
    for (i = 0; i < self->ncnt; i++) /* a reset, a wrap, or no previous value yet: a closer look */
        if (!(self->prev[i] <= cur[self->cnt[i]])) Py_RETURN_NONE;
    for (i = 0; i < self->nmov; i++) {
        double x = cur[self->mov[i]];
        self->unch_new[i] = (x != self->last[i]) ? 0 : self->unch[i] + 1;
        if (self->unch_new[i] >= self->stuck) Py_RETURN_NONE;
    }
    health = args[1];
    hfast = PySequence_Fast(health, "health");
    if (hfast == NULL) return NULL;
    nh = PySequence_Fast_GET_SIZE(hfast);
    width = n + nh;
    val_col = (PyArrayObject *)PyArray_SimpleNew(1, &width, NPY_FLOAT64);
    if (val_col == NULL) { Py_DECREF(hfast); return NULL; }
    v = (double *)PyArray_DATA(val_col);
    memcpy(v, cur, n * sizeof(double));
    for (i = 0; i < nh; i++) {
        v[n + i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(hfast, i));
        if (v[n + i] == -1.0 && PyErr_Occurred()) { Py_DECREF(hfast); Py_DECREF(val_col); return NULL; }
    }
    Py_DECREF(hfast);
    ts_col = (PyArrayObject *)PyArray_SimpleNew(1, &width, NPY_INT64);
    if (ts_col == NULL) { Py_DECREF(val_col); return NULL; }
    t = (int64_t *)PyArray_DATA(ts_col);
    for (i = 0; i < width; i++) t[i] = ts;
    out = PyTuple_New(2);
    if (out == NULL) { Py_DECREF(val_col); Py_DECREF(ts_col); return NULL; }
    PyTuple_SET_ITEM(out, 0, (PyObject *)ts_col);
    PyTuple_SET_ITEM(out, 1, (PyObject *)val_col);
    /* Every check passed: the poll's state. */
    for (i = 0; i < self->nmov; i++) {
        self->unch[i] = self->unch_new[i];
        self->last[i] = cur[self->mov[i]];
    }
    for (i = 0; i < self->ncnt; i++) {
        self->prev2[i] = self->prev[i];
        self->prev[i] = cur[self->cnt[i]];
    }
    self->ahead = 1;
    return out;
}

static PyObject *double_list(const double *x, Py_ssize_t n) {
    PyObject *l = PyList_New(n);
    Py_ssize_t i;
    if (l == NULL) return NULL;
    for (i = 0; i < n; i++) {
        PyObject *f = PyFloat_FromDouble(x[i]);
        if (f == NULL) { Py_DECREF(l); return NULL; }
        PyList_SET_ITEM(l, i, f);
    }
    return l;
}

static PyObject *Poll_state(PollObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *unch = PyList_New(self->nmov), *out;
    Py_ssize_t i;
    if (unch == NULL) return NULL;
    for (i = 0; i < self->nmov; i++) {
        PyObject *k = PyLong_FromLongLong(self->unch[i]);
        if (k == NULL) { Py_DECREF(unch); return NULL; }
        PyList_SET_ITEM(unch, i, k);
    }
    out = Py_BuildValue("(NNNN)", double_list(self->last, self->nmov), unch, double_list(self->prev, self->ncnt),
                        double_list(self->prev2, self->ncnt));
    return out;
}

static PyObject *Poll_set_state(PollObject *self, PyObject *args) {
    PyObject *last, *unch, *prev, *prev2, *fast;
    Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "OOOO", &last, &unch, &prev, &prev2)) return NULL;
    if (as_doubles(last, self->nmov, self->last, "last") < 0 || as_doubles(prev, self->ncnt, self->prev, "prev") < 0 ||
        as_doubles(prev2, self->ncnt, self->prev2, "prev2") < 0)
        return NULL;
    fast = PySequence_Fast(unch, "unchanged");
    if (fast == NULL) return NULL;
    if (PySequence_Fast_GET_SIZE(fast) != self->nmov) {
        PyErr_SetString(PyExc_ValueError, "unchanged: one count per moving point");
        Py_DECREF(fast);
        return NULL;
    }
    for (i = 0; i < self->nmov; i++) {
        long long k = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i));
        if (k == -1 && PyErr_Occurred()) { Py_DECREF(fast); return NULL; }
        self->unch[i] = k;
    }
    Py_DECREF(fast);
    self->ahead = 0;
    Py_RETURN_NONE;
}

static PyMethodDef Poll_methods[] = {
    {"poll", (PyCFunction)(void (*)(void))Poll_poll, METH_FASTCALL,
     "poll(registers, health, ts) -> (ts column, values column) of a clean poll, or None (nothing changed)"},
    {"state", (PyCFunction)Poll_state, METH_NOARGS,
     "state() -> (last values of moving points, their unchanged counts, counters' previous, the one before)"},
    {"set_state", (PyCFunction)Poll_set_state, METH_VARARGS, "set_state(last, unchanged, prev, prev2); clears ahead"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Poll_members[] = {
    {"ahead", T_INT, offsetof(PollObject, ahead), 0, "1 when a poll here changed the state since set_state()"},
    {"n", T_PYSSIZET, offsetof(PollObject, n), READONLY, "points"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject PollType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "collectors._fastpoll.Poll",
    .tp_basicsize = sizeof(PollObject),
    .tp_dealloc = (destructor)Poll_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One device's clean Modbus poll: decode, quality checks, the batch's columns.",
    .tp_methods = Poll_methods,
    .tp_members = Poll_members,
    .tp_init = (initproc)Poll_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef fastpoll_module = {
    PyModuleDef_HEAD_INIT, "_fastpoll", "The clean Modbus poll in C (see collectors/fastpoll.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__fastpoll(void) {
    PyObject *m;
    import_array();
    if (PyType_Ready(&PollType) < 0) return NULL;
    m = PyModule_Create(&fastpoll_module);
    if (m == NULL) return NULL;
    Py_INCREF(&PollType);
    if (PyModule_AddObject(m, "Poll", (PyObject *)&PollType) < 0) {
        Py_DECREF(&PollType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
