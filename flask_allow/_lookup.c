/*
 * flask_allow._lookup: the compiled index of an all-static rule list, searched in C.
 *
 * An optional accelerator for Engine.lookup (see engine.py): the same arrays StaticIndex builds
 * (index.py), the same libc inet_pton that socket.inet_pton calls, the same first-match answer,
 * with no Python object made per lookup. Anything it does not parse itself (zones, text that is
 * not an address, a non-str) goes to the Python fallback given at construction, so the two paths
 * can only differ in speed. Every array index is bounds-checked: inconsistent arrays raise, they
 * never read outside a buffer. Without a C compiler the package installs without this module and
 * the pure-Python lookup is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef _WIN32
#if !defined(_WIN32_WINNT) || _WIN32_WINNT < 0x0600
#undef _WIN32_WINNT
#define _WIN32_WINNT 0x0600 /* inet_pton: Windows Vista on */
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <sys/socket.h>
#endif

enum { V4_STARTS, V4_LABELS, V4_DIRECT, V4_RADIX, V6_HIGH, V6_LOW, V6_LABELS, N_ARRAYS };

/* Boundaries in a /16 up to which all are fetched ahead of the search (two cache lines). */
#define PREFETCH_MAX 64
/* The per-/16 tables of a large index (index.py, RADIX_SHIFT = 16). */
#define BUCKETS 65536
/* Large indexes: one bit per /21 block of addresses, set when the most common label covers it whole. */
#define BLOCK_SHIFT 11
#define BLOCKS (1u << (32 - BLOCK_SHIFT))

static const char *const array_names[N_ARRAYS] = {
    "v4_starts", "v4_labels", "v4_direct", "v4_radix", "v6_high", "v6_low", "v6_labels",
};

typedef struct {
    PyObject_HEAD
    PyObject *rules;  /* tuple: label -> the rule (or None for label 0, no match) */
    PyObject *other;  /* callable(address) for what is not parsed here */
    PyObject *weakrefs;
    int started;       /* __init__ was called: it runs once (and cannot be re-entered) */
    int ready;         /* __init__ succeeded */
    Py_buffer arrays[N_ARRAYS];
    int held[N_ARRAYS];  /* which buffers were taken (released in dealloc) */
    Py_ssize_t length[N_ARRAYS];
    int width[N_ARRAYS]; /* item size in bytes */
    int is_signed[N_ARRAYS];
    uint16_t *low16;   /* with the /16 tables: the low 16 bits of each v4 boundary (see lookup_v4) */
    uint16_t *offsets; /* v4_radix[b] - groups[b >> 8], when all fit in 16 bits (else NULL) */
    uint32_t groups[BUCKETS / 256 + 1]; /* v4_radix at every 256th /16 */
    uint8_t *plain;    /* with plain=True: a bit per /21 block, set when `background` covers it whole */
    int64_t background; /* the label that covers the most IPv4 addresses */
    int has_pair;      /* the IPv4 labels alternate: label of boundary i is pair[i & 1] */
    int64_t pair[2];   /* (one memory access fewer on a large list file) */
} Index;

static PyObject *corrupt(const char *what) {
    PyErr_Format(PyExc_RuntimeError, "flask_allow: the compiled index is inconsistent (%s)", what);
    return NULL;
}

/* Item i of an integer array of any width the index uses; the caller checked 0 <= i < length. */
static inline int64_t item(const Index *self, int which, Py_ssize_t i) {
    const char *base = (const char *)self->arrays[which].buf;
    switch (self->width[which]) {
    case 1:
        return self->is_signed[which] ? (int64_t)((const int8_t *)base)[i] : (int64_t)((const uint8_t *)base)[i];
    case 2:
        return self->is_signed[which] ? (int64_t)((const int16_t *)base)[i] : (int64_t)((const uint16_t *)base)[i];
    case 4:
        return self->is_signed[which] ? (int64_t)((const int32_t *)base)[i] : (int64_t)((const uint32_t *)base)[i];
    default:
        return (int64_t)((const uint64_t *)base)[i];
    }
}

