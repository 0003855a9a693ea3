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
#include <string.h>

enum { HOST, SCHEME, SCRIPT_NAME, PATH_INFO, QUERY_STRING, USER_AGENT, N_KEYS };

static const char *const key_names[N_KEYS] = {
    "HTTP_HOST", "wsgi.url_scheme", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "HTTP_USER_AGENT",
};

typedef struct {
    PyObject *keys[N_KEYS];
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
    PyObject *environ = args[0];
    if (!PyDict_CheckExact(environ))
        Py_RETURN_NONE;
    module_state *state = (module_state *)PyModule_GetState(module);
    part host, scheme, root, path, query, agent, method, address, reason, head, middle, tail;
    int found;
    if ((found = environ_part(environ, state->keys[HOST], NULL, 0, &host)) <= 0 ||
        (found = environ_part(environ, state->keys[SCHEME], "http", 0, &scheme)) <= 0 ||
        (found = environ_part(environ, state->keys[SCRIPT_NAME], "", 1, &root)) <= 0 ||
        (found = environ_part(environ, state->keys[PATH_INFO], "", 1, &path)) <= 0 ||
        (found = environ_part(environ, state->keys[QUERY_STRING], "", 1, &query)) <= 0 ||
        (found = environ_part(environ, state->keys[USER_AGENT], "", 0, &agent)) <= 0) {
        if (found < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    long msecs = PyLong_Check(args[5]) ? PyLong_AsLong(args[5]) : 1000;
    if (msecs == -1 && PyErr_Occurred())
        return NULL;
    if ((method.text = ascii_of(args[1], &method.length)) == NULL ||
        (address.text = ascii_of(args[2], &address.length)) == NULL ||
        (reason.text = ascii_of(args[3], &reason.length)) == NULL ||
        (head.text = ascii_of(args[4], &head.length)) == NULL ||
        (middle.text = ascii_of(args[6], &middle.length)) == NULL ||
        (tail.text = ascii_of(args[7], &tail.length)) == NULL || msecs > 999)
        Py_RETURN_NONE;
    int https = scheme.length == 5 && memcmp(scheme.text, "https", 5) == 0;
    if (!(https || (scheme.length == 4 && memcmp(scheme.text, "http", 4) == 0)) ||
        !plain_host(host.text, host.length) || !plain(root.text, root.length, 1) ||
        !plain(path.text, path.length, 1) || !plain(query.text, query.length, 2) ||
        !safe(method.text, method.length) || !safe(address.text, address.length) ||
        !safe(reason.text, reason.length) || !safe(agent.text, agent.length))
        Py_RETURN_NONE;
    while (root.length > 0 && root.text[root.length - 1] == '/') /* root.rstrip("/") */
        root.length--;
    while (path.length > 0 && path.text[0] == '/') { /* path.lstrip("/") */
        path.text++;
        path.length--;
    }
    Py_ssize_t size = head.length + (msecs >= 0 ? 3 : 0) + middle.length + address.length + 1 + reason.length +
                      1 + method.length + 1 + scheme.length + 3 + host.length + root.length + 1 + path.length +
                      (query.length ? 1 + query.length : 0) + 2 + agent.length + 1 + tail.length + 1;
    PyObject *result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL)
        return NULL;
    char *at = PyBytes_AS_STRING(result);
    at = put(at, head.text, head.length);
    if (msecs >= 0) {
        *at++ = (char)('0' + msecs / 100);
        *at++ = (char)('0' + msecs / 10 % 10);
        *at++ = (char)('0' + msecs % 10);
    }
    at = put(at, middle.text, middle.length);
    at = put(at, address.text, address.length);
    *at++ = ' ';
    at = put(at, reason.text, reason.length);
    *at++ = ' ';
    at = put(at, method.text, method.length);
    *at++ = ' ';
    at = put(at, scheme.text, scheme.length);
    at = put(at, "://", 3);
    at = put(at, host.text, host.length);
    at = put(at, root.text, root.length);
    *at++ = '/';
    at = put(at, path.text, path.length);
    if (query.length) {
        *at++ = '?';
        at = put(at, query.text, query.length);
    }
    at = put(at, " \"", 2);
    at = put(at, agent.text, agent.length);
    *at++ = '"';
    at = put(at, tail.text, tail.length);
    *at++ = '\n';
    if (at != PyBytes_AS_STRING(result) + size) { /* cannot happen: the size is the parts' */
        Py_DECREF(result);
        PyErr_SetString(PyExc_SystemError, "flask_allow._logline: line size mismatch");
        return NULL;
    }
    return result;
}

static PyMethodDef methods[] = {
    {"line", (PyCFunction)(void (*)(void))line, METH_FASTCALL, line_doc},
    {NULL, NULL, 0, NULL},
};

static int module_traverse(PyObject *module, visitproc visit, void *arg) {
    module_state *state = (module_state *)PyModule_GetState(module);
    for (int i = 0; i < N_KEYS; i++)
        Py_VISIT(state->keys[i]);
    return 0;
}

static int module_clear(PyObject *module) {
    module_state *state = (module_state *)PyModule_GetState(module);
    for (int i = 0; i < N_KEYS; i++)
        Py_CLEAR(state->keys[i]);
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
    return module;
}
