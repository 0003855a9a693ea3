/*
 * flask_allow._logline: the access log's line of a plain request, made in C.
 *
 * An optional accelerator for the access log (see accesslog/fastline.py): for a request whose
 * parts need no escaping and whose URL is its parts joined (line.py's _PLAIN_PARTS: a lower-case
 * host without IDNA, a port that is not a default one, the plain characters of a path and query),
 * it makes the line's bytes in one call, exactly as line.py's format_line and the formatter
 * would write them. For anything else (a part that is not ASCII, a character to escape, a URL
 * werkzeug would decode, a value that is not a str) it returns None and the Python code writes
 * the line, so the two can only differ in speed. Without a C compiler the package installs
 * without this module and the Python code writes every line.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <structmember.h>
#ifdef _WIN32
#include <io.h>
#define write _write
#else
#include <unistd.h>
#endif

enum { HOST, SCHEME, SCRIPT_NAME, PATH_INFO, QUERY_STRING, USER_AGENT, N_KEYS };

static const char *const key_names[N_KEYS] = {
    "HTTP_HOST", "wsgi.url_scheme", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "HTTP_USER_AGENT",
};

typedef struct {
    PyObject *keys[N_KEYS];
    PyObject *prefixes_name, *converter_name, *msec_format_name, *msec_format, *billion;
} module_state;

/* What a character may be in SCRIPT_NAME and PATH_INFO (1), and in QUERY_STRING too (2). */
static unsigned char plain_url[128];
/* 1: a character the access log escapes (control characters, DEL, quote, backslash). */
static unsigned char unsafe[128];

static void fill_tables(void) {
    const char *path = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._~!$&'()*+,;=:@-";
    for (const char *c = path; *c; c++)
        plain_url[(unsigned char)*c] = 3;
    plain_url['?'] = 2;
    for (int c = 0; c < 0x20; c++)
        unsafe[c] = 1;
    unsafe[0x7f] = unsafe['\\'] = unsafe['"'] = 1;
}

/* An ASCII text (a str whose characters are all ASCII) as its bytes, or NULL. */
static const char *ascii_of(PyObject *text, Py_ssize_t *length) {
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text))
        return NULL;
    *length = PyUnicode_GET_LENGTH(text);
    return (const char *)PyUnicode_DATA(text);
}

/* Whether none of the characters is one the access log escapes. */
static int safe(const char *text, Py_ssize_t length) {
    for (Py_ssize_t i = 0; i < length; i++)
        if (unsafe[(unsigned char)text[i]])
            return 0;
    return 1;
}

/* Whether every character is plain in a URL part (mask 1: path, 2: query). */
static int plain(const char *text, Py_ssize_t length, unsigned char mask) {
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 128 || !(plain_url[c] & mask))
            return 0;
    }
    return 1;
}

/* line.py's host and port: [a-z0-9.-]+ without "xn--", then nothing or ":PORT", PORT 1-65535
 * written without a leading zero, and neither 80 nor 443. */
static int plain_host(const char *host, Py_ssize_t length) {
    Py_ssize_t name = 0;
    while (name < length && host[name] != ':') {
        char c = host[name];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
            return 0;
        if (c == '-' && name >= 3 && host[name - 1] == '-' && host[name - 2] == 'n' && host[name - 3] == 'x')
            return 0; /* "xn--" */
        name++;
    }
    if (name == 0)
        return 0;
    if (name == length)
        return 1;
    const char *port = host + name + 1;
    Py_ssize_t digits = length - name - 1;
    if (digits < 1 || digits > 5 || port[0] == '0')
        return 0;
    long value = 0;
    for (Py_ssize_t i = 0; i < digits; i++) {
        if (port[i] < '0' || port[i] > '9')
            return 0;
        value = value * 10 + (port[i] - '0');
    }
    return value <= 65535 && value != 80 && value != 443;
}

typedef struct {
    const char *text;
    Py_ssize_t length;
} part;

/* The environ's value of a key: an ASCII str, or the default when missing (or None, with
 * or_empty); 0 when it is something else (the Python code writes the line), -1 on an error. */
static int environ_part(PyObject *environ, PyObject *key, const char *fallback, int none_is_empty, part *out) {
    PyObject *value = PyDict_GetItemWithError(environ, key);
    if (value == NULL) {
        if (PyErr_Occurred())
            return -1;
        if (fallback == NULL)
            return 0;
        out->text = fallback;
        out->length = (Py_ssize_t)strlen(fallback);
        return 1;
    }
    if (value == Py_None && none_is_empty) {
        out->text = "";
        out->length = 0;
        return 1;
    }
    out->text = ascii_of(value, &out->length);
    return out->text != NULL;
}