static PyObject *rule_of(const Index *self, int64_t label) {
    if (label < 0 || label >= PyTuple_GET_SIZE(self->rules)) {
        return corrupt("label out of range");
    }
    PyObject *rule = PyTuple_GET_ITEM(self->rules, (Py_ssize_t)label);
    Py_INCREF(rule);
    return rule;
}

/* bisect_right over a[lo:hi] of one unsigned type: the position after the last entry <= value. */
#define DEFINE_BISECT(name, type)                                                                  \
    static Py_ssize_t name(const type *a, type value, Py_ssize_t lo, Py_ssize_t hi) {              \
        while (lo < hi) {                                                                          \
            Py_ssize_t mid = lo + (hi - lo) / 2;                                                   \
            if (value < a[mid]) {                                                                  \
                hi = mid;                                                                          \
            } else {                                                                               \
                lo = mid + 1;                                                                      \
            }                                                                                      \
        }                                                                                          \
        return lo;                                                                                 \
    }

DEFINE_BISECT(bisect_v4, uint32_t)    /* v4_starts: the boundaries of a small index */
DEFINE_BISECT(bisect_low16, uint16_t) /* low16: those of one /16, which share their high 16 bits */

static PyObject *lookup_v4(Index *self, uint32_t value) {
    Py_ssize_t count = self->length[V4_STARTS], i;
    if (self->plain != NULL && (self->plain[value >> (BLOCK_SHIFT + 3)] >> ((value >> BLOCK_SHIFT) & 7)) & 1) {
        /* no search: 256 KiB of bits stay in cache where the boundaries of a large list cannot */
        return rule_of(self, self->background);
    }
    if (self->low16 != NULL) {
        Py_ssize_t bucket = (Py_ssize_t)(value >> 16), lo, hi; /* lengths checked at init: BUCKETS (+ 1) */
        if (self->offsets != NULL) { /* v4_radix in 128 KiB instead of 256: more often in cache */
            lo = (Py_ssize_t)self->groups[bucket >> 8] + self->offsets[bucket];
            hi = (Py_ssize_t)self->groups[(bucket + 1) >> 8] + self->offsets[bucket + 1];
        } else {
            lo = (Py_ssize_t)item(self, V4_RADIX, bucket);
            hi = (Py_ssize_t)item(self, V4_RADIX, bucket + 1);
        }
        if (lo < 0 || hi > count || lo > hi) {
            return corrupt("v4 radix range");
        }
        if (lo == hi) { /* no boundary inside this /16: the label of the last one before it */
            if (!self->has_pair) {
                return rule_of(self, item(self, V4_DIRECT, bucket));
            }
            i = lo;
        } else {
            /* A /16 of a large list holds a few dozen boundaries, all with the address's high 16
               bits: their low halves, 2 bytes each, lie in a cache line or two, fetched at once. */
#if defined(__GNUC__) || defined(__clang__)
            if (hi - lo <= PREFETCH_MAX) {
                __builtin_prefetch(self->low16 + lo);
                __builtin_prefetch(self->low16 + hi - 1);
            }
#endif
            i = bisect_low16(self->low16, (uint16_t)(value & 0xffff), lo, hi);
        }
    } else {
        i = bisect_v4((const uint32_t *)self->arrays[V4_STARTS].buf, value, 0, count);
    }
    if (i < 1 || i > self->length[V4_LABELS]) {
        return corrupt("v4 position");
    }
    if (self->has_pair) {
        return rule_of(self, self->pair[(i - 1) & 1]);
    }
    return rule_of(self, item(self, V4_LABELS, i - 1));
}

