/* scanner.detect._walk: the compiled twin of scanner.detect.spread.walk for the common case
 * (buy fee paid in quote), in exact scaled integers instead of Decimal objects.
 *
 *   walk_quote(asks, bids, up, down, thr, cap) -> (size, cost, proceeds, used_a, used_b) | None | NotImplemented
 *
 * asks/bids: lists (or tuples) of [price, size] string pairs, best first. up = 1 + buy fee,
 * down = 1 - sell fee, thr = min_net_bps / 10000 and cap (max notional, or None) as the str() of
 * their Decimals. The loop is spread.walk's, step for step.
 *
 * Every number is held as Decimal holds it, a signed coefficient and a base-10 exponent, and every
 * operation follows Decimal's rules for an exact result: a product's exponent is the sum of the
 * operands', a sum's is the smaller of the two. As long as every coefficient stays below 10**28
 * (the default context's 28 digits), Decimal rounds nothing and the results here are the very
 * Decimals the Python walk returns, exponent included. Whenever that cannot be shown (a coefficient
 * that would reach 10**28, a string that is not a plain unsigned decimal, a cap that binds, where the
 * Python walk divides) the function returns NotImplemented and the caller runs the Decimal walk.
 * None: not even the first unit qualifies, as spread.walk.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef __int128 i128;

typedef struct {
    i128 c;  /* coefficient */
    int e;   /* exponent */
} dec;

#define LIMIT_DIGITS 28
static i128 LIMIT;        /* 10**28: a coefficient must stay below it (Decimal's default precision) */
static i128 POW10[39];    /* 10**0 .. 10**38 */
static PyObject *Decimal; /* decimal.Decimal */

/* 0: ok, -1: not exact here (fall back) */
static inline int
in_range(i128 c)
{
    return (c < LIMIT && c > -LIMIT) ? 0 : -1;
}

static inline int
dmul(dec a, dec b, dec *out)
{
    i128 c;
    if (__builtin_mul_overflow(a.c, b.c, &c) || in_range(c))
        return -1;
    out->c = c;
    out->e = a.e + b.e;
    return 0;
}

/* a and b brought to the smaller exponent: Decimal's alignment for an exact sum or comparison */
static inline int
align(dec *a, dec *b)
{
    if (a->e == b->e)
        return 0;
    dec *hi = a->e > b->e ? a : b;
    int d = hi->e - (a->e > b->e ? b->e : a->e);
    if (hi->c != 0) {
        if (d > LIMIT_DIGITS)
            return -1;
        i128 c;
        if (__builtin_mul_overflow(hi->c, POW10[d], &c) || in_range(c))
            return -1;
        hi->c = c;
    }
    hi->e -= d;
    return 0;
}

static inline int
dadd(dec a, dec b, dec *out)
{
    if (align(&a, &b))
        return -1;
    i128 c = a.c + b.c;
    if (in_range(c))
        return -1;
    out->c = c;
    out->e = a.e;
    return 0;
}

static inline int
dsub(dec a, dec b, dec *out)
{
    b.c = -b.c;
    return dadd(a, b, out);
}

/* -1, 0, 1 as a <, ==, > b; 2: not decidable here */
static inline int
dcmp(dec a, dec b)
{
    if (align(&a, &b)) {
        /* exponents too far apart to align: decide by sign, else give up */
        int sa = (a.c > 0) - (a.c < 0), sb = (b.c > 0) - (b.c < 0);
        return sa != sb ? (sa < sb ? -1 : 1) : 2;
    }
    return (a.c > b.c) - (a.c < b.c);
}

/* A plain decimal (a leading '-' only with allow_sign), "12", "12.5", ".5", "12.", optionally with an exponent "1.5E-7",
 * as Decimal(s) reads it (coefficient and exponent kept as written). -1: anything else. */