static char *put(char *at, const char *text, Py_ssize_t length) {
    memcpy(at, text, (size_t)length);
    return at + length;
}

/* A plain request's line, worked out: its parts, and its size (newline included). */
typedef struct {
    part host, scheme, root, path, query, agent, method, address, reason, head, middle, tail;
    long msecs;
    Py_ssize_t size;
} plan;

/* Whether the request's line is a plain one (1: planned), is not (0: the Python code writes
 * it), or -1 on an error. msecs is three digits, or none when negative. */
static int plan_line(module_state *state, PyObject *environ, PyObject *method, PyObject *address, PyObject *reason,
                     PyObject *head, long msecs, PyObject *middle, PyObject *tail, plan *out) {
    if (!PyDict_CheckExact(environ) || msecs > 999)
        return 0;
    int found;
    if ((found = environ_part(environ, state->keys[HOST], NULL, 0, &out->host)) <= 0 ||
        (found = environ_part(environ, state->keys[SCHEME], "http", 0, &out->scheme)) <= 0 ||
        (found = environ_part(environ, state->keys[SCRIPT_NAME], "", 1, &out->root)) <= 0 ||
        (found = environ_part(environ, state->keys[PATH_INFO], "", 1, &out->path)) <= 0 ||
        (found = environ_part(environ, state->keys[QUERY_STRING], "", 1, &out->query)) <= 0 ||
        (found = environ_part(environ, state->keys[USER_AGENT], "", 0, &out->agent)) <= 0)
        return found;
    if ((out->method.text = ascii_of(method, &out->method.length)) == NULL ||
        (out->address.text = ascii_of(address, &out->address.length)) == NULL ||
        (out->reason.text = ascii_of(reason, &out->reason.length)) == NULL ||
        (out->head.text = ascii_of(head, &out->head.length)) == NULL ||
        (out->middle.text = ascii_of(middle, &out->middle.length)) == NULL ||
        (out->tail.text = ascii_of(tail, &out->tail.length)) == NULL)
        return 0;
    part *scheme = &out->scheme, *root = &out->root, *path = &out->path;
    int https = scheme->length == 5 && memcmp(scheme->text, "https", 5) == 0;
    if (!(https || (scheme->length == 4 && memcmp(scheme->text, "http", 4) == 0)) ||
        !plain_host(out->host.text, out->host.length) || !plain(root->text, root->length, 1) ||
        !plain(path->text, path->length, 1) || !plain(out->query.text, out->query.length, 2) ||
        !safe(out->method.text, out->method.length) || !safe(out->address.text, out->address.length) ||
        !safe(out->reason.text, out->reason.length) || !safe(out->agent.text, out->agent.length))
        return 0;
    while (root->length > 0 && root->text[root->length - 1] == '/') /* root.rstrip("/") */
        root->length--;
    while (path->length > 0 && path->text[0] == '/') { /* path.lstrip("/") */
        path->text++;
        path->length--;
    }
    out->msecs = msecs;
    out->size = out->head.length + (msecs >= 0 ? 3 : 0) + out->middle.length + out->address.length + 1 +
                out->reason.length + 1 + out->method.length + 1 + scheme->length + 3 + out->host.length +
                root->length + 1 + path->length + (out->query.length ? 1 + out->query.length : 0) + 2 +
                out->agent.length + 1 + out->tail.length + 1;
    return 1;
}

/* Write a planned line into at (plan.size bytes); the end it reached. */
static char *fill_line(const plan *line, char *at) {
    at = put(at, line->head.text, line->head.length);
    if (line->msecs >= 0) {
        *at++ = (char)('0' + line->msecs / 100);
        *at++ = (char)('0' + line->msecs / 10 % 10);
        *at++ = (char)('0' + line->msecs % 10);
    }
    at = put(at, line->middle.text, line->middle.length);
    at = put(at, line->address.text, line->address.length);
    *at++ = ' ';
    at = put(at, line->reason.text, line->reason.length);
    *at++ = ' ';
    at = put(at, line->method.text, line->method.length);
    *at++ = ' ';
    at = put(at, line->scheme.text, line->scheme.length);
    at = put(at, "://", 3);
    at = put(at, line->host.text, line->host.length);
    at = put(at, line->root.text, line->root.length);
    *at++ = '/';
    at = put(at, line->path.text, line->path.length);
    if (line->query.length) {
        *at++ = '?';
        at = put(at, line->query.text, line->query.length);
    }
    at = put(at, " \"", 2);
    at = put(at, line->agent.text, line->agent.length);
    *at++ = '"';
    at = put(at, line->tail.text, line->tail.length);
    *at++ = '\n';
    return at;
}