static PyObject *lookup_v6(Index *self, const unsigned char *packed) {
    uint64_t top = 0, bottom = 0;
    for (int k = 0; k < 8; k++) {
        top = (top << 8) | packed[k];
        bottom = (bottom << 8) | packed[8 + k];
    }
    const uint64_t *high = (const uint64_t *)self->arrays[V6_HIGH].buf;
    const uint64_t *low = (const uint64_t *)self->arrays[V6_LOW].buf;
    Py_ssize_t lo = 0, hi = self->length[V6_HIGH];
    while (lo < hi) { /* boundaries at or below (top, bottom), compared as 128-bit numbers */
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (top < high[mid] || (top == high[mid] && bottom < low[mid])) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    if (lo < 1 || lo > self->length[V6_LABELS]) {
        return corrupt("v6 position");
    }
    return rule_of(self, item(self, V6_LABELS, lo - 1));
}

static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static PyObject *Index_lookup(Index *self, PyObject *address) {
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_Check(address) && PyUnicode_READY(address) < 0) {
        return NULL;
    }
#endif
    /* An address is ASCII and at most 45 characters; anything else goes to the fallback. */
    if (PyUnicode_Check(address) && PyUnicode_IS_ASCII(address) && PyUnicode_GET_LENGTH(address) < 64) {
        Py_ssize_t size;
        const char *text = PyUnicode_AsUTF8AndSize(address, &size); /* an ASCII string's own data */
        if (text == NULL) {
            return NULL;
        }
        if ((size_t)size == strlen(text)) { /* no NUL inside (inet_pton would stop there) */
            unsigned char packed[16];
            if (inet_pton(AF_INET, text, packed) == 1) {
                return lookup_v4(self, ((uint32_t)packed[0] << 24) | ((uint32_t)packed[1] << 16) |
                                           ((uint32_t)packed[2] << 8) | (uint32_t)packed[3]);
            }
            if (inet_pton(AF_INET6, text, packed) == 1) {
                if (memcmp(packed, mapped_prefix, 12) == 0) { /* ::ffff:a.b.c.d is a.b.c.d */
                    return lookup_v4(self, ((uint32_t)packed[12] << 24) | ((uint32_t)packed[13] << 16) |
                                               ((uint32_t)packed[14] << 8) | (uint32_t)packed[15]);
                }
                return lookup_v6(self, packed);
            }
        }
    }
    return PyObject_CallOneArg(self->other, address);
}

/* The label of v4 boundary i. */
static int64_t label_at(const Index *self, Py_ssize_t i) {
    return self->has_pair ? self->pair[i & 1] : item(self, V4_LABELS, i);
}

/* What is wrong with the IPv4 arrays, or NULL. Checked before tables are derived from them: the
   bitmap must not answer where the search would raise, nor the offsets point where v4_radix does
   not. Boundaries in increasing order from 0, labels in range, and v4_radix (and v4_direct, which
   the alternating pair makes unused) as index.py builds them from the boundaries. */
static const char *check_v4(const Index *self, Py_ssize_t labels) {
    const uint32_t *starts = (const uint32_t *)self->arrays[V4_STARTS].buf;
    Py_ssize_t count = self->length[V4_STARTS];
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t label = label_at(self, i);
        if (label < 0 || label >= labels) {
            return "label out of range";
        }
        if (i == 0 ? starts[0] != 0 : starts[i] <= starts[i - 1]) {
            return "v4 boundaries out of order";
        }
    }
    if (!self->held[V4_RADIX]) {
        return NULL;
    }
    Py_ssize_t at = 0; /* the first boundary at or after the /16 */
    for (Py_ssize_t bucket = 0; bucket <= BUCKETS; bucket++) {
        while (at < count && starts[at] < (uint64_t)bucket << 16) {
            at++;
        }
        if (item(self, V4_RADIX, bucket) != at) {
            return "v4 radix table";
        }
        int empty = at == count || starts[at] >= (uint64_t)(bucket + 1) << 16; /* no boundary inside */
        if (bucket < BUCKETS && !self->has_pair && empty && item(self, V4_DIRECT, bucket) != label_at(self, at - 1)) {
            return "v4 direct table";
        }
    }
    return NULL;
}

