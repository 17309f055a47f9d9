/* scanner.venues._mexc_pb: the compiled twin of scanner.venues.mexc_pb._decode_canonical, the fast
 * path for the layout MEXC's server writes (fields in number order, one-byte string lengths).
 *
 *   decode_canonical(data: bytes) -> (body, channel, symbol, t, asks, bids, frm, to) | None
 *
 * It returns exactly what _decode_canonical(data, data.decode("latin-1")) returns, step for step;
 * None wherever that returns None or would raise (IndexError on a read past the end, ParseError on a
 * varint longer than 10 bytes): decode_push then runs the general decoder, which raises or decodes.
 * Strings are latin-1 decoded so they equal the Python slices. Every read is bounds-checked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>

#define AGGRE_DEPTHS 313
#define LIMIT_DEPTHS 303
#define I64_MAX 0x7FFFFFFFFFFFFFFFULL

/* b[j] into v, or out to `none` when j is past the end (Python: IndexError -> None). */
#define GET(v, j) do { if ((j) >= end) goto none; (v) = b[(j)]; } while (0)

/* The varint at b[*i], as mexc_pb._varint reads it (at most 10 bytes): 0 and *i moved past it, or
 * -1 when the bytes run out or it is longer. A value of 2**64 or more (Python's int has no bound)
 * saturates to ULLONG_MAX: still nonzero, still above int64 max, never equal to a length. */
static int varint(const unsigned char *b, Py_ssize_t end, Py_ssize_t *i, unsigned long long *out)
{
    unsigned long long x = 0, v;
    int shift = 0, big = 0;
    Py_ssize_t j = *i;
    for (;;) {
        if (j >= end)
            return -1;
        v = b[j] & 0x7F;
        if (shift == 63 && v > 1)
            big = 1;
        x |= v << shift;
        if (b[j++] < 0x80)
            break;
        shift += 7;
        if (shift >= 70)
            return -1;
    }
    *out = big ? ULLONG_MAX : x;
    *i = j;
    return 0;
}

static PyObject *latin1(const unsigned char *p, Py_ssize_t n)
{
    return PyUnicode_DecodeLatin1((const char *)p, n, NULL);
}

/* Append [price, qty] to side; -1 on a Python error. */
static int append_level(PyObject *side, const unsigned char *p, Py_ssize_t np, const unsigned char *q,
                        Py_ssize_t nq)
{
    PyObject *lv = PyList_New(2);
    int r;
    if (lv == NULL)
        return -1;
    PyList_SET_ITEM(lv, 0, latin1(p, np));
    PyList_SET_ITEM(lv, 1, latin1(q, nq));
    r = (PyList_GET_ITEM(lv, 0) && PyList_GET_ITEM(lv, 1)) ? PyList_Append(side, lv) : -1;
    Py_DECREF(lv);
    return r;
}