static PyObject *size_mismatch(void) { /* cannot happen: the size is the parts' */
    PyErr_SetString(PyExc_SystemError, "flask_allow._logline: line size mismatch");
    return NULL;
}

PyDoc_STRVAR(line_doc,
             "line(environ, method, address, reason, head, msecs, middle, tail) -> bytes | None\n\n"
             "The access log's line of a plain request, newline included: head, msecs as three digits\n"
             "(none when negative), middle, then the message (address, reason, method, URL and the\n"
             "quoted User-Agent) and tail. None when the Python code must write it.");

static PyObject *line(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "line() takes 8 arguments");
        return NULL;
    }
    long msecs = PyLong_Check(args[5]) ? PyLong_AsLong(args[5]) : 1000;
    if (msecs == -1 && PyErr_Occurred())
        return NULL;
    plan planned;
    int found = plan_line((module_state *)PyModule_GetState(module), args[0], args[1], args[2], args[3], args[4],
                          msecs, args[6], args[7], &planned);
    if (found <= 0) {
        if (found < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, planned.size);
    if (result == NULL)
        return NULL;
    if (fill_line(&planned, PyBytes_AS_STRING(result)) != PyBytes_AS_STRING(result) + planned.size) {
        Py_DECREF(result);
        return size_mismatch();
    }
    return result;
}

/* The file handler's count of its file's size (see accesslog/file.py's _FileHandler). */
typedef struct {
    PyObject_HEAD Py_ssize_t size;
    Py_ssize_t uncounted;
} Count;

static PyMemberDef count_members[] = {
    {"size", T_PYSSIZET, offsetof(Count, size), 0, "the file's size as counted (-1: ask the file)"},
    {"uncounted", T_PYSSIZET, offsetof(Count, uncounted), 0, "the lines since the file was last asked"},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *count_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) || (kwargs && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "Count() takes no arguments");
        return NULL;
    }
    Count *count = (Count *)type->tp_alloc(type, 0);
    if (count != NULL) {
        count->size = -1;
        count->uncounted = 0;
    }
    return (PyObject *)count;
}

static PyTypeObject CountType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "flask_allow._logline.Count",
    .tp_basicsize = sizeof(Count),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Count(): a log file's size as counted (-1: ask the file), and the lines since it was asked."),
    .tp_members = count_members,
    .tp_new = count_new,
};

/* The clock as the formatter reads it (time.time(), or time.time_ns() where LogRecord uses it):
 * the whole second and the milliseconds, as formatter.py's parts() and _times() work them out.
 * 1: found; 0: a time the Python code handles (negative, not a number); -1: an error. */
static int clock_parts(module_state *state, PyObject *now, double *second, long *msecs) {
    if (PyFloat_CheckExact(now)) {
        double value = PyFloat_AS_DOUBLE(now);
        if (!(value >= 0) || value > 1e15)
            return 0;
        *second = floor(value);
        *msecs = (long)floor((value - *second) * 1000);
        return 1;
    }
    if (!PyLong_CheckExact(now))
        return 0;
    int overflow;
    long long ns = PyLong_AsLongLongAndOverflow(now, &overflow);
    if (ns == -1 && PyErr_Occurred())
        return -1;
    if (overflow || ns < 0)
        return 0;
    PyObject *created = PyNumber_TrueDivide(now, state->billion); /* rounded as Python rounds it */
    if (created == NULL)
        return -1;
    double whole = trunc(PyFloat_AsDouble(created));
    Py_DECREF(created);
    *second = whole;
    *msecs = (long)(ns % 1000000000 / 1000000);
    if (*msecs == 999 && (long long)whole != ns / 1000000000)
        *msecs = 0;
    return 1;
}

/* The formatter's text before the message for the second and level, when its _prefixes hold it
 * for the level (key: second, level, converter, msec format, template): head and middle; 0 when
 * stale or not made yet. */