/* The `plain` bitmap: which label covers the most IPv4 addresses, and the blocks it covers whole.
   ``width`` has room for ``labels`` counts; the arrays passed check_v4. */
static void fill_plain(Index *self, uint64_t *width, Py_ssize_t labels) {
    const uint32_t *starts = (const uint32_t *)self->arrays[V4_STARTS].buf;
    Py_ssize_t count = self->length[V4_STARTS];
    for (Py_ssize_t i = 0; i < count; i++) { /* labels checked by check_v4 */
        width[label_at(self, i)] += (i + 1 < count ? (uint64_t)starts[i + 1] : (uint64_t)1 << 32) - starts[i];
    }
    self->background = 0;
    for (Py_ssize_t label = 1; label < labels; label++) {
        if (width[label] > width[self->background]) {
            self->background = label;
        }
    }
    memset(self->plain, 0xff, BLOCKS / 8);
    /* A block is plain unless a span of another label covers some of it. */
    for (Py_ssize_t i = 0; i < count; i++) {
        if (label_at(self, i) == self->background) {
            continue;
        }
        uint32_t last = i + 1 < count ? (starts[i + 1] - 1) >> BLOCK_SHIFT : BLOCKS - 1;
        for (uint32_t block = starts[i] >> BLOCK_SHIFT; block <= last; block++) {
            self->plain[block >> 3] &= (uint8_t) ~(1u << (block & 7));
        }
    }
}

/* Fill the tables allocated for the search (low16, offsets, plain). Runs without the GIL: at 10^6
   networks this takes milliseconds that a server's other threads need (reload() swaps rules in
   while they serve). Sets *fits when the offsets fit in 16 bits; returns what is wrong, or NULL. */
static const char *fill_tables(Index *self, uint64_t *width, Py_ssize_t labels, int *fits) {
    const uint32_t *starts = (const uint32_t *)self->arrays[V4_STARTS].buf;
    Py_ssize_t count = self->length[V4_STARTS];
    *fits = 0;
    const char *wrong = check_v4(self, labels);
    if (wrong != NULL) {
        return wrong;
    }
    if (self->low16 != NULL) {
        for (Py_ssize_t at = 0; at < count; at++) {
            self->low16[at] = (uint16_t)(starts[at] & 0xffff);
        }
        *fits = 1;
        for (Py_ssize_t bucket = 0; bucket <= BUCKETS && *fits; bucket++) {
            int64_t at = item(self, V4_RADIX, bucket);
            if (bucket % 256 == 0) {
                self->groups[bucket / 256] = (uint32_t)at;
            }
            *fits = at >= self->groups[bucket / 256] && at - self->groups[bucket / 256] <= 0xffff;
        }
        for (Py_ssize_t bucket = 0; bucket <= BUCKETS && *fits; bucket++) {
            self->offsets[bucket] = (uint16_t)(item(self, V4_RADIX, bucket) - self->groups[bucket / 256]);
        }
    }
    if (self->plain != NULL) {
        fill_plain(self, width, labels);
    }
    return NULL;
}