static int
parse_signed(PyObject *s, dec *out, int allow_sign)
{
    Py_ssize_t n;
    const char *p;
    if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s))
        return -1;
    n = PyUnicode_GET_LENGTH(s);
    p = (const char *)PyUnicode_DATA(s);
    i128 c = 0;
    int digits = 0, frac = 0, seen_dot = 0, sig = 0, minus = 0;
    Py_ssize_t i = 0;
    if (allow_sign && n > 0 && p[0] == '-') {
        minus = 1;
        i = 1;
    }
    for (; i < n; i++) {
        char ch = p[i];
        if (ch >= '0' && ch <= '9') {
            if (sig || ch != '0')
                sig++;
            if (sig > LIMIT_DIGITS)
                return -1;
            c = c * 10 + (ch - '0');
            digits++;
            if (seen_dot)
                frac++;
        } else if (ch == '.' && !seen_dot) {
            seen_dot = 1;
        } else {
            break;
        }
    }
    if (digits == 0)
        return -1;
    long exp = 0;
    if (i < n) {
        if (p[i] != 'e' && p[i] != 'E')
            return -1;
        i++;
        int neg = 0;
        if (i < n && (p[i] == '+' || p[i] == '-')) {
            neg = p[i] == '-';
            i++;
        }
        if (i >= n)
            return -1;
        for (; i < n; i++) {
            if (p[i] < '0' || p[i] > '9' || exp > 100000)
                return -1;
            exp = exp * 10 + (p[i] - '0');
        }
        if (neg)
            exp = -exp;
    }
    if (minus && c == 0)
        return -1; /* Decimal keeps the sign of a negative zero: not modelled here */
    out->c = minus ? -c : c;
    out->e = (int)(exp - frac);
    return 0;
}

/* a price or size: unsigned */
static inline int
parse(PyObject *s, dec *out)
{
    return parse_signed(s, out, 0);
}

static int
parse_level(PyObject *side, Py_ssize_t k, dec *px, dec *sz)
{
    PyObject *row = PySequence_Fast_GET_ITEM(side, k);
    PyObject *a, *b;
    if (PyTuple_CheckExact(row) && PyTuple_GET_SIZE(row) >= 2) {
        a = PyTuple_GET_ITEM(row, 0);
        b = PyTuple_GET_ITEM(row, 1);
    } else if (PyList_CheckExact(row) && PyList_GET_SIZE(row) >= 2) {
        a = PyList_GET_ITEM(row, 0);
        b = PyList_GET_ITEM(row, 1);
    } else {
        return -1;
    }
    return (parse(a, px) || parse(b, sz)) ? -1 : 0;
}