static int current_prefix(module_state *state, PyObject *formatter, double second, PyObject *level_object,
                          long level, PyObject **head, PyObject **middle) {
    PyObject *prefixes = PyObject_GetAttr(formatter, state->prefixes_name);
    if (prefixes == NULL)
        return -1;
    PyObject *found = PyDict_CheckExact(prefixes) ? PyDict_GetItemWithError(prefixes, level_object) : NULL;
    Py_XINCREF(found); /* held: the lookups below may run code that changes the dict */
    Py_DECREF(prefixes);
    if (found == NULL)
        return PyErr_Occurred() ? -1 : 0;
    int current = 0;
    PyObject *key, *converter = NULL, *msec_format = NULL;
    if (!PyTuple_CheckExact(found) || PyTuple_GET_SIZE(found) != 3 || !PyTuple_CheckExact(key = PyTuple_GET_ITEM(found, 0)) ||
        PyTuple_GET_SIZE(key) != 5 || PyTuple_GET_ITEM(key, 4) != Py_None)
        goto done;
    PyObject *stamped = PyTuple_GET_ITEM(key, 0), *leveled = PyTuple_GET_ITEM(key, 1);
    double at = PyFloat_CheckExact(stamped) ? PyFloat_AS_DOUBLE(stamped)
                : PyLong_CheckExact(stamped)  ? PyLong_AsDouble(stamped)
                                              : -1;
    long kept_level = PyLong_CheckExact(leveled) ? PyLong_AsLong(leveled) : -1;
    if (PyErr_Occurred()) { /* a second or a level out of range is only not the current one */
        PyErr_Clear();
        goto done;
    }
    if (at != second || !PyLong_CheckExact(leveled) || kept_level != level)
        goto done;
    if ((converter = PyObject_GetAttr(formatter, state->converter_name)) == NULL ||
        (msec_format = PyObject_GetAttr(formatter, state->msec_format_name)) == NULL) {
        current = -1;
        goto done;
    }
    PyObject *kept = PyTuple_GET_ITEM(key, 3);
    if (converter != PyTuple_GET_ITEM(key, 2) || !PyUnicode_CheckExact(msec_format) || !PyUnicode_CheckExact(kept) ||
        PyUnicode_Compare(msec_format, state->msec_format) != 0 || PyUnicode_Compare(kept, state->msec_format) != 0) {
        if (PyErr_Occurred())
            current = -1;
        goto done;
    }
    *head = PyTuple_GET_ITEM(found, 1);
    *middle = PyTuple_GET_ITEM(found, 2);
    Py_INCREF(*head);
    Py_INCREF(*middle);
    current = 1;
done:
    Py_XDECREF(converter);
    Py_XDECREF(msec_format);
    Py_DECREF(found);
    return current;
}

/* Write all of data to fd (the GIL released), as os.write and file.py's _finish would: again
 * after a signal or a short write, the signal's Python handler run first (an error it raises
 * ends it); OSError on an error, or when nothing is written. */
static int write_all(int fd, const char *data, Py_ssize_t size) {
    Py_ssize_t done = 0;
    while (done < size) {
        Py_ssize_t wrote;
        int error;
        Py_BEGIN_ALLOW_THREADS
        wrote = (Py_ssize_t)write(fd, data + done, (size_t)(size - done));
        error = errno;
        Py_END_ALLOW_THREADS
        if (wrote < 0) {
            if (error == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    return -1;
                continue;
            }
            errno = error;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (wrote == 0) {
            PyErr_SetString(PyExc_OSError, "could not write to the access log");
            return -1;
        }
        done += wrote;
        if (done < size && PyErr_CheckSignals() < 0) /* a short write: as between two os.write() */
            return -1;
    }
    return 0;
}

PyDoc_STRVAR(write_doc,
             "write(formatter, now, level, environ, method, address, reason, tail, count, max_bytes, fd, recount)\n"
             "-> True | bytes | False | None\n\n"
             "Write a plain request's line to the log file: the formatter's text before the message for\n"
             "the clock value now (its _prefixes, made once a second and level), the message and tail,\n"
             "written to fd when the count says it fits (count and max_bytes as file.py's put_bytes\n"
             "checks them; with max_bytes 0 always) and the count updated: True. The line's bytes when it\n"
             "may not fit (the caller rolls over and writes them); False when the request is not plain (the\n"
             "Python code makes its line); None when the level's prefix is not the current second's (or the\n"
             "clock or count is not one it reads): the caller makes the prefix, the C maker the line.");

static PyObject *write_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "write() takes 12 arguments");
        return NULL;
    }
    module_state *state = (module_state *)PyModule_GetState(module);
    PyObject *formatter = args[0], *count_object = args[8];
    if (!Py_IS_TYPE(count_object, &CountType) || !PyLong_CheckExact(args[2]))
        Py_RETURN_NONE;
    long level = PyLong_AsLong(args[2]);
    Py_ssize_t max_bytes = PyLong_AsSsize_t(args[9]), recount = PyLong_AsSsize_t(args[11]);
    long fd = PyLong_AsLong(args[10]);
    if ((level == -1 || max_bytes == -1 || recount == -1 || fd == -1) && PyErr_Occurred())
        return NULL;
    if (recount < 1) {
        PyErr_SetString(PyExc_ValueError, "write(): recount must be at least 1");
        return NULL;
    }
    if (fd > INT_MAX)
        fd = -1; /* not a file descriptor: the caller's put_bytes() writes it */
    double second;
    long msecs;
    int found = clock_parts(state, args[1], &second, &msecs);
    if (found <= 0)
        goto not_ours;
    PyObject *head = NULL, *middle = NULL;
    if ((found = current_prefix(state, formatter, second, args[2], level, &head, &middle)) <= 0)
        goto not_ours;
    plan planned;
    found = plan_line(state, args[3], args[4], args[5], args[6], head, msecs, middle, args[7], &planned);
    PyObject *result = NULL;
    if (found <= 0)
        goto release;
    char stack[2048], *data = planned.size <= (Py_ssize_t)sizeof stack ? stack : PyMem_Malloc((size_t)planned.size);
    if (data == NULL) {
        PyErr_NoMemory();
        found = -1;
        goto release;
    }
    if (fill_line(&planned, data) != data + planned.size) {
        size_mismatch();
        found = -1;
        goto free_data;
    }
    Count *count = (Count *)count_object;
    Py_ssize_t size = count->size;
    if (fd < 0 || (max_bytes > 0 && (size < 0 || size >= max_bytes - planned.size || count->uncounted < 0 ||
                                     count->uncounted >= recount - 1))) {
        result = PyBytes_FromStringAndSize(data, planned.size); /* a rollover first, maybe: the caller's */
    } else {
        if (max_bytes > 0) { /* what file.py's _rolls() would do (nothing, without a maxBytes) */
            count->size = size + planned.size;
            count->uncounted++;
        }
        result = write_all((int)fd, data, planned.size) < 0 ? NULL : Py_NewRef(Py_True); /* nothing to fail after */
    }
    if (result == NULL)
        found = -1;