static int take(Index *self, int which, PyObject *source, int optional) {
    if (source == Py_None && optional) {
        return 0;
    }
    if (PyObject_GetBuffer(source, &self->arrays[which], PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    self->held[which] = 1;
    Py_buffer *view = &self->arrays[which];
    if (view->len > 0 && view->itemsize > 0 && (uintptr_t)view->buf % (uintptr_t)view->itemsize != 0) {
        PyErr_Format(PyExc_TypeError, "%s: the buffer is not aligned for its items", array_names[which]);
        return -1;
    }
    const char *format = view->format ? view->format : "B";
    if (format[0] == '@' || format[0] == '=') {
        format++;
    }
    int is_signed = strchr("bhilq", format[0]) != NULL && format[0] != '\0';
    int is_unsigned = strchr("BHILQ", format[0]) != NULL && format[0] != '\0';
    int width = (int)view->itemsize;
    int fits = (is_signed || is_unsigned) && format[1] == '\0' && (width == 1 || width == 2 || width == 4 || width == 8);
    int wants64 = which == V6_HIGH || which == V6_LOW, wants32 = which == V4_STARTS;
    if (!fits || view->ndim > 1 || (wants64 && (width != 8 || is_signed)) || (wants32 && (width != 4 || is_signed)) ||
        (which != V4_DIRECT && is_signed)) {
        PyErr_Format(PyExc_TypeError, "%s: an array of unsigned integers of the right width is needed (got %s, %d bytes)",
                     array_names[which], format, width);
        return -1;
    }
    self->width[which] = width;
    self->is_signed[which] = is_signed;
    self->length[which] = view->len / width;
    return 0;
}

static int Index_init(Index *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"rules",    "other",  "v4_starts", "v4_labels", "v4_direct", "v4_radix",
                               "v6_high", "v6_low", "v6_labels", "v4_pair",   "plain",     NULL};
    PyObject *rules, *other, *sources[N_ARRAYS], *pair = Py_None;
    int plain = 0;
    if (self->started) { /* a second call, or one from inside the first (an argument's __index__) */
        PyErr_SetString(PyExc_TypeError, "an Index is made once");
        return -1;
    }
    self->started = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OOOOOOOO|Op:Index", keywords, &PyTuple_Type, &rules, &other,
                                     &sources[V4_STARTS], &sources[V4_LABELS], &sources[V4_DIRECT],
                                     &sources[V4_RADIX], &sources[V6_HIGH], &sources[V6_LOW], &sources[V6_LABELS],
                                     &pair, &plain)) {
        return -1;
    }
    if (pair != Py_None) {
        long long even, odd;
        if (!PyTuple_Check(pair)) {
            PyErr_SetString(PyExc_TypeError, "v4_pair must be None or a tuple of two integers");
            return -1;
        }
        if (!PyArg_ParseTuple(pair, "LL:v4_pair", &even, &odd)) {
            return -1;
        }
        self->pair[0] = even;
        self->pair[1] = odd;
        self->has_pair = 1;
    }
    if (!PyCallable_Check(other)) {
        PyErr_SetString(PyExc_TypeError, "other must be callable");
        return -1;
    }
    for (int which = 0; which < N_ARRAYS; which++) {
        if (take(self, which, sources[which], which == V4_DIRECT || which == V4_RADIX) < 0) {
            return -1;
        }
    }
    if (self->held[V4_DIRECT] != self->held[V4_RADIX]) {
        PyErr_SetString(PyExc_ValueError, "v4_direct and v4_radix come together");
        return -1;
    }
    if (self->length[V4_STARTS] < 1 || self->length[V4_STARTS] != self->length[V4_LABELS] ||
        self->length[V6_HIGH] < 1 || self->length[V6_HIGH] != self->length[V6_LOW] ||
        self->length[V6_HIGH] != self->length[V6_LABELS]) {
        PyErr_SetString(PyExc_ValueError, "the boundary and label arrays do not match");
        return -1;
    }
    if (self->held[V4_DIRECT]) {
        if (self->length[V4_DIRECT] != BUCKETS || self->length[V4_RADIX] != BUCKETS + 1) {
            PyErr_SetString(PyExc_ValueError, "v4_direct and v4_radix must have one entry per /16");
            return -1;
        }
        self->low16 = PyMem_RawMalloc(sizeof(uint16_t) * (size_t)self->length[V4_STARTS]);
        self->offsets = PyMem_RawMalloc(sizeof(uint16_t) * (BUCKETS + 1));
        if (self->low16 == NULL || self->offsets == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_ssize_t labels = PyTuple_GET_SIZE(rules);
    uint64_t *width = NULL;
    if (plain) {
        self->plain = PyMem_RawMalloc(BLOCKS / 8);
        width = PyMem_RawCalloc((size_t)labels + 1, sizeof(uint64_t));
        if (self->plain == NULL || width == NULL) {
            PyMem_RawFree(width);
            PyErr_NoMemory();
            return -1;
        }
    }
    const char *wrong = NULL;
    int fits = 0;
    if (self->low16 != NULL || self->plain != NULL) {
        Py_BEGIN_ALLOW_THREADS
        wrong = fill_tables(self, width, labels, &fits);
        Py_END_ALLOW_THREADS
    }
    PyMem_RawFree(width);
    if (!fits) { /* v4_radix is searched as it is */
        PyMem_RawFree(self->offsets);
        self->offsets = NULL;
    }
    if (wrong != NULL) {
        corrupt(wrong);
        return -1;
    }
    Py_INCREF(rules);
    self->rules = rules;
    Py_INCREF(other);
    self->other = other;
    self->ready = 1;
    return 0;
}

static int Index_traverse(Index *self, visitproc visit, void *arg) {
    Py_VISIT(self->rules);
    Py_VISIT(self->other);
    for (int which = 0; which < N_ARRAYS; which++) {
        if (self->held[which]) {
            Py_VISIT(self->arrays[which].obj);
        }
    }
    return 0;
}

static int Index_clear(Index *self) {
    self->ready = 0;
    Py_CLEAR(self->rules);
    Py_CLEAR(self->other);
    for (int which = 0; which < N_ARRAYS; which++) {
        if (self->held[which]) {
            PyBuffer_Release(&self->arrays[which]);
            self->held[which] = 0;
        }
    }
    PyMem_RawFree(self->low16);
    self->low16 = NULL;
    PyMem_RawFree(self->offsets);
    self->offsets = NULL;
    PyMem_RawFree(self->plain);
    self->plain = NULL;
    return 0;
}

static void Index_dealloc(Index *self) {
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    Index_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Index_call_lookup(Index *self, PyObject *address) {
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Index was not initialised");
        return NULL;
    }
    return Index_lookup(self, address);
}

static PyObject *Index_plain_blocks(Index *self, void *closure) {
    if (!self->ready || self->plain == NULL) { /* (an Index whose __init__ failed or is running) */
        Py_RETURN_NONE;
    }
    uint64_t found = 0;
    for (size_t at = 0; at < BLOCKS / 8; at++) {
        for (uint8_t bits = self->plain[at]; bits != 0; bits &= (uint8_t)(bits - 1)) {
            found++;
        }
    }
    return PyLong_FromUnsignedLongLong(found);
}

static PyGetSetDef Index_getset[] = {
    {"plain_blocks", (getter)Index_plain_blocks, NULL,
     "How many /21 blocks are answered from the bitmap (one label covers each whole), or None: no bitmap.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef Index_methods[] = {
    {"lookup", (PyCFunction)Index_call_lookup, METH_O,
     "lookup(address) -> the rule for an address string, or what rules[0] holds (no match).\n\n"
     "What is not an IPv4 or IPv6 address in plain text goes to other(address)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject IndexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "flask_allow._lookup.Index",
    .tp_basicsize = sizeof(Index),
    .tp_dealloc = (destructor)Index_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Index(rules, other, v4_starts, v4_labels, v4_direct, v4_radix, v6_high, v6_low, v6_labels,"
              " v4_pair=None, plain=False)\n\n"
              "A StaticIndex's arrays searched in C. They are held (they cannot be resized) and must not be\n"
              "changed in place: the tables derived from them (the low halves of v4_starts, the plain blocks)\n"
              "are made with the Index.",
    .tp_traverse = (traverseproc)Index_traverse,
    .tp_weaklistoffset = offsetof(Index, weakrefs),
    .tp_clear = (inquiry)Index_clear,
    .tp_methods = Index_methods,
    .tp_getset = Index_getset,
    .tp_init = (initproc)Index_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef lookup_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "flask_allow._lookup",
    .m_doc = "The compiled index searched in C (optional accelerator).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__lookup(void) {
    if (PyType_Ready(&IndexType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&lookup_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&IndexType);
    if (PyModule_AddObject(module, "Index", (PyObject *)&IndexType) < 0) {
        Py_DECREF(&IndexType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