static PyObject *
to_decimal(dec d)
{
    char buf[64];
    char *q = buf + sizeof(buf);
    i128 c = d.c;
    int neg = c < 0;
    unsigned __int128 u = neg ? (unsigned __int128)(-c) : (unsigned __int128)c;
    char tail[16];
    int tl = snprintf(tail, sizeof(tail), "E%d", d.e);
    q -= tl + 1;
    memcpy(q, tail, (size_t)tl + 1);
    do {
        *--q = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (neg)
        *--q = '-';
    PyObject *s = PyUnicode_FromString(q);
    if (s == NULL)
        return NULL;
    PyObject *r = PyObject_CallOneArg(Decimal, s);
    Py_DECREF(s);
    return r;
}

#define FALL_BACK() do { Py_DECREF(asks); Py_DECREF(bids); Py_RETURN_NOTIMPLEMENTED; } while (0)
#define TRY(x) do { if (x) FALL_BACK(); } while (0)

static PyObject *
walk_quote(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "walk_quote(asks, bids, up, down, thr, cap) takes 6 arguments");
        return NULL;
    }
    dec up, down, thr, cap = {0, 0};
    int capped = args[5] != Py_None;
    if (parse_signed(args[2], &up, 1) || parse_signed(args[3], &down, 1) || parse_signed(args[4], &thr, 1) ||
        (capped && parse_signed(args[5], &cap, 1)))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *asks = PySequence_Fast(args[0], "walk_quote: asks must be a sequence");
    if (asks == NULL)
        return NULL;
    PyObject *bids = PySequence_Fast(args[1], "walk_quote: bids must be a sequence");
    if (bids == NULL) {
        Py_DECREF(asks);
        return NULL;
    }
    const dec zero = {0, 0};
    dec size = zero, cost = zero, proceeds = zero, qa = zero, qb = zero, a = zero, b = zero;
    Py_ssize_t i = 0, j = 0, used_a = 0, used_b = 0;
    Py_ssize_t n_ask = PySequence_Fast_GET_SIZE(asks), n_bid = PySequence_Fast_GET_SIZE(bids);
    for (;;) {
        if (qa.c == 0) {
            if (i >= n_ask)
                break;
            TRY(parse_level(asks, i, &a, &qa));
            i++;
            continue;
        }
        if (qb.c == 0) {
            if (j >= n_bid)
                break;
            TRY(parse_level(bids, j, &b, &qb));
            j++;
            continue;
        }
        /* unit_cost = a * up; stop when b * down - unit_cost < unit_cost * thr */
        dec unit_cost, yield, edge, need;
        TRY(dmul(a, up, &unit_cost) || dmul(b, down, &yield) || dsub(yield, unit_cost, &edge) ||
            dmul(unit_cost, thr, &need));
        int r = dcmp(edge, need);
        TRY(r == 2);
        if (r < 0)
            break;
        r = dcmp(qb, qa);
        TRY(r == 2);
        dec q = r < 0 ? qb : qa;
        dec spent, got;
        TRY(dmul(a, q, &spent) || dmul(b, q, &got));
        if (capped) {
            /* the Python walk: room = (cap - cost) / a; stop if room <= 0; take room if room < q.
             * With a > 0 both tests are exact without the division: room <= 0 iff cap - cost <= 0,
             * room < q iff cap - cost < a * q. A cap that binds needs the division: fall back. */
            dec left;
            TRY(a.c == 0);  /* the Python walk divides by a: let it raise as it does */
            TRY(dsub(cap, cost, &left));
            if (left.c <= 0)
                break;
            r = dcmp(left, spent);
            TRY(r == 2 || r < 0);
        }
        TRY(dadd(size, q, &size) || dadd(cost, spent, &cost) || dadd(proceeds, got, &proceeds) ||
            dsub(qa, q, &qa) || dsub(qb, q, &qb));
        used_a = i;
        used_b = j;
    }
    Py_DECREF(asks);
    Py_DECREF(bids);
    if (size.c == 0)
        Py_RETURN_NONE;
    PyObject *ds = to_decimal(size), *dc = NULL, *dp = NULL;
    if (ds != NULL && (dc = to_decimal(cost)) != NULL && (dp = to_decimal(proceeds)) != NULL)
        return Py_BuildValue("(NNNnn)", ds, dc, dp, used_a, used_b);
    Py_XDECREF(ds);
    Py_XDECREF(dc);
    return NULL;
}

static PyMethodDef methods[] = {
    {"walk_quote", (PyCFunction)(void (*)(void))walk_quote, METH_FASTCALL,
     "walk_quote(asks, bids, up, down, thr, cap) -> (size, cost, proceeds, used_a, used_b) | None | NotImplemented"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "scanner.detect._walk",
    "Compiled twin of scanner.detect.spread.walk (buy fee in quote), exact in scaled integers.", -1, methods,
};

PyMODINIT_FUNC
PyInit__walk(void)
{
    POW10[0] = 1;
    for (int k = 1; k < 39; k++)
        POW10[k] = POW10[k - 1] * 10;
    LIMIT = POW10[LIMIT_DIGITS];
    PyObject *dm = PyImport_ImportModule("decimal");
    if (dm == NULL)
        return NULL;
    Decimal = PyObject_GetAttrString(dm, "Decimal");
    Py_DECREF(dm);
    if (Decimal == NULL)
        return NULL;
    return PyModule_Create(&module);
}