free_data:
    if (data != stack)
        PyMem_Free(data);
release:
    Py_DECREF(head);
    Py_DECREF(middle);
    if (found < 0)
        return NULL;
    if (found > 0)
        return result;
    Py_RETURN_FALSE; /* not plain: the Python code makes the line */
not_ours:
    if (found < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"line", (PyCFunction)(void (*)(void))line, METH_FASTCALL, line_doc},
    {"write", (PyCFunction)(void (*)(void))write_line, METH_FASTCALL, write_doc},
    {NULL, NULL, 0, NULL},
};

static int module_traverse(PyObject *module, visitproc visit, void *arg) {
    module_state *state = (module_state *)PyModule_GetState(module);
    for (int i = 0; i < N_KEYS; i++)
        Py_VISIT(state->keys[i]);
    Py_VISIT(state->prefixes_name);
    Py_VISIT(state->converter_name);
    Py_VISIT(state->msec_format_name);
    Py_VISIT(state->msec_format);
    Py_VISIT(state->billion);
    return 0;
}

static int module_clear(PyObject *module) {
    module_state *state = (module_state *)PyModule_GetState(module);
    for (int i = 0; i < N_KEYS; i++)
        Py_CLEAR(state->keys[i]);
    Py_CLEAR(state->prefixes_name);
    Py_CLEAR(state->converter_name);
    Py_CLEAR(state->msec_format_name);
    Py_CLEAR(state->msec_format);
    Py_CLEAR(state->billion);
    return 0;
}

static struct PyModuleDef logline_module = {
    PyModuleDef_HEAD_INIT,
    "flask_allow._logline",
    "The access log's line of a plain request, made in C (see accesslog/fastline.py).",
    sizeof(module_state),
    methods,
    NULL,
    module_traverse,
    module_clear,
    NULL,
};

PyMODINIT_FUNC PyInit__logline(void) {
    fill_tables();
    PyObject *module = PyModule_Create(&logline_module);
    if (module == NULL)
        return NULL;
    module_state *state = (module_state *)PyModule_GetState(module);
    for (int i = 0; i < N_KEYS; i++) {
        state->keys[i] = PyUnicode_InternFromString(key_names[i]);
        if (state->keys[i] == NULL) {
            Py_DECREF(module);
            return NULL;
        }
    }
    if ((state->prefixes_name = PyUnicode_InternFromString("_prefixes")) == NULL ||
        (state->converter_name = PyUnicode_InternFromString("converter")) == NULL ||
        (state->msec_format_name = PyUnicode_InternFromString("default_msec_format")) == NULL ||
        (state->msec_format = PyUnicode_InternFromString("%s,%03d")) == NULL ||
        (state->billion = PyLong_FromLong(1000000000)) == NULL || PyType_Ready(&CountType) < 0 ||
        PyModule_AddObjectRef(module, "Count", (PyObject *)&CountType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