static PyObject *decode_canonical(PyObject *self, PyObject *arg)
{
    const unsigned char *b;
    Py_ssize_t end, i, n, ch_len, sym_at = 0, sym_len = 0, frm_at = 0, frm_len = 0, to_at = 0, to_len = 0;
    Py_ssize_t p, k, q, e;
    unsigned long long t = 0, ts, u;
    int c, c2, body, side, len_item, len_p, len_q, tag_q, tag_p;
    PyObject *asks = NULL, *bids = NULL, *res, *items[8];

    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "decode_canonical() needs bytes");
        return NULL;
    }
    b = (const unsigned char *)PyBytes_AS_STRING(arg);
    end = PyBytes_GET_SIZE(arg);

    GET(c, 0);
    if (c != 0x0A)
        goto none;
    GET(ch_len, 1);
    if (ch_len >= 0x80)
        goto none;
    i = 2 + ch_len;
    GET(c, i);
    if (c == 0x1A) { /* symbol */
        GET(n, i + 1);
        if (n < 0x80) {
            sym_at = i + 2;
            sym_len = n;
            i += 2 + n;
        }
    }
    GET(c, i);
    if (c == 0x22) { /* symbolId */
        GET(n, i + 1);
        if (n < 0x80)
            i += 2 + n;
    }
    GET(c, i);
    if (c == 0x28) { /* createTime */
        i++;
        if (varint(b, end, &i, &t) < 0)
            goto none;
    }
    GET(c, i);
    if (c == 0x30) { /* sendTime (wins over createTime) */
        i++;
        if (varint(b, end, &i, &ts) < 0)
            goto none;
        if (ts)
            t = ts;
    }
    GET(c, i); /* the body's two-byte key */
    GET(c2, i + 1);
    body = (c | c2 << 8) == 0x13CA ? AGGRE_DEPTHS : (c | c2 << 8) == 0x12FA ? LIMIT_DEPTHS : 0;
    if (!body || t > I64_MAX)
        goto none;
    GET(c, i + 2);
    if (c < 0x80) {
        u = (unsigned long long)c;
        i += 3;
    } else {
        i += 2;
        if (varint(b, end, &i, &u) < 0)
            goto none;
    }
    if (u != (unsigned long long)(end - i)) /* i <= end here */
        goto none;

    if ((asks = PyList_New(0)) == NULL || (bids = PyList_New(0)) == NULL)
        goto error;
    for (side = 0; side < 2; side++) {
        /* items of one side: tag, length, price (1) and quantity (2), all lengths one byte */
        for (;;) {
            GET(c, i);
            if (c != (side ? 0x12 : 0x0A))
                break;
            p = i + 4;
            GET(len_p, i + 3);
            k = p + len_p;
            q = k + 2;
            GET(len_q, k + 1);
            e = q + len_q;
            GET(len_item, i + 1);
            GET(tag_q, k);
            GET(tag_p, i + 2);
            if (e != i + 2 + len_item || tag_q != 0x12 || k == p || q == e || len_item >= 0x80 || tag_p != 0x0A)
                goto none;
            if (e >= end) /* Python: IndexError at the next b[i] */
                goto none;
            if (append_level(side ? bids : asks, b + p, k - p, b + q, e - q) < 0)
                goto error;
            i = e;
        }
    }
    GET(c, i);
    if (c == 0x1A) { /* eventType */
        GET(n, i + 1);
        if (n < 0x80)
            i += 2 + n;
    }
    GET(c, i);
    if (c == 0x22) { /* fromVersion (limit depths: version) */
        GET(n, i + 1);
        if (n < 0x80) {
            frm_at = i + 2;
            frm_len = n;
            i += 2 + n;
        }
    }
    if (body == LIMIT_DEPTHS) {
        to_at = frm_at;
        to_len = frm_len;
        frm_len = 0;
    } else if (i < end && b[i] == 0x2A) { /* toVersion */
        GET(n, i + 1);
        if (n < 0x80) {
            to_at = i + 2;
            to_len = n;
            i += 2 + n;
            if (i < end && b[i] == 0x30) { /* lastOrderCreateTime */
                i++;
                if (varint(b, end, &i, &u) < 0)
                    goto none;
            }
        }
    }
    if (i != end) /* so every slice above lies inside the frame */
        goto none;

    items[0] = PyLong_FromLong(body);
    items[1] = latin1(b + 2, ch_len);
    items[2] = latin1(b + sym_at, sym_len);
    items[3] = PyLong_FromUnsignedLongLong(t);
    items[4] = asks;
    items[5] = bids;
    items[6] = latin1(b + frm_at, frm_len);
    items[7] = latin1(b + to_at, to_len);
    res = PyTuple_New(8);
    for (n = 0; n < 8; n++) {
        if (items[n] == NULL || res == NULL) {
            for (k = 0; k < 8; k++)
                Py_XDECREF(items[k]);
            Py_XDECREF(res);
            return NULL;
        }
    }
    for (n = 0; n < 8; n++)
        PyTuple_SET_ITEM(res, n, items[n]);
    return res;

none:
    Py_XDECREF(asks);
    Py_XDECREF(bids);
    return Py_NewRef(Py_None);
error:
    Py_XDECREF(asks);
    Py_XDECREF(bids);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode_canonical", decode_canonical, METH_O,
     "decode_canonical(data) -> Push | None: mexc_pb._decode_canonical(data, data.decode('latin-1')), in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mexc_pb", "Compiled fast path of scanner.venues.mexc_pb (see _mexc_pb.c).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__mexc_pb(void)
{
    return PyModule_Create(&module);
}
