/* scanner.book._core: compiled twins of scanner/book/pycore.py (same functions, same semantics).
 *
 * A book side is three parallel Python lists, best level first: keys (float sort keys, bids
 * negated), pxs and szs (the venue's exact price and size strings). These loops only move
 * references between lists; the strings are never re-formatted.
 *
 *   apply_rows(keys, pxs, szs, rows, neg, watch) -> bool   (a batch of >= 32 rows: one merge, see merge_rows)
 *   load_rows(rows, neg) -> (keys, pxs, szs)
 *   interleaved_crc32(bpx, bsz, apx, asz, depth) -> int   (signed, as OKX and Bitget send it)
 *   kraken_crc32(bpx, bsz, apx, asz, depth) -> int        (unsigned, Kraken's asks-then-bids digits)
 *   apply_sides(bkeys, bpxs, bszs, akeys, apxs, aszs, bids, asks, watch, max_levels) -> int
 *   pick_rows(items, px_key, sz_key) -> list | None
 *   split_rows(items, side_key, bid, ask, px_key, sz_key) -> (bids, asks) | None
 *   coinbase_l2(text) -> (channel, timestamp, sequence_num, [(type, product_id, bids, asks), ...]) | None
 *   kraken_v1(text, seq, recv_ns, msg_cls) -> msg_cls(pair, False, bids, asks, seq, seq - 1, checksum, 0, recv_ns) | None
 *   kucoin_l2(text, recv_ns, msg_cls) -> msg_cls(symbol, False, bids, asks, end, start, 0, time, recv_ns) | topic | None
 *   okx_books(text) -> (inst, action, bids, asks, seqId, prevSeqId, checksum, ts) | None
 *   new_slots(cls, *values) -> cls instance (slots set in __slots__ order, __init__ not run)
 *
 * Numbers are read the way float() reads them (PyOS_string_to_double for plain ASCII, else
 * float() itself), and the level check is the one pycore makes, with the same message.
 * Built by `pip install` when a C compiler is present (setup.py, optional=True); without it
 * scanner.book.l2 uses pycore.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* CRC-32 (IEEE 802.3, the polynomial zlib.crc32 uses), slicing-by-8; tables built at import. */
static uint32_t crc_table[8][256];

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320U ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

/* Table-driven update of a raw (pre-inverted) CRC state. */
static uint32_t
crc_table_update(uint32_t c, const unsigned char *p, size_t n)
{
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
            crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
            crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_CLMUL_PATH 1
static int use_clmul = 0;

/* Carry-less multiplication folding (Gopal et al., "Fast CRC Computation for Generic Polynomials
 * Using PCLMULQDQ"), for the bit-reflected IEEE polynomial. Folds n bytes (n >= 64, n % 16 == 0)
 * into the raw CRC state. Constants: x^(4*128+-32), x^(128+-32), x^64 mod P, and Barrett's P', mu. */
__attribute__((target("pclmul,sse2"))) static uint32_t
crc_clmul_update(uint32_t crc, const unsigned char *p, size_t n)
{
    const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);
    const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x1f7011641LL, 0x1db710641LL);
    const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
    __m128i x1 = _mm_loadu_si128((const __m128i *)p), x2 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 32)), x4 = _mm_loadu_si128((const __m128i *)(p + 48));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    p += 64;
    n -= 64;
    while (n >= 64) {
        __m128i y1 = _mm_clmulepi64_si128(x1, k1k2, 0x11), y2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
        __m128i y3 = _mm_clmulepi64_si128(x3, k1k2, 0x11), y4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k1k2, 0x00), y1),
                           _mm_loadu_si128((const __m128i *)p));
        x2 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x2, k1k2, 0x00), y2),
                           _mm_loadu_si128((const __m128i *)(p + 16)));
        x3 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x3, k1k2, 0x00), y3),
                           _mm_loadu_si128((const __m128i *)(p + 32)));
        x4 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x4, k1k2, 0x00), y4),
                           _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        n -= 64;
    }
    /* four lanes into one */
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), _mm_clmulepi64_si128(x1, k3k4, 0x11)), x2);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), _mm_clmulepi64_si128(x1, k3k4, 0x11)), x3);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), _mm_clmulepi64_si128(x1, k3k4, 0x11)), x4);
    while (n >= 16) {
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), _mm_clmulepi64_si128(x1, k3k4, 0x11)),
                           _mm_loadu_si128((const __m128i *)p));
        p += 16;
        n -= 16;
    }
    /* 128 -> 64 bits */
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x10), _mm_srli_si128(x1, 8));
    /* 64 -> 32 bits */
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, mask32), k5, 0x00), _mm_srli_si128(x1, 4));
    /* Barrett reduction */
    __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), poly, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, mask32), poly, 0x00);
    x1 = _mm_xor_si128(x1, t);
    return (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(x1, 4));
}
#endif

/* zlib.crc32(p[:n]) */
static uint32_t
crc32_ieee(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFU;
#ifdef HAVE_CLMUL_PATH
    if (use_clmul && n >= 64) {
        size_t m = n & ~(size_t)15;
        c = crc_clmul_update(c, p, m);
        p += m;
        n -= m;
    }
#endif
    return crc_table_update(c, p, n) ^ 0xFFFFFFFFU;
}

/* crc32(data) -> int, unsigned like zlib.crc32; exposed so the tests can check both paths. */
static PyObject *
crc32_bytes(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    uint32_t v = crc32_ieee((const unsigned char *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(v);
}

/* set_clmul(flag) -> bool: turn the carry-less multiply path on/off (if the CPU has it); returns its state. */
static PyObject *
set_clmul(PyObject *self, PyObject *arg)
{
    int want = PyObject_IsTrue(arg);
    if (want < 0)
        return NULL;
#ifdef HAVE_CLMUL_PATH
    __builtin_cpu_init();
    use_clmul = want && __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse2");
    return PyBool_FromLong(use_clmul);
#else
    return PyBool_FromLong(0);
#endif
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Clinger's fast path: plain "digits[.digits]" with at most 15 significant digits is m / 10^k
 * with m < 2^53 and k <= 22, both exact doubles, so the IEEE quotient is the correctly rounded
 * value float() returns. 1 if it applied, else 0 (the caller takes the general parser). */
static int
fast_decimal(const char *s, Py_ssize_t n, double *out)
{
    uint64_t m = 0;
    int digits = 0, frac = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            if (m == 0 && c == '0') {
                if (frac >= 0)
                    frac++;
                continue; /* leading zeros are not significant */
            }
            if (++digits > 15)
                return 0;
            m = m * 10 + (uint64_t)(c - '0');
            if (frac >= 0)
                frac++;
        }
        else if (c == '.' && frac < 0)
            frac = 0;
        else
            return 0;
    }
    if (n == 0 || (frac == 0 && n == 1))
        return 0; /* "" or "." */
    if (frac > 22)
        return 0;
    *out = frac > 0 ? (double)m / POW10[frac] : (double)m;
    return 1;
}

/* float(o) for a price/size; 0 on success, -1 with an exception set. */
static int
read_number(PyObject *o, double *out)
{
    if (PyUnicode_CheckExact(o) && PyUnicode_IS_COMPACT_ASCII(o)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(o);
        const char *s = (const char *)PyUnicode_DATA(o); /* NUL-terminated for compact strings */
        if (fast_decimal(s, n, out))
            return 0;
        if (n > 0 && n < 64) {
            char *end = NULL;
            double v = PyOS_string_to_double(s, &end, NULL);
            if (!(v == -1.0 && PyErr_Occurred()) && end == s + n) {
                *out = v;
                return 0;
            }
            PyErr_Clear(); /* let float() decide, with its own error */
        }
    }
    PyObject *f = PyNumber_Float(o);
    if (f == NULL)
        return -1;
    *out = PyFloat_AS_DOUBLE(f);
    Py_DECREF(f);
    return 0;
}

/* row[0], row[1] as borrowed (list/tuple) or new (other sequences) references. */
static int
row_items(PyObject *row, PyObject **px, PyObject **sz, int *owned)
{
    if (PyList_CheckExact(row) || PyTuple_CheckExact(row)) {
        Py_ssize_t n = PyList_CheckExact(row) ? PyList_GET_SIZE(row) : PyTuple_GET_SIZE(row);
        if (n < 2) {
            PyErr_Format(PyExc_IndexError, "level row %R has fewer than 2 items", row);
            return -1;
        }
        *px = PyList_CheckExact(row) ? PyList_GET_ITEM(row, 0) : PyTuple_GET_ITEM(row, 0);
        *sz = PyList_CheckExact(row) ? PyList_GET_ITEM(row, 1) : PyTuple_GET_ITEM(row, 1);
        *owned = 0;
        return 0;
    }
    PyObject *i0 = PyLong_FromLong(0), *i1 = PyLong_FromLong(1);
    *px = i0 ? PyObject_GetItem(row, i0) : NULL;
    *sz = (*px && i1) ? PyObject_GetItem(row, i1) : NULL;
    Py_XDECREF(i0);
    Py_XDECREF(i1);
    if (*sz == NULL) {
        Py_XDECREF(*px);
        return -1;
    }
    *owned = 1;
    return 0;
}

static int
check_level(PyObject *px, PyObject *sz, double p, double q)
{
    if (0.0 < p && p < INFINITY && 0.0 <= q && q < INFINITY)
        return 0;
    PyErr_Format(PyExc_ValueError, "level %R x %R is not a positive finite price with a finite size >= 0", px, sz);
    return -1;
}

/* First index whose key is >= k (keys hold floats made by the book). */
static Py_ssize_t
lower_bound(PyObject *keys, double k)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(keys);
    PyObject **items = ((PyListObject *)keys)->ob_item;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        if (PyFloat_AS_DOUBLE(items[mid]) < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* del lst[i] without the generic slice machinery (0 <= i < len). */
static inline void
list_del(PyObject *lst, Py_ssize_t i)
{
    PyListObject *l = (PyListObject *)lst;
    Py_ssize_t n = Py_SIZE(l);
    PyObject *gone = l->ob_item[i];
    memmove(&l->ob_item[i], &l->ob_item[i + 1], (size_t)(n - i - 1) * sizeof(PyObject *));
    Py_SET_SIZE(l, n - 1);
    Py_DECREF(gone);
}

/* lst.insert(i, obj) with one memmove (CPython's own insert shifts item by item); 0 <= i <= len. */
static inline int
list_ins(PyObject *lst, Py_ssize_t i, PyObject *obj)
{
    if (PyList_Append(lst, obj) < 0) /* grows the list (amortised) and takes a reference to obj */
        return -1;
    PyListObject *l = (PyListObject *)lst;
    Py_ssize_t n = Py_SIZE(l);
    memmove(&l->ob_item[i + 1], &l->ob_item[i], (size_t)(n - 1 - i) * sizeof(PyObject *));
    l->ob_item[i] = obj; /* the reference the append made moves here from the last slot */
    return 0;
}

typedef struct {
    double k;
    Py_ssize_t idx; /* row index: equal keys keep input order, so the last row wins */
    double q;
} level_t;

static int
cmp_level(const void *a, const void *b)
{
    const level_t *x = a, *y = b;
    if (x->k < y->k)
        return -1;
    if (x->k > y->k)
        return 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static PyObject *
load_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "load_rows(rows, neg)");
        return NULL;
    }
    int neg = PyObject_IsTrue(args[1]);
    if (neg < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(args[0], "load_rows: rows must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **rows = PySequence_Fast_ITEMS(seq);
    PyObject **pxv = NULL, **szv = NULL, *keys = NULL, *pxs = NULL, *szs = NULL, *out = NULL;
    level_t *lv = PyMem_Malloc(sizeof(level_t) * (size_t)(n ? n : 1));
    pxv = PyMem_Calloc((size_t)(n ? n : 1), sizeof(PyObject *));
    szv = PyMem_Calloc((size_t)(n ? n : 1), sizeof(PyObject *));
    if (lv == NULL || pxv == NULL || szv == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int sorted = 1;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *px, *sz;
        int owned;
        double p, q;
        if (row_items(rows[r], &px, &sz, &owned) < 0)
            goto done;
        if (!owned) {
            Py_INCREF(px);
            Py_INCREF(sz);
        }
        pxv[r] = px;
        szv[r] = sz;
        if (read_number(px, &p) < 0 || read_number(sz, &q) < 0 || check_level(px, sz, p, q) < 0)
            goto done;
        lv[r].k = neg ? -p : p;
        lv[r].idx = r;
        lv[r].q = q;
        if (r > 0 && !(lv[r - 1].k < lv[r].k))
            sorted = 0;
    }
    if (!sorted)
        qsort(lv, (size_t)n, sizeof(level_t), cmp_level);
    keys = PyList_New(0);
    pxs = PyList_New(0);
    szs = PyList_New(0);
    if (keys == NULL || pxs == NULL || szs == NULL)
        goto done;
    for (Py_ssize_t j = 0; j < n; j++) {
        if (j + 1 < n && lv[j + 1].k == lv[j].k)
            continue; /* a later row of the same price wins */
        if (lv[j].q == 0.0)
            continue;
        PyObject *kf = PyFloat_FromDouble(lv[j].k);
        if (kf == NULL || PyList_Append(keys, kf) < 0) {
            Py_XDECREF(kf);
            goto done;
        }
        Py_DECREF(kf);
        if (PyList_Append(pxs, pxv[lv[j].idx]) < 0 || PyList_Append(szs, szv[lv[j].idx]) < 0)
            goto done;
    }
    out = PyTuple_Pack(3, keys, pxs, szs);
done:
    if (pxv != NULL)
        for (Py_ssize_t r = 0; r < n; r++) {
            Py_XDECREF(pxv[r]);
            Py_XDECREF(szv[r]);
        }
    PyMem_Free(pxv);
    PyMem_Free(szv);
    PyMem_Free(lv);
    Py_XDECREF(keys);
    Py_XDECREF(pxs);
    Py_XDECREF(szs);
    Py_DECREF(seq);
    return out;
}

/* The rows one at a time: a bisect and an in-place store, insert or delete per row. Cheapest for the
 * common small diff; a big batch goes through merge_rows instead (the result is the same). */
static int
rows_one_by_one(PyObject *keys, PyObject *pxs, PyObject *szs, PyObject **items, Py_ssize_t nrows, int neg,
                Py_ssize_t watch)
{
    int touched = 0;
    for (Py_ssize_t r = 0; r < nrows; r++) {
        PyObject *px, *sz;
        int owned;
        double p, q;
        if (row_items(items[r], &px, &sz, &owned) < 0)
            return -1;
        if (read_number(px, &p) < 0 || read_number(sz, &q) < 0 || check_level(px, sz, p, q) < 0) {
            if (owned) {
                Py_DECREF(px);
                Py_DECREF(sz);
            }
            return -1;
        }
        double k = neg ? -p : p;
        Py_ssize_t n = PyList_GET_SIZE(keys);
        Py_ssize_t i = lower_bound(keys, k);
        int rc = 0, changed = 1;
        if (i < n && PyFloat_AS_DOUBLE(PyList_GET_ITEM(keys, i)) == k) {
            if (q == 0.0) {
                if (PyList_GET_SIZE(pxs) != n || PyList_GET_SIZE(szs) != n) {
                    PyErr_SetString(PyExc_ValueError, "apply_rows: keys, pxs and szs differ in length");
                    rc = -1;
                }
                else {
                    list_del(keys, i);
                    list_del(pxs, i);
                    list_del(szs, i);
                }
            }
            else {
                Py_INCREF(px);
                Py_INCREF(sz);
                rc = PyList_SetItem(pxs, i, px);
                rc = rc ? rc : PyList_SetItem(szs, i, sz);
            }
        }
        else if (q != 0.0) {
            if (PyList_GET_SIZE(pxs) != n || PyList_GET_SIZE(szs) != n) {
                PyErr_SetString(PyExc_ValueError, "apply_rows: keys, pxs and szs differ in length");
                rc = -1;
            }
            else {
                PyObject *kf = PyFloat_FromDouble(k);
                rc = kf ? list_ins(keys, i, kf) : -1;
                Py_XDECREF(kf);
                rc = rc ? rc : list_ins(pxs, i, px);
                rc = rc ? rc : list_ins(szs, i, sz);
            }
        }
        else
            changed = 0; /* deleting a level we do not hold changes nothing */
        if (owned) {
            Py_DECREF(px);
            Py_DECREF(sz);
        }
        if (rc < 0)
            return -1;
        if (changed && i < watch)
            touched = 1;
    }
    return touched;
}

/* ---- merge_rows: a big batch (a price shock replaces a whole side) in O(levels + rows) -------------------
 *
 * One by one, each insert or delete shifts the rest of three lists: O(rows x levels). merge_rows reads and
 * checks every row first, sorts the changes by key (stable: equal keys stay in row order), keeps the last
 * row of each key (each row sets a level's absolute size, so the last one is what the loop leaves), and
 * builds the three new item arrays in one merge of the old side with the changes, moving the kept
 * references instead of copying them. The arrays are swapped into the caller's list objects, so the lists
 * (BookSide holds them) stay the same objects.
 *
 * touched is the one-by-one loop's flag: some row changed the side at a position < watch at the time it
 * was applied. Until the first such row, every change lands at a position >= watch, so the best
 * min(watch, len) levels are those of the side before the batch and every level behind them has a key
 * above T, the last of them (+inf when the side is shorter than watch). A row is then at a position
 * < watch iff its key is <= T, and it changes something there iff its size is non-zero (store or
 * insert) or its key is one of those levels (delete). So touched iff watch > 0 and some row has key <= T
 * and (size != 0 or key among the best min(watch, len) old keys): independent of the rows' order, which
 * the merge does not keep. tests/test_book_core.py checks this against pycore on random and adversarial
 * batches.
 *
 * A bad row (what the loop would raise at) stops the reading; the rows before it are merged, as the loop
 * would have applied them, and then its error is raised. */

static Py_ssize_t merge_min_rows = 32; /* rows in one side's batch from which merge_rows is used */

/* Sort lv[0:n] by (k, idx) with natural runs: ascending runs are kept, strictly descending ones reversed,
 * then adjacent runs merged pairwise (ties to the left run, so the order stays stable). Venues send a
 * side's rows in price order (one run) or deletes then inserts (two): one pass or none. tmp holds n. */
static void
sort_levels(level_t *lv, level_t *tmp, Py_ssize_t n, Py_ssize_t *runs)
{
    Py_ssize_t nr = 0, i = 0;
    while (i < n) {
        Py_ssize_t j = i + 1;
        if (j < n && lv[j].k < lv[i].k) {
            while (j < n && lv[j].k < lv[j - 1].k)
                j++;
            for (Py_ssize_t a = i, b = j - 1; a < b; a++, b--) { /* strictly descending: no equal keys */
                level_t t = lv[a];
                lv[a] = lv[b];
                lv[b] = t;
            }
        }
        else
            while (j < n && lv[j].k >= lv[j - 1].k)
                j++;
        runs[nr++] = i;
        i = j;
    }
    runs[nr] = n;
    /* a reversed run ends where the next starts with a smaller key: keep merging until one run is left */
    while (nr > 1) {
        Py_ssize_t out = 0;
        for (Py_ssize_t r = 0; r < nr; r += 2) {
            if (r + 1 == nr) {
                runs[out++] = runs[r];
                break;
            }
            Py_ssize_t a = runs[r], am = runs[r + 1], b = am, bm = runs[r + 2], o = a;
            if (lv[am - 1].k <= lv[b].k) { /* already in order */
                runs[out++] = a;
                continue;
            }
            memcpy(tmp + a, lv + a, (size_t)(bm - a) * sizeof(level_t));
            while (a < am && b < bm)
                lv[o++] = tmp[b].k < tmp[a].k ? tmp[b++] : tmp[a++];
            while (a < am)
                lv[o++] = tmp[a++];
            while (b < bm)
                lv[o++] = tmp[b++];
            runs[out++] = runs[r];
        }
        runs[out] = n;
        nr = out;
    }
}

/* The first index in [lo, n) whose key is >= k, all keys before lo being < k: steps of 1, 2, 4, ... from lo,
 * then a bisection of the last step. */
static inline Py_ssize_t
gallop(PyObject **ok, Py_ssize_t lo, Py_ssize_t n, double k)
{
    Py_ssize_t hi = lo, step = 1;
    while (hi < n && PyFloat_AS_DOUBLE(ok[hi]) < k) {
        lo = hi + 1;
        hi += step;
        step <<= 1;
    }
    if (hi > n)
        hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        if (PyFloat_AS_DOUBLE(ok[mid]) < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Install items[0:n] (PyMem_Malloc'd, references owned) as lst's contents and free its old item array,
 * whose references the caller has already moved or queued for release. */
static void
list_install(PyObject *lst, PyObject **items, Py_ssize_t n)
{
    PyListObject *l = (PyListObject *)lst;
    PyObject **old = l->ob_item;
    if (n == 0) {
        PyMem_Free(items);
        items = NULL;
    }
    l->ob_item = items;
    Py_SET_SIZE(l, n);
    l->allocated = n;
    PyMem_Free(old);
}

static int
merge_rows(PyObject *keys, PyObject *pxs, PyObject *szs, PyObject **items, Py_ssize_t nrows, int neg,
           Py_ssize_t watch)
{
    int touched = 0, rc = -1;
    PyObject *et = NULL, *ev = NULL, *etb = NULL; /* the bad row's error, raised after its predecessors */
    Py_ssize_t nv = 0, m = 0, n_ins = 0, n_drop = 0;
    level_t *lv = PyMem_Malloc(sizeof(level_t) * (size_t)nrows * 2);
    Py_ssize_t *runs = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(nrows + 1));
    PyObject **pxv = PyMem_Malloc(sizeof(PyObject *) * (size_t)nrows * 2), **szv = pxv + nrows;
    PyObject **ins = NULL, **drop = NULL, **nk = NULL, **np = NULL, **ns = NULL;
    Py_ssize_t *at = NULL; /* per change: 2 x its position in the old side, + 1 if it holds that key */
    if (lv == NULL || runs == NULL || pxv == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; nv < nrows; nv++) {
        PyObject *px, *sz;
        int owned;
        double p, q;
        if (row_items(items[nv], &px, &sz, &owned) < 0)
            break;
        if (!owned) {
            Py_INCREF(px);
            Py_INCREF(sz);
        }
        if (read_number(px, &p) < 0 || read_number(sz, &q) < 0 || check_level(px, sz, p, q) < 0) {
            Py_DECREF(px);
            Py_DECREF(sz);
            break;
        }
        pxv[nv] = px;
        szv[nv] = sz;
        lv[nv].k = neg ? -p : p;
        lv[nv].q = q;
        lv[nv].idx = nv;
    }
    if (nv < nrows)
        PyErr_Fetch(&et, &ev, &etb);
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (PyList_GET_SIZE(pxs) != n || PyList_GET_SIZE(szs) != n) { /* only if reading a row changed them */
        PyErr_SetString(PyExc_ValueError, "apply_rows: keys, pxs and szs differ in length");
        goto done;
    }
    PyObject **ok = ((PyListObject *)keys)->ob_item, **op = ((PyListObject *)pxs)->ob_item,
             **os = ((PyListObject *)szs)->ob_item;
    if (et == NULL && watch > 0) {
        Py_ssize_t w = watch < n ? watch : n;
        double top = watch <= n ? PyFloat_AS_DOUBLE(ok[watch - 1]) : INFINITY;
        for (Py_ssize_t r = 0; r < nv && !touched; r++) {
            if (!(lv[r].k <= top))
                continue;
            if (lv[r].q != 0.0)
                touched = 1;
            else {
                Py_ssize_t lo = 0, hi = w;
                while (lo < hi) {
                    Py_ssize_t mid = (lo + hi) >> 1;
                    if (PyFloat_AS_DOUBLE(ok[mid]) < lv[r].k)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                touched = lo < w && PyFloat_AS_DOUBLE(ok[lo]) == lv[r].k;
            }
        }
    }
    sort_levels(lv, lv + nrows, nv, runs);
    for (Py_ssize_t j = 0; j < nv; j++) /* the last row of each key */
        if (j + 1 == nv || lv[j + 1].k != lv[j].k)
            lv[m++] = lv[j];
    /* pass 1: where each change lands in the old side (a galloping search from the last one: O(changes x log)
     * when they are few), the new length, and a key object for each insert. Nothing is changed yet. */
    ins = PyMem_Malloc(sizeof(PyObject *) * (size_t)(m ? m : 1));
    drop = PyMem_Malloc(sizeof(PyObject *) * (size_t)(3 * m + 1));
    at = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(m ? m : 1));
    if (ins == NULL || drop == NULL || at == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t i = 0, out = n;
    for (Py_ssize_t j = 0; j < m; j++) {
        double k = lv[j].k;
        i = gallop(ok, i, n, k);
        if (i < n && PyFloat_AS_DOUBLE(ok[i]) == k) {
            at[j] = 2 * i + 1;
            out -= lv[j].q == 0.0; /* delete, or store */
            i++;
        }
        else {
            at[j] = 2 * i;
            if (lv[j].q != 0.0) {
                if ((ins[n_ins] = PyFloat_FromDouble(k)) == NULL)
                    goto done;
                n_ins++;
                out++;
            }
        }
    }
    Py_ssize_t cap = out ? out : 1;
    nk = PyMem_Malloc(sizeof(PyObject *) * (size_t)cap);
    np = PyMem_Malloc(sizeof(PyObject *) * (size_t)cap);
    ns = PyMem_Malloc(sizeof(PyObject *) * (size_t)cap);
    if (nk == NULL || np == NULL || ns == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* pass 2: move the kept references (runs between changes as blocks), take the rows' strings; cannot fail */
    Py_ssize_t o = 0, t = 0;
    i = 0;
    for (Py_ssize_t j = 0; j <= m; j++) {
        Py_ssize_t to = j < m ? at[j] >> 1 : n;
        if (to > i) {
            memcpy(nk + o, ok + i, (size_t)(to - i) * sizeof(PyObject *));
            memcpy(np + o, op + i, (size_t)(to - i) * sizeof(PyObject *));
            memcpy(ns + o, os + i, (size_t)(to - i) * sizeof(PyObject *));
            o += to - i;
            i = to;
        }
        if (j == m)
            break;
        PyObject *px = pxv[lv[j].idx], *sz = szv[lv[j].idx];
        if (at[j] & 1) {
            if (lv[j].q != 0.0) {
                nk[o] = ok[i];
                np[o] = Py_NewRef(px);
                ns[o++] = Py_NewRef(sz);
            }
            else
                drop[n_drop++] = ok[i];
            drop[n_drop++] = op[i];
            drop[n_drop++] = os[i++];
        }
        else if (lv[j].q != 0.0) {
            nk[o] = ins[t++];
            np[o] = Py_NewRef(px);
            ns[o++] = Py_NewRef(sz);
        }
    }
    n_ins = 0; /* all moved into nk */
    list_install(keys, nk, out);
    list_install(pxs, np, out);
    list_install(szs, ns, out);
    nk = np = ns = NULL;
    for (Py_ssize_t d = 0; d < n_drop; d++)
        Py_DECREF(drop[d]);
    rc = touched;
done:
    for (Py_ssize_t j = 0; j < n_ins; j++)
        Py_DECREF(ins[j]);
    if (pxv != NULL)
        for (Py_ssize_t r = 0; r < nv; r++) {
            Py_DECREF(pxv[r]);
            Py_DECREF(szv[r]);
        }
    PyMem_Free(lv);
    PyMem_Free(runs);
    PyMem_Free(pxv);
    PyMem_Free(ins);
    PyMem_Free(drop);
    PyMem_Free(at);
    PyMem_Free(nk);
    PyMem_Free(np);
    PyMem_Free(ns);
    if (et != NULL) {
        if (rc < 0) { /* merging the rows before the bad one failed: that error is the one raised */
            Py_DECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(etb);
        }
        else {
            PyErr_Restore(et, ev, etb);
            rc = -1;
        }
    }
    return rc;
}

/* set_merge_min(n) -> int: the batch size from which a side's rows are merged instead of applied one by
 * one (returns the previous value). For the tests, which drive both paths on the same batches. */
static PyObject *
set_merge_min(PyObject *self, PyObject *arg)
{
    Py_ssize_t v = PyLong_AsSsize_t(arg);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t old = merge_min_rows;
    merge_min_rows = v < 1 ? 1 : v;
    return PyLong_FromSsize_t(old);
}

static PyObject *
apply_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "apply_rows(keys, pxs, szs, rows, neg, watch)");
        return NULL;
    }
    PyObject *keys = args[0], *pxs = args[1], *szs = args[2], *rows = args[3];
    if (!PyList_CheckExact(keys) || !PyList_CheckExact(pxs) || !PyList_CheckExact(szs)) {
        PyErr_SetString(PyExc_TypeError, "apply_rows: keys, pxs and szs must be lists");
        return NULL;
    }
    int neg = PyObject_IsTrue(args[4]);
    Py_ssize_t watch = PyLong_AsSsize_t(args[5]);
    if (neg < 0 || (watch == -1 && PyErr_Occurred()))
        return NULL;
    PyObject *seq = PySequence_Fast(rows, "apply_rows: rows must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t nrows = PySequence_Fast_GET_SIZE(seq), n = PyList_GET_SIZE(keys);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int touched;
    /* the merge needs three distinct lists of one length; anything else keeps the loop and its errors */
    if (nrows >= merge_min_rows && PyList_GET_SIZE(pxs) == n && PyList_GET_SIZE(szs) == n && keys != pxs &&
        keys != szs && pxs != szs)
        touched = merge_rows(keys, pxs, szs, items, nrows, neg, watch);
    else
        touched = rows_one_by_one(keys, pxs, szs, items, nrows, neg, watch);
    Py_DECREF(seq);
    if (touched < 0)
        return NULL;
    return PyBool_FromLong(touched);
}

/* Grow buf (stack or heap) to hold need bytes; -1 with MemoryError. */
static int
grow(char **buf, Py_ssize_t len, Py_ssize_t *cap, Py_ssize_t need, char *stack)
{
    Py_ssize_t ncap = need * 2;
    char *nb = PyMem_Malloc((size_t)ncap);
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(nb, *buf, (size_t)len);
    if (*buf != stack)
        PyMem_Free(*buf);
    *buf = nb;
    *cap = ncap;
    return 0;
}

/* Append ':' (unless first) and s's UTF-8 to buf; -1 with an exception if s is not a str. */
static inline __attribute__((always_inline)) int
put_text(PyObject *s, char **buf, Py_ssize_t *len, Py_ssize_t *cap, char *stack, int sep)
{
    Py_ssize_t n;
    const char *u;
    if (PyUnicode_CheckExact(s) && PyUnicode_IS_COMPACT_ASCII(s)) {
        u = (const char *)PyUnicode_DATA(s);
        n = PyUnicode_GET_LENGTH(s);
    }
    else {
        u = PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &n) : NULL;
        if (u == NULL) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "checksum level %R is not a str", s);
            return -1;
        }
    }
    if (*len + n + 1 > *cap && grow(buf, *len, cap, *len + n + 1, stack) < 0)
        return -1;
    char *d = *buf + *len;
    if (sep)
        *d++ = ':';
    /* prices and sizes are short: two overlapping word copies (inside [0, n) of the source) beat a libc call */
    if (n >= 8 && n <= 16) {
        uint64_t a, b;
        memcpy(&a, u, 8);
        memcpy(&b, u + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    }
    else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, u, 4);
        memcpy(&b, u + n - 4, 4);
        memcpy(d, &a, 4);
        memcpy(d + n - 4, &b, 4);
    }
    else if (n < 4)
        for (Py_ssize_t i = 0; i < n; i++)
            d[i] = u[i];
    else
        memcpy(d, u, (size_t)n);
    *len = (d - *buf) + n;
    return 0;
}

static PyObject *
interleaved_crc32(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "interleaved_crc32(bpx, bsz, apx, asz, depth)");
        return NULL;
    }
    for (int a = 0; a < 4; a++)
        if (!PyList_CheckExact(args[a])) {
            PyErr_SetString(PyExc_TypeError, "interleaved_crc32: levels must be lists");
            return NULL;
        }
    Py_ssize_t depth = PyLong_AsSsize_t(args[4]);
    if (depth == -1 && PyErr_Occurred())
        return NULL;
    PyObject *bpx = args[0], *bsz = args[1], *apx = args[2], *asz = args[3];
    Py_ssize_t nb = PyList_GET_SIZE(bpx), na = PyList_GET_SIZE(apx);
    if (PyList_GET_SIZE(bsz) < nb || PyList_GET_SIZE(asz) < na) {
        PyErr_SetString(PyExc_ValueError, "interleaved_crc32: size lists are shorter than price lists");
        return NULL;
    }
    nb = nb < depth ? nb : depth;
    na = na < depth ? na : depth;
    char stack[4096];
    char *buf = stack;
    Py_ssize_t len = 0, cap = sizeof(stack);
    Py_ssize_t m = nb > na ? nb : na;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (i < nb && (put_text(PyList_GET_ITEM(bpx, i), &buf, &len, &cap, stack, i > 0) < 0 ||
                       put_text(PyList_GET_ITEM(bsz, i), &buf, &len, &cap, stack, 1) < 0))
            goto fail;
        if (i < na && (put_text(PyList_GET_ITEM(apx, i), &buf, &len, &cap, stack, i > 0 || i < nb) < 0 ||
                       put_text(PyList_GET_ITEM(asz, i), &buf, &len, &cap, stack, 1) < 0))
            goto fail;
    }
    uint32_t v = crc32_ieee((const unsigned char *)buf, (size_t)len);
    if (buf != stack)
        PyMem_Free(buf);
    return PyLong_FromLong((long)(int32_t)v);
fail:
    if (buf != stack)
        PyMem_Free(buf);
    return NULL;
}

/* Append s's UTF-8 to buf with every '.' removed and the leading '0's (after that) stripped: one level
 * field of Kraken's checksum text. -1 with an exception if s is not a str. */
static int
put_kraken(PyObject *s, char **buf, Py_ssize_t *len, Py_ssize_t *cap, char *stack)
{
    Py_ssize_t n;
    const char *u;
    if (PyUnicode_CheckExact(s) && PyUnicode_IS_COMPACT_ASCII(s)) {
        u = (const char *)PyUnicode_DATA(s);
        n = PyUnicode_GET_LENGTH(s);
    }
    else {
        u = PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &n) : NULL;
        if (u == NULL) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "checksum level %R is not a str", s);
            return -1;
        }
    }
    if (*len + n > *cap && grow(buf, *len, cap, *len + n, stack) < 0)
        return -1;
    char *d = *buf + *len;
    const Py_ssize_t m = n; /* n's address was taken: a copy the byte stores cannot alias stays in a register */
    Py_ssize_t i = 0;
    while (i < m && (u[i] == '.' || u[i] == '0'))
        i++;
    for (; i < m; i++)
        if (u[i] != '.')
            *d++ = u[i];
    *len = d - *buf;
    return 0;
}

/* kraken_crc32(bpx, bsz, apx, asz, depth) -> int: unsigned CRC32 of the best depth asks then bids,
 * each as price then size with '.' removed and leading zeros stripped, no separators (Kraken v1/v2). */
static PyObject *
kraken_crc32(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "kraken_crc32(bpx, bsz, apx, asz, depth)");
        return NULL;
    }
    for (int a = 0; a < 4; a++)
        if (!PyList_CheckExact(args[a])) {
            PyErr_SetString(PyExc_TypeError, "kraken_crc32: levels must be lists");
            return NULL;
        }
    Py_ssize_t depth = PyLong_AsSsize_t(args[4]);
    if (depth == -1 && PyErr_Occurred())
        return NULL;
    PyObject *bpx = args[0], *bsz = args[1], *apx = args[2], *asz = args[3];
    Py_ssize_t nb = PyList_GET_SIZE(bpx), na = PyList_GET_SIZE(apx);
    if (PyList_GET_SIZE(bsz) < nb || PyList_GET_SIZE(asz) < na) {
        PyErr_SetString(PyExc_ValueError, "kraken_crc32: size lists are shorter than price lists");
        return NULL;
    }
    nb = nb < depth ? nb : depth;
    na = na < depth ? na : depth;
    char stack[2048];
    char *buf = stack;
    Py_ssize_t len = 0, cap = sizeof(stack);
    for (Py_ssize_t i = 0; i < na; i++)
        if (put_kraken(PyList_GET_ITEM(apx, i), &buf, &len, &cap, stack) < 0 ||
            put_kraken(PyList_GET_ITEM(asz, i), &buf, &len, &cap, stack) < 0)
            goto fail;
    for (Py_ssize_t i = 0; i < nb; i++)
        if (put_kraken(PyList_GET_ITEM(bpx, i), &buf, &len, &cap, stack) < 0 ||
            put_kraken(PyList_GET_ITEM(bsz, i), &buf, &len, &cap, stack) < 0)
            goto fail;
    uint32_t v = crc32_ieee((const unsigned char *)buf, (size_t)len);
    if (buf != stack)
        PyMem_Free(buf);
    return PyLong_FromUnsignedLong(v);
fail:
    if (buf != stack)
        PyMem_Free(buf);
    return NULL;
}

/* apply_sides(bkeys, bpxs, bszs, akeys, apxs, aszs, bids, asks, watch, max_levels) -> int: apply_rows on
 * the bids then the asks, cut each side to max_levels, and return 1 (a change within the best watch
 * levels) | 2 (the book is crossed: best bid >= best ask). One call per frame instead of four. */
static PyObject *
apply_sides(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError,
                        "apply_sides(bkeys, bpxs, bszs, akeys, apxs, aszs, bids, asks, watch, max_levels)");
        return NULL;
    }
    Py_ssize_t max_levels = PyLong_AsSsize_t(args[9]);
    if (max_levels == -1 && PyErr_Occurred())
        return NULL;
    PyObject *bargs[6] = {args[0], args[1], args[2], args[6], Py_True, args[8]};
    PyObject *aargs[6] = {args[3], args[4], args[5], args[7], Py_False, args[8]};
    PyObject *r = apply_rows(self, bargs, 6);
    if (r == NULL)
        return NULL;
    long flags = r == Py_True;
    Py_DECREF(r);
    r = apply_rows(self, aargs, 6);
    if (r == NULL)
        return NULL;
    flags |= r == Py_True;
    Py_DECREF(r);
    for (int s = 0; s < 6; s++)
        if (PyList_GET_SIZE(args[s]) > max_levels &&
            PyList_SetSlice(args[s], max_levels, PyList_GET_SIZE(args[s]), NULL) < 0)
            return NULL;
    PyObject *bk = args[0], *ak = args[3];
    if (PyList_GET_SIZE(bk) && PyList_GET_SIZE(ak) &&
        -PyFloat_AsDouble(PyList_GET_ITEM(bk, 0)) >= PyFloat_AsDouble(PyList_GET_ITEM(ak, 0)))
        flags |= 2;
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(flags);
}

/* A new [px, sz] list from an object's two string fields; NULL with no exception set when item is
 * not a dict or a field is missing or not a str (the caller's Python path then reports it). */
static PyObject *
pick_pair(PyObject *item, PyObject *px_key, PyObject *sz_key)
{
    if (!PyDict_CheckExact(item))
        return NULL;
    PyObject *px = PyDict_GetItemWithError(item, px_key);
    if (px == NULL || !PyUnicode_CheckExact(px))
        return NULL;
    PyObject *sz = PyDict_GetItemWithError(item, sz_key);
    if (sz == NULL || !PyUnicode_CheckExact(sz))
        return NULL;
    PyObject *row = PyList_New(2);
    if (row == NULL)
        return NULL;
    Py_INCREF(px);
    Py_INCREF(sz);
    PyList_SET_ITEM(row, 0, px);
    PyList_SET_ITEM(row, 1, sz);
    return row;
}

/* pick_rows(items, px_key, sz_key) -> list | None: [[item[px_key], item[sz_key]], ...] when every item
 * is a dict whose two fields are str, else None (Hyperliquid's {"px","sz","n"} levels). */
static PyObject *
pick_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "pick_rows(items, px_key, sz_key)");
        return NULL;
    }
    PyObject *items = args[0];
    if (!PyList_CheckExact(items))
        Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = pick_pair(PyList_GET_ITEM(items, i), args[1], args[2]);
        if (row == NULL) {
            Py_DECREF(out);
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_NONE;
        }
        PyList_SET_ITEM(out, i, row);
    }
    return out;
}

/* split_rows(items, side_key, bid, ask, px_key, sz_key) -> (bids, asks) | None: each item's
 * [item[px_key], item[sz_key]] appended to bids when item[side_key] == bid, to asks when == ask; None
 * when an item is not a dict, a field is missing or not a str, or a side is neither (Coinbase updates). */
static PyObject *
split_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "split_rows(items, side_key, bid, ask, px_key, sz_key)");
        return NULL;
    }
    PyObject *items = args[0], *side_key = args[1], *bid = args[2], *ask = args[3];
    if (!PyList_CheckExact(items))
        Py_RETURN_NONE;
    PyObject *bids = PyList_New(0), *asks = PyList_New(0);
    if (bids == NULL || asks == NULL)
        goto fail;
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyDict_CheckExact(item))
            goto none;
        PyObject *side = PyDict_GetItemWithError(item, side_key);
        if (side == NULL) {
            if (PyErr_Occurred())
                goto fail;
            goto none;
        }
        PyObject *dest;
        int eq = side == bid ? 1 : PyObject_RichCompareBool(side, bid, Py_EQ);
        if (eq < 0)
            goto fail;
        if (eq)
            dest = bids;
        else {
            eq = side == ask ? 1 : PyObject_RichCompareBool(side, ask, Py_EQ);
            if (eq < 0)
                goto fail;
            if (!eq)
                goto none;
            dest = asks;
        }
        PyObject *row = pick_pair(item, args[4], args[5]);
        if (row == NULL) {
            if (PyErr_Occurred())
                goto fail;
            goto none;
        }
        int rc = PyList_Append(dest, row);
        Py_DECREF(row);
        if (rc < 0)
            goto fail;
    }
    PyObject *out = PyTuple_Pack(2, bids, asks);
    Py_DECREF(bids);
    Py_DECREF(asks);
    return out;
none:
    Py_DECREF(bids);
    Py_DECREF(asks);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(bids);
    Py_XDECREF(asks);
    return NULL;
}

/* ---- coinbase_l2: Coinbase Advanced Trade l2_data frames read straight from their text ----------------
 * A strict scanner for JSON text of printable ASCII without backslashes (anything else: None, and the caller
 * decodes the frame in full): only the fields the parser reads become objects; every other value is checked
 * and skipped. */
typedef struct {
    const char *p, *end;
    int depth;
} scan_t;

static inline void
sc_ws(scan_t *s)
{
    while (s->p < s->end && *s->p == ' ')
        s->p++;
}

static inline int
sc_char(scan_t *s, char c)
{
    sc_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

/* A string's content span (no escapes: the text has no backslash). */
static int
sc_str(scan_t *s, const char **a, Py_ssize_t *n)
{
    if (!sc_char(s, '"'))
        return 0;
    const char *q = memchr(s->p, '"', (size_t)(s->end - s->p));
    if (q == NULL)
        return 0;
    *a = s->p;
    *n = q - s->p;
    s->p = q + 1;
    return 1;
}

static int
sc_digits(scan_t *s)
{
    const char *b = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > b;
}

/* A JSON number; *integer says whether it has neither fraction nor exponent. */
static int
sc_number(scan_t *s, int *integer)
{
    sc_ws(s);
    if (s->p < s->end && *s->p == '-')
        s->p++;
    if (s->p >= s->end)
        return 0;
    if (*s->p == '0')
        s->p++;
    else if (!sc_digits(s))
        return 0;
    *integer = 1;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        *integer = 0;
        if (!sc_digits(s))
            return 0;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        *integer = 0;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!sc_digits(s))
            return 0;
    }
    return 1;
}

static int
sc_lit(scan_t *s, const char *lit, Py_ssize_t n)
{
    if (s->end - s->p < n || memcmp(s->p, lit, (size_t)n) != 0)
        return 0;
    s->p += n;
    return 1;
}

static int
sc_skip(scan_t *s)
{
    const char *a;
    Py_ssize_t n;
    int integer;
    sc_ws(s);
    if (s->p >= s->end)
        return 0;
    switch (*s->p) {
    case '"':
        return sc_str(s, &a, &n);
    case '{':
    case '[': {
        char close = *s->p == '{' ? '}' : ']';
        int obj = close == '}';
        if (++s->depth > 64)
            return 0;
        s->p++;
        if (!sc_char(s, close)) {
            do {
                if (obj && (!sc_str(s, &a, &n) || !sc_char(s, ':')))
                    return 0;
                if (!sc_skip(s))
                    return 0;
            } while (sc_char(s, ','));
            if (!sc_char(s, close))
                return 0;
        }
        s->depth--;
        return 1;
    }
    case 't':
        return sc_lit(s, "true", 4);
    case 'f':
        return sc_lit(s, "false", 5);
    case 'n':
        return sc_lit(s, "null", 4);
    default:
        return sc_number(s, &integer);
    }
}

/* Printable ASCII without backslashes: the only text the scanners read (anything else: the full decoder). Eight
 * bytes at a time (frames of a few hundred bytes: the byte loop was a fifth of a scan): a word has a byte < 0x20,
 * > 0x7E or == '\\' iff one of the three classic bit tests sets a high bit. */
static int
plain_text(PyObject *arg, const char **buf, Py_ssize_t *len)
{
    if (PyUnicode_CheckExact(arg)) {
        if (!PyUnicode_IS_COMPACT_ASCII(arg))
            return 0;
        *buf = (const char *)PyUnicode_DATA(arg);
        *len = PyUnicode_GET_LENGTH(arg);
    }
    else if (PyBytes_CheckExact(arg)) {
        *buf = PyBytes_AS_STRING(arg);
        *len = PyBytes_GET_SIZE(arg);
    }
    else
        return 0;
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    Py_ssize_t i = 0;
    for (; i + 8 <= *len; i += 8) {
        uint64_t w, bs;
        memcpy(&w, *buf + i, 8);
        bs = w ^ (ones * '\\');
        if ((((w - ones * 0x20) & ~w) | ((w + ones * (127 - 126)) | w) | ((bs - ones) & ~bs)) & highs)
            return 0;
    }
    for (; i < *len; i++)
        if ((unsigned char)(*buf)[i] < 0x20 || (unsigned char)(*buf)[i] > 0x7E || (*buf)[i] == '\\')
            return 0;
    return 1;
}

/* A str of n ASCII bytes (the scanners' text is checked to be ASCII): no decoding needed. */
static inline PyObject *
ascii_str(const char *a, Py_ssize_t n)
{
    PyObject *u = PyUnicode_New(n, 127);
    if (u != NULL)
        memcpy(PyUnicode_1BYTE_DATA(u), a, (size_t)n);
    return u;
}

#define SPAN_IS(a, n, lit) ((n) == (Py_ssize_t)sizeof(lit) - 1 && memcmp((a), (lit), sizeof(lit) - 1) == 0)

/* The updates array: 1 with the rows appended to bids and asks, 0 if not of the accepted shape, -1 on a Python error. */
static int
sc_updates(scan_t *s, PyObject *bids, PyObject *asks)
{
    if (!sc_char(s, '['))
        return 0;
    if (sc_char(s, ']'))
        return 1;
    do {
        const char *k, *side = NULL, *px = NULL, *sz = NULL;
        Py_ssize_t kn, side_n = 0, px_n = 0, sz_n = 0;
        if (!sc_char(s, '{'))
            return 0;
        if (!sc_char(s, '}')) {
            do {
                if (!sc_str(s, &k, &kn) || !sc_char(s, ':'))
                    return 0;
                if (SPAN_IS(k, kn, "side")) {
                    if (side != NULL || !sc_str(s, &side, &side_n))
                        return 0;
                }
                else if (SPAN_IS(k, kn, "price_level")) {
                    if (px != NULL || !sc_str(s, &px, &px_n))
                        return 0;
                }
                else if (SPAN_IS(k, kn, "new_quantity")) {
                    if (sz != NULL || !sc_str(s, &sz, &sz_n))
                        return 0;
                }
                else if (!sc_skip(s))
                    return 0;
            } while (sc_char(s, ','));
            if (!sc_char(s, '}'))
                return 0;
        }
        PyObject *dest;
        if (side == NULL || px == NULL || sz == NULL)
            return 0;
        if (SPAN_IS(side, side_n, "bid"))
            dest = bids;
        else if (SPAN_IS(side, side_n, "offer"))
            dest = asks;
        else
            return 0;
        PyObject *row = PyList_New(2);
        if (row == NULL)
            return -1;
        PyObject *a = ascii_str(px, px_n), *b = a ? ascii_str(sz, sz_n) : NULL;
        if (b == NULL) {
            Py_XDECREF(a);
            Py_DECREF(row);
            return -1;
        }
        PyList_SET_ITEM(row, 0, a);
        PyList_SET_ITEM(row, 1, b);
        int rc = PyList_Append(dest, row);
        Py_DECREF(row);
        if (rc < 0)
            return -1;
    } while (sc_char(s, ','));
    return sc_char(s, ']');
}

/* One event object -> (type, product_id, bids, asks); NULL with no exception if not of the accepted shape. */
static PyObject *
sc_event(scan_t *s)
{
    const char *k, *kind = NULL, *inst = NULL;
    Py_ssize_t kn, kind_n = 0, inst_n = 0;
    int have_updates = 0;
    PyObject *bids = PyList_New(0), *asks = PyList_New(0), *out = NULL;
    if (bids == NULL || asks == NULL)
        goto done;
    if (!sc_char(s, '{'))
        goto done;
    if (!sc_char(s, '}')) {
        do {
            if (!sc_str(s, &k, &kn) || !sc_char(s, ':'))
                goto done;
            if (SPAN_IS(k, kn, "type")) {
                if (kind != NULL || !sc_str(s, &kind, &kind_n))
                    goto done;
            }
            else if (SPAN_IS(k, kn, "product_id")) {
                if (inst != NULL || !sc_str(s, &inst, &inst_n))
                    goto done;
            }
            else if (SPAN_IS(k, kn, "updates")) {
                int rc = have_updates ? 0 : sc_updates(s, bids, asks);
                if (rc <= 0)
                    goto done;
                have_updates = 1;
            }
            else if (!sc_skip(s))
                goto done;
        } while (sc_char(s, ','));
        if (!sc_char(s, '}'))
            goto done;
    }
    if (kind != NULL && inst != NULL && have_updates)
        out = Py_BuildValue("(s#s#OO)", kind, kind_n, inst, inst_n, bids, asks);
done:
    Py_XDECREF(bids);
    Py_XDECREF(asks);
    return out;
}

/* coinbase_l2(text) -> (channel, timestamp, sequence_num, [(type, product_id, bids, asks), ...]) | None */
static PyObject *
coinbase_l2(PyObject *self, PyObject *arg)
{
    const char *buf;
    Py_ssize_t len;
    if (!plain_text(arg, &buf, &len))
        Py_RETURN_NONE;
    scan_t sc = {buf, buf + len, 0}, *s = &sc;
    const char *k, *ch = NULL, *ts = NULL, *seq = NULL, *seq_end = NULL;
    Py_ssize_t kn, ch_n = 0, ts_n = 0;
    PyObject *events = NULL, *out = NULL;
    if (!sc_char(s, '{') || sc_char(s, '}'))
        goto done;
    do {
        if (!sc_str(s, &k, &kn) || !sc_char(s, ':'))
            goto done;
        if (SPAN_IS(k, kn, "channel")) {
            if (ch != NULL || !sc_str(s, &ch, &ch_n))
                goto done;
        }
        else if (SPAN_IS(k, kn, "timestamp")) {
            if (ts != NULL || !sc_str(s, &ts, &ts_n))
                goto done;
        }
        else if (SPAN_IS(k, kn, "sequence_num")) {
            int integer;
            sc_ws(s);
            if (seq != NULL)
                goto done;
            seq = s->p;
            if (!sc_number(s, &integer) || !integer)
                goto done;
            seq_end = s->p;
        }
        else if (SPAN_IS(k, kn, "type"))
            goto done; /* the parser reads a top-level type first ("error" frames): the full decoder's job */
        else if (SPAN_IS(k, kn, "events")) {
            if (events != NULL || (events = PyList_New(0)) == NULL || !sc_char(s, '['))
                goto done;
            if (!sc_char(s, ']')) {
                do {
                    PyObject *ev = sc_event(s);
                    if (ev == NULL)
                        goto done;
                    int rc = PyList_Append(events, ev);
                    Py_DECREF(ev);
                    if (rc < 0)
                        goto done;
                } while (sc_char(s, ','));
                if (!sc_char(s, ']'))
                    goto done;
            }
        }
        else if (!sc_skip(s))
            goto done;
    } while (sc_char(s, ','));
    if (!sc_char(s, '}'))
        goto done;
    sc_ws(s);
    if (s->p != s->end || ch == NULL || ts == NULL || seq == NULL || events == NULL)
        goto done;
    {
        char digits[64];
        Py_ssize_t dn = seq_end - seq;
        if (dn >= (Py_ssize_t)sizeof(digits))
            goto done;
        memcpy(digits, seq, (size_t)dn);
        digits[dn] = '\0';
        PyObject *num = PyLong_FromString(digits, NULL, 10);
        if (num == NULL)
            goto done;
        out = Py_BuildValue("(s#s#NO)", ch, ch_n, ts, ts_n, num, events);
    }
done:
    Py_XDECREF(events);
    if (out == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return out;
}

/* new_slots(cls, *values): an instance of a __slots__ class (a @dataclass(slots=True) without
 * __post_init__ or defaults to apply, such as BookMsg) with its slots set from ``values`` in
 * __slots__ order, __init__ not run: what cls(*values) makes, without the Python __init__ frame
 * (type_call -> slot_tp_init -> the generated __init__ cost ~1,500 instructions per BookMsg).
 * The slot offsets of the last class seen are cached. */
static PyTypeObject *slots_cls = NULL;
static Py_ssize_t slots_n = 0;
static Py_ssize_t slots_off[32];

static int
slots_learn(PyTypeObject *cls)
{
    PyObject *names = PyObject_GetAttrString((PyObject *)cls, "__slots__");
    if (names == NULL)
        return -1;
    PyObject *seq = PySequence_Fast(names, "new_slots: __slots__ must be a sequence");
    Py_DECREF(names);
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Py_ssize_t off[32];
    if (n > 32) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_TypeError, "new_slots: %s has more than 32 slots", cls->tp_name);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *descr = PyObject_GetAttr((PyObject *)cls, PySequence_Fast_GET_ITEM(seq, i));
        if (descr == NULL) {
            Py_DECREF(seq);
            return -1;
        }
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
            Py_DECREF(descr);
            Py_DECREF(seq);
            PyErr_Format(PyExc_TypeError, "new_slots: %s.%R is not a plain slot", cls->tp_name,
                         PySequence_Fast_GET_ITEM(seq, i));
            return -1;
        }
        off[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
    }
    Py_DECREF(seq);
    Py_INCREF(cls);
    Py_XSETREF(slots_cls, cls);
    slots_n = n;
    memcpy(slots_off, off, sizeof(Py_ssize_t) * (size_t)n);
    return 0;
}

static PyObject *py_one = NULL; /* int 1, set at import */

/* cls(*vals) for a slots class, as new_slots: vals are borrowed. */
static PyObject *
make_slots(PyObject *cls_obj, PyObject *const *vals, Py_ssize_t n)
{
    if (!PyType_Check(cls_obj)) {
        PyErr_SetString(PyExc_TypeError, "new_slots(cls, *values): cls must be a class");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)cls_obj;
    if (cls != slots_cls && slots_learn(cls) < 0)
        return NULL;
    if (n != slots_n) {
        PyErr_Format(PyExc_TypeError, "new_slots: %s takes %zd values, got %zd", cls->tp_name, slots_n, n);
        return NULL;
    }
    PyObject *obj = cls->tp_alloc(cls, 0);
    if (obj == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        *(PyObject **)((char *)obj + slots_off[i]) = Py_NewRef(vals[i]);
    return obj;
}

static PyObject *
new_slots(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "new_slots(cls, *values): cls must be a class");
        return NULL;
    }
    return make_slots(args[0], args + 1, nargs - 1);
}

/* A book diff as msg_cls(inst, False, bids, asks, seq, prev, checksum, exch_ms, recv_ns) (BookMsg's fields in
 * order), the scanners' result. Steals every value but msg_cls and recv_ns: NULL ones mean an error is set, and
 * the others are released. */
static PyObject *
book_diff(PyObject *msg_cls, PyObject *inst, PyObject *bids, PyObject *asks, PyObject *seq, PyObject *prev,
          PyObject *checksum, PyObject *exch_ms, PyObject *recv_ns)
{
    PyObject *vals[9] = {inst, Py_False, bids, asks, seq, prev, checksum, exch_ms, recv_ns}, *out = NULL;
    if (inst != NULL && bids != NULL && asks != NULL && seq != NULL && prev != NULL && checksum != NULL &&
        exch_ms != NULL)
        out = make_slots(msg_cls, vals, 9);
    for (int i = 0; i < 8; i++)
        if (i != 1)
            Py_XDECREF(vals[i]);
    return out;
}

/* ---- kraken_v1: Kraken v1 book diffs [chanId, {"a"|"b": levels, "c": "crc"}, "book-N", "PAIR"] ---------- */

/* [[s, s, ...], ...] with at least two strings per level -> a new list of lists of str; NULL (no exception
 * set) when not of that shape. */
static PyObject *
sc_levels(scan_t *s)
{
    PyObject *out = PyList_New(0);
    if (out == NULL || !sc_char(s, '['))
        goto fail;
    if (sc_char(s, ']'))
        return out;
    do {
        PyObject *items[8];
        Py_ssize_t k = 0;
        int ok = sc_char(s, '[');
        while (ok) {
            const char *a;
            Py_ssize_t n;
            if (k == 8 || !sc_str(s, &a, &n) || (items[k] = ascii_str(a, n)) == NULL) {
                ok = 0;
                break;
            }
            k++;
            if (!sc_char(s, ','))
                break;
        }
        ok = ok && k >= 2 && sc_char(s, ']');
        PyObject *row = ok ? PyList_New(k) : NULL;
        if (row == NULL) {
            while (k > 0)
                Py_DECREF(items[--k]);
            goto fail;
        }
        for (Py_ssize_t i = 0; i < k; i++)
            PyList_SET_ITEM(row, i, items[i]);
        int rc = PyList_Append(out, row);
        Py_DECREF(row);
        if (rc < 0)
            goto fail;
    } while (sc_char(s, ','));
    if (sc_char(s, ']'))
        return out;
fail:
    Py_XDECREF(out);
    return NULL;
}

/* kraken_v1(text, seq, recv_ns, msg_cls) -> msg_cls(pair, False, bids, asks, seq, seq - 1, checksum, 0, recv_ns)
 * | None: a v1 book diff (a channel name "book-..."), read from its text. */
static PyObject *
kraken_v1(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    const char *buf, *k, *name, *pair, *crc = NULL;
    Py_ssize_t len, kn, name_n, pair_n, crc_n = 0;
    PyObject *asks = NULL, *bids = NULL;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "kraken_v1(text, seq, recv_ns, msg_cls)");
        return NULL;
    }
    if (!plain_text(args[0], &buf, &len))
        Py_RETURN_NONE;
    scan_t sc = {buf, buf + len, 0}, *s = &sc;
    if (!sc_char(s, '[') || !sc_skip(s) || !sc_char(s, ',') || !sc_char(s, '{'))
        goto done;
    if (!sc_char(s, '}')) {
        do {
            if (!sc_str(s, &k, &kn) || !sc_char(s, ':'))
                goto done;
            if (SPAN_IS(k, kn, "a")) {
                if (asks != NULL || (asks = sc_levels(s)) == NULL)
                    goto done;
            }
            else if (SPAN_IS(k, kn, "b")) {
                if (bids != NULL || (bids = sc_levels(s)) == NULL)
                    goto done;
            }
            else if (SPAN_IS(k, kn, "c")) {
                if (crc != NULL || !sc_str(s, &crc, &crc_n) || crc_n < 1 || crc_n > 10)
                    goto done;
                for (Py_ssize_t i = 0; i < crc_n; i++)
                    if (crc[i] < '0' || crc[i] > '9')
                        goto done;
            }
            else
                goto done; /* snapshots ("as", "bs") and anything else: the full decoder */
        } while (sc_char(s, ','));
        if (!sc_char(s, '}'))
            goto done;
    }
    if (!sc_char(s, ',') || !sc_str(s, &name, &name_n) || !sc_char(s, ',') || !sc_str(s, &pair, &pair_n) ||
        !sc_char(s, ']'))
        goto done;
    sc_ws(s);
    if (s->p != s->end || name_n < 5 || memcmp(name, "book-", 5) != 0)
        goto done;
    unsigned long long c = 0;
    for (Py_ssize_t i = 0; i < crc_n; i++)
        c = c * 10 + (unsigned long long)(crc[i] - '0');
    if (asks == NULL && (asks = PyList_New(0)) == NULL)
        goto done;
    if (bids == NULL && (bids = PyList_New(0)) == NULL)
        goto done;
    PyObject *pair_o = ascii_str(pair, pair_n), *prev = pair_o ? PyNumber_Subtract(args[1], py_one) : NULL;
    PyObject *crc_o = prev ? PyLong_FromUnsignedLongLong(c) : NULL, *zero = crc_o ? PyLong_FromLong(0) : NULL;
    Py_INCREF(args[1]);
    return book_diff(args[3], pair_o, bids, asks, args[1], prev, crc_o, zero, args[2]); /* it took asks and bids */
done:
    Py_XDECREF(asks);
    Py_XDECREF(bids);
    if (!PyErr_Occurred())
        Py_RETURN_NONE;
    return NULL;
}

/* ---- kucoin_l2: KuCoin {"type":"message","subject":"trade.l2update","data":{...}} level2 diffs ------------- */

/* sc_str with a plain loop for the closing quote: KuCoin's strings are short, and memchr's call and set-up
 * cost more than the few bytes it skips. */
static inline int
sc_short_str(scan_t *s, const char **a, Py_ssize_t *n)
{
    if (!sc_char(s, '"'))
        return 0;
    const char *q = s->p;
    while (q < s->end && *q != '"')
        q++;
    if (q == s->end)
        return 0;
    *a = s->p;
    *n = q - s->p;
    s->p = q + 1;
    return 1;
}

/* a[0:n] as the digits of an integer (negated with ``neg``): 1 and *v when 1 <= n <= max_digits (at most 19) and it
 * fits int64, else 0. */
static int
digits_int64(const char *a, Py_ssize_t n, int neg, Py_ssize_t max_digits, long long *v)
{
    if (n < 1 || n > max_digits)
        return 0;
    unsigned long long x = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (a[i] < '0' || a[i] > '9')
            return 0;
        x = x * 10 + (unsigned long long)(a[i] - '0'); /* 19 digits < 2^64: no wrap */
    }
    if (x > (neg ? 9223372036854775808ULL : 9223372036854775807ULL))
        return 0;
    *v = neg ? (long long)(0ULL - x) : (long long)x;
    return 1;
}

/* A JSON integer of at most max_digits digits that fits int64 (18 digits: any reader keeps it exact); 0 if the
 * value is not one. */
static int
sc_int(scan_t *s, Py_ssize_t max_digits, long long *v)
{
    int integer;
    sc_ws(s);
    const char *a = s->p;
    if (!sc_number(s, &integer) || !integer)
        return 0;
    int neg = *a == '-';
    a += neg;
    return digits_int64(a, s->p - a, neg, max_digits, v);
}

/* A new list of the ``count`` ASCII strings a[i][0:n[i]], appended to out: 0, or -1 on a Python error. */
static int
append_str_row(PyObject *out, const char *const *a, const Py_ssize_t *n, int count)
{
    PyObject *row = PyList_New(count);
    if (row == NULL)
        return -1;
    for (int i = 0; i < count; i++) {
        PyObject *x = ascii_str(a[i], n[i]);
        if (x == NULL) {
            Py_DECREF(row); /* the list frees the items already set (the rest are NULL) */
            return -1;
        }
        PyList_SET_ITEM(row, i, x);
    }
    int rc = PyList_Append(out, row);
    Py_DECREF(row);
    return rc;
}

/* [[px, sz, seq], ...] (exactly three strings each) appended to a new *out as lists, rows of price "0" dropped:
 * 1 done, 0 not of that shape (or *out already read), -1 on a Python error. *out belongs to the caller either way. */
static int
sc_kc_rows(scan_t *s, PyObject **out)
{
    if (*out != NULL || !sc_char(s, '['))
        return 0;
    if ((*out = PyList_New(0)) == NULL)
        return -1;
    if (sc_char(s, ']'))
        return 1;
    do {
        const char *a[3];
        Py_ssize_t n[3];
        if (!sc_char(s, '[') || !sc_short_str(s, &a[0], &n[0]) || !sc_char(s, ',') ||
            !sc_short_str(s, &a[1], &n[1]) || !sc_char(s, ',') || !sc_short_str(s, &a[2], &n[2]) || !sc_char(s, ']'))
            return 0;
        if (n[0] == 1 && a[0][0] == '0')
            continue; /* price "0": a sequence step that changes no level (goes on to the ',' test) */
        if (append_str_row(*out, a, n, 3) < 0)
            return -1;
    } while (sc_char(s, ','));
    return sc_char(s, ']');
}

/* The symbols read last (KuCoin symbols, OKX instIds), by a hash of their text: a repeated symbol comes back as
 * the same str (already hashed for the caller's dict look-ups) instead of a new one. Holds at most 64 short strs
 * for the module's life. */
static PyObject *kc_symbols[64];

static PyObject *
kc_symbol(const char *a, Py_ssize_t n)
{
    if (n > 32)
        return ascii_str(a, n);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)a[i]) * 16777619u;
    PyObject **slot = &kc_symbols[h & 63], *u = *slot;
    if (u != NULL && PyUnicode_GET_LENGTH(u) == n && memcmp(PyUnicode_1BYTE_DATA(u), a, (size_t)n) == 0) {
        Py_INCREF(u);
        return u;
    }
    if ((u = ascii_str(a, n)) == NULL)
        return NULL;
    PyObject *old = *slot;
    Py_INCREF(u);
    *slot = u;
    Py_XDECREF(old);
    return u;
}

/* The fields of a trade.l2update's data object that the parser uses. */
typedef struct {
    const char *sym;
    Py_ssize_t sym_n;
    long long start, end, t;
    int have_changes, have_start, have_end, have_time;
    PyObject *bids, *asks; /* owned; the caller releases them whatever sc_kc_data returns */
} kc_data_t;

/* data {"changes": {"asks": rows, "bids": rows}, "sequenceStart": int, "sequenceEnd": int, "symbol": str,
 * "time": int} (other keys skipped): 1 read into *d, 0 not of that shape, -1 on a Python error. */
static int
sc_kc_data(scan_t *s, kc_data_t *d)
{
    const char *k;
    Py_ssize_t kn;
    int rc;
    if (!sc_char(s, '{') || sc_char(s, '}'))
        return 0;
    do {
        if (!sc_short_str(s, &k, &kn) || !sc_char(s, ':'))
            return 0;
        if (SPAN_IS(k, kn, "changes")) {
            if (d->have_changes || !sc_char(s, '{'))
                return 0;
            d->have_changes = 1;
            if (!sc_char(s, '}')) {
                do {
                    if (!sc_short_str(s, &k, &kn) || !sc_char(s, ':'))
                        return 0;
                    if (SPAN_IS(k, kn, "asks"))
                        rc = sc_kc_rows(s, &d->asks);
                    else if (SPAN_IS(k, kn, "bids"))
                        rc = sc_kc_rows(s, &d->bids);
                    else
                        rc = sc_skip(s);
                    if (rc <= 0)
                        return rc;
                } while (sc_char(s, ','));
                if (!sc_char(s, '}'))
                    return 0;
            }
        }
        else if (SPAN_IS(k, kn, "sequenceStart")) {
            if (d->have_start || !sc_int(s, 18, &d->start))
                return 0;
            d->have_start = 1;
        }
        else if (SPAN_IS(k, kn, "sequenceEnd")) {
            if (d->have_end || !sc_int(s, 18, &d->end))
                return 0;
            d->have_end = 1;
        }
        else if (SPAN_IS(k, kn, "symbol")) {
            if (d->sym != NULL || !sc_short_str(s, &d->sym, &d->sym_n))
                return 0;
        }
        else if (SPAN_IS(k, kn, "time")) {
            if (d->have_time || !sc_int(s, 18, &d->t))
                return 0;
            d->have_time = 1;
        }
        else if (!sc_skip(s))
            return 0;
    } while (sc_char(s, ','));
    return sc_char(s, '}') && d->have_changes && d->have_start && d->have_end && d->sym != NULL;
}

/* kucoin_l2(text, recv_ns, msg_cls) -> msg_cls(symbol, False, bids, asks, sequenceEnd, sequenceStart, 0, time,
 * recv_ns) | topic | None. A "message" of another subject gives its topic (the parser reports it as ignored),
 * a trade.l2update whose sequenceStart exceeds its sequenceEnd gives None (the parser's error). Keys in any
 * order: a data object met before the subject is read as an l2update's and, if it is not one, skipped. */
static PyObject *
kucoin_l2(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    const char *buf, *k, *topic = NULL;
    Py_ssize_t len, kn, topic_n = 0;
    int have_type = 0, subject = 0 /* 1 trade.l2update, 2 another */, have_data = 0, data_ok = 0, rc;
    kc_data_t d = {NULL, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL};
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "kucoin_l2(text, recv_ns, msg_cls)");
        return NULL;
    }
    if (!plain_text(args[0], &buf, &len))
        Py_RETURN_NONE;
    scan_t sc = {buf, buf + len, 0}, *s = &sc;
    if (!sc_char(s, '{') || sc_char(s, '}'))
        goto done;
    do {
        const char *v;
        Py_ssize_t vn;
        if (!sc_short_str(s, &k, &kn) || !sc_char(s, ':'))
            goto done;
        if (SPAN_IS(k, kn, "type")) {
            if (have_type || !sc_short_str(s, &v, &vn) || !SPAN_IS(v, vn, "message"))
                goto done;
            have_type = 1;
        }
        else if (SPAN_IS(k, kn, "subject")) {
            if (subject || !sc_short_str(s, &v, &vn))
                goto done;
            subject = SPAN_IS(v, vn, "trade.l2update") ? 1 : 2;
        }
        else if (SPAN_IS(k, kn, "data")) {
            if (have_data)
                goto done;
            have_data = 1;
            if (subject == 2) {
                if (!sc_skip(s))
                    goto done;
                continue;
            }
            scan_t at = *s;
            if ((rc = sc_kc_data(s, &d)) < 0)
                goto done;
            data_ok = rc;
            if (!data_ok) {
                if (subject == 1)
                    goto done;
                Py_CLEAR(d.bids); /* perhaps another subject's data: skipped as any JSON value */
                Py_CLEAR(d.asks);
                *s = at;
                if (!sc_skip(s))
                    goto done;
            }
        }
        else if (SPAN_IS(k, kn, "topic")) {
            if (topic != NULL || !sc_short_str(s, &topic, &topic_n))
                goto done;
        }
        else if (!sc_skip(s))
            goto done;
    } while (sc_char(s, ','));
    if (!sc_char(s, '}'))
        goto done;
    sc_ws(s);
    if (s->p != s->end || !have_type)
        goto done;
    if (subject == 2) {
        Py_CLEAR(d.bids);
        Py_CLEAR(d.asks);
        if (topic != NULL)
            return ascii_str(topic, topic_n);
        goto done;
    }
    if (subject != 1 || !data_ok || d.start > d.end)
        goto done;
    if (d.bids == NULL && (d.bids = PyList_New(0)) == NULL)
        goto done;
    if (d.asks == NULL && (d.asks = PyList_New(0)) == NULL)
        goto done;
    PyObject *sym = kc_symbol(d.sym, d.sym_n), *end = sym ? PyLong_FromLongLong(d.end) : NULL, *start = NULL;
    if (end != NULL && d.start == d.end) /* one change: the same int twice */
        start = Py_NewRef(end);
    else if (end != NULL)
        start = PyLong_FromLongLong(d.start);
    PyObject *zero = start ? PyLong_FromLong(0) : NULL, *t = zero ? PyLong_FromLongLong(d.t) : NULL;
    return book_diff(args[2], sym, d.bids, d.asks, end, start, zero, t, args[1]); /* it took bids and asks */
done:
    Py_XDECREF(d.bids);
    Py_XDECREF(d.asks);
    if (!PyErr_Occurred())
        Py_RETURN_NONE;
    return NULL;
}

/* ---- okx_books: OKX {"arg":{"channel":"books","instId":..},"action":..,"data":[{..}]} order-book frames --------
 * A book frame's levels are [price, size, "0", orderCount]: each level becomes a new [price, size] list (the
 * extras, which the book never reads, are checked to be strings or numbers and skipped). Keys in any order, other
 * keys skipped; a repeated key that is read, a channel other than "books", data of other than one item, an action
 * other than "update"/"snapshot", integers beyond int64 or ts other than a string of digits: None (the caller then
 * decodes the frame in full). */

/* [[px, sz, extra...], ...] (at least two strings, extras strings or numbers) appended to a new *out as [px, sz]
 * lists: 1 done, 0 not of that shape (or *out already read), -1 on a Python error. *out is the caller's either way. */
static int
sc_okx_levels(scan_t *s, PyObject **out)
{
    if (*out != NULL || !sc_char(s, '['))
        return 0;
    if ((*out = PyList_New(0)) == NULL)
        return -1;
    if (sc_char(s, ']'))
        return 1;
    do {
        const char *a[2];
        Py_ssize_t n[2];
        if (!sc_char(s, '[') || !sc_short_str(s, &a[0], &n[0]) || !sc_char(s, ',') || !sc_short_str(s, &a[1], &n[1]))
            return 0;
        while (sc_char(s, ',')) {
            const char *x;
            Py_ssize_t xn;
            int integer;
            sc_ws(s);
            if (s->p < s->end && *s->p == '"' ? !sc_short_str(s, &x, &xn) : !sc_number(s, &integer))
                return 0;
        }
        if (!sc_char(s, ']'))
            return 0;
        if (append_str_row(*out, a, n, 2) < 0)
            return -1;
    } while (sc_char(s, ','));
    return sc_char(s, ']');
}

/* Whether the text holds "seqId" (which the scanner requires: keys have no escapes), searched from the end, where
 * OKX puts it. A frame from before OKX added seqId (the 2022 recording) has no 'q' at all: one memrchr pass finds
 * that out, instead of a scan that builds every level and then gives up. */
static int
okx_has_seqid(const char *buf, Py_ssize_t len)
{
    const char *p = buf + len;
    for (;;) {
#if defined(__GLIBC__)
        p = memrchr(buf, 'q', (size_t)(p - buf));
#else
        while (p > buf && *--p != 'q')
            ;
        if (p == buf && *p != 'q')
            p = NULL;
#endif
        if (p == NULL)
            return 0;
        if (p - buf >= 3 && buf + len - p >= 4 && memcmp(p - 3, "\"seqId\"", 7) == 0)
            return 1;
    }
}

/* okx_books(text) -> (inst, action, bids, asks, seq, prev, checksum, ts) | None */
static PyObject *
okx_books(PyObject *self, PyObject *arg)
{
    const char *buf, *k, *v, *inst = NULL, *action = NULL, *ts = NULL;
    Py_ssize_t len, kn, vn, inst_n = 0, action_n = 0, ts_n = 0;
    long long seq = 0, prev = 0, crc = 0, t = 0;
    int have_arg = 0, have_channel = 0, have_data = 0, have_seq = 0, have_prev = 0, have_crc = 0, rc;
    PyObject *bids = NULL, *asks = NULL, *out = NULL;
    if (!plain_text(arg, &buf, &len) || !okx_has_seqid(buf, len))
        Py_RETURN_NONE;
    scan_t sc = {buf, buf + len, 0}, *s = &sc;
    if (!sc_char(s, '{') || sc_char(s, '}'))
        goto done;
    do {
        if (!sc_short_str(s, &k, &kn) || !sc_char(s, ':'))
            goto done;
        if (SPAN_IS(k, kn, "arg")) {
            if (have_arg || !sc_char(s, '{') || sc_char(s, '}'))
                goto done;
            have_arg = 1;
            do {
                if (!sc_short_str(s, &k, &kn) || !sc_char(s, ':'))
                    goto done;
                if (SPAN_IS(k, kn, "channel")) {
                    if (have_channel || !sc_short_str(s, &v, &vn) || !SPAN_IS(v, vn, "books"))
                        goto done;
                    have_channel = 1;
                }
                else if (SPAN_IS(k, kn, "instId")) {
                    if (inst != NULL || !sc_short_str(s, &inst, &inst_n))
                        goto done;
                }
                else if (!sc_skip(s))
                    goto done;
            } while (sc_char(s, ','));
            if (!sc_char(s, '}'))
                goto done;
        }
        else if (SPAN_IS(k, kn, "action")) {
            if (action != NULL || !sc_short_str(s, &action, &action_n) ||
                !(SPAN_IS(action, action_n, "update") || SPAN_IS(action, action_n, "snapshot")))
                goto done;
        }
        else if (SPAN_IS(k, kn, "data")) {
            /* exactly one item, an object */
            if (have_data || !sc_char(s, '[') || !sc_char(s, '{') || sc_char(s, '}'))
                goto done;
            have_data = 1;
            do {
                if (!sc_short_str(s, &k, &kn) || !sc_char(s, ':'))
                    goto done;
                if (SPAN_IS(k, kn, "asks"))
                    rc = sc_okx_levels(s, &asks);
                else if (SPAN_IS(k, kn, "bids"))
                    rc = sc_okx_levels(s, &bids);
                else if (SPAN_IS(k, kn, "ts"))
                    rc = ts == NULL && sc_short_str(s, &ts, &ts_n) && digits_int64(ts, ts_n, 0, 19, &t);
                else if (SPAN_IS(k, kn, "seqId")) {
                    rc = !have_seq && sc_int(s, 19, &seq);
                    have_seq = 1;
                }
                else if (SPAN_IS(k, kn, "prevSeqId")) {
                    rc = !have_prev && sc_int(s, 19, &prev);
                    have_prev = 1;
                }
                else if (SPAN_IS(k, kn, "checksum")) {
                    rc = !have_crc && sc_int(s, 19, &crc);
                    have_crc = 1;
                }
                else
                    rc = sc_skip(s);
                if (rc <= 0)
                    goto done;
            } while (sc_char(s, ','));
            if (!sc_char(s, '}') || !sc_char(s, ']'))
                goto done;
        }
        else if (!sc_skip(s))
            goto done;
    } while (sc_char(s, ','));
    if (!sc_char(s, '}'))
        goto done;
    sc_ws(s);
    if (s->p != s->end || !have_channel || inst == NULL || !have_data || bids == NULL || asks == NULL || ts == NULL ||
        !have_seq || !have_prev)
        goto done;
    PyObject *items[6];
    items[0] = kc_symbol(inst, inst_n);
    items[1] = items[0] == NULL ? NULL : action != NULL ? ascii_str(action, action_n) : PyUnicode_New(0, 127);
    items[2] = items[1] ? PyLong_FromLongLong(seq) : NULL;
    items[3] = items[2] ? PyLong_FromLongLong(prev) : NULL;
    items[4] = items[3] ? PyLong_FromLongLong(crc) : NULL;
    items[5] = items[4] ? PyLong_FromLongLong(t) : NULL;
    out = items[5] ? PyTuple_New(8) : NULL;
    if (out == NULL) {
        for (int i = 0; i < 6 && items[i] != NULL; i++)
            Py_DECREF(items[i]);
        goto done;
    }
    PyTuple_SET_ITEM(out, 0, items[0]);
    PyTuple_SET_ITEM(out, 1, items[1]);
    PyTuple_SET_ITEM(out, 2, bids);
    PyTuple_SET_ITEM(out, 3, asks);
    for (int i = 2; i < 6; i++)
        PyTuple_SET_ITEM(out, i + 2, items[i]);
    return out; /* the tuple owns bids and asks now */
done:
    Py_XDECREF(bids);
    Py_XDECREF(asks);
    if (out == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return out;
}

static PyMethodDef methods[] = {
    {"apply_rows", (PyCFunction)(void (*)(void))apply_rows, METH_FASTCALL,
     "apply_rows(keys, pxs, szs, rows, neg, watch) -> bool: apply absolute-size rows to one side"},
    {"load_rows", (PyCFunction)(void (*)(void))load_rows, METH_FASTCALL,
     "load_rows(rows, neg) -> (keys, pxs, szs): a side from rows in any order"},
    {"interleaved_crc32", (PyCFunction)(void (*)(void))interleaved_crc32, METH_FASTCALL,
     "interleaved_crc32(bpx, bsz, apx, asz, depth) -> int: signed CRC32 of bidPx:bidSz:askPx:askSz:..."},
    {"kraken_crc32", (PyCFunction)(void (*)(void))kraken_crc32, METH_FASTCALL,
     "kraken_crc32(bpx, bsz, apx, asz, depth) -> int: unsigned CRC32 of Kraken's asks-then-bids digit text"},
    {"apply_sides", (PyCFunction)(void (*)(void))apply_sides, METH_FASTCALL,
     "apply_sides(bkeys, bpxs, bszs, akeys, apxs, aszs, bids, asks, watch, max_levels) -> int: 1 touched | 2 crossed"},
    {"pick_rows", (PyCFunction)(void (*)(void))pick_rows, METH_FASTCALL,
     "pick_rows(items, px_key, sz_key) -> list | None: [[px, sz], ...] from objects with str fields"},
    {"split_rows", (PyCFunction)(void (*)(void))split_rows, METH_FASTCALL,
     "split_rows(items, side_key, bid, ask, px_key, sz_key) -> (bids, asks) | None: rows split by side"},
    {"coinbase_l2", coinbase_l2, METH_O,
     "coinbase_l2(text) -> (channel, timestamp, sequence_num, [(type, product_id, bids, asks)]) | None"},
    {"kraken_v1", (PyCFunction)(void (*)(void))kraken_v1, METH_FASTCALL,
     "kraken_v1(text, seq, recv_ns, msg_cls) -> msg_cls(pair, False, bids, asks, seq, seq - 1, checksum, 0, recv_ns)"
     " | None: a Kraken v1 book diff read from its text"},
    {"kucoin_l2", (PyCFunction)(void (*)(void))kucoin_l2, METH_FASTCALL,
     "kucoin_l2(text, recv_ns, msg_cls) -> msg_cls(symbol, False, bids, asks, sequenceEnd, sequenceStart, 0, time,"
     " recv_ns) | topic | None: a KuCoin level2 diff, or the topic of another subject's message"},
    {"okx_books", okx_books, METH_O,
     "okx_books(text) -> (inst, action, bids, asks, seq, prev, checksum, ts) | None: an OKX books frame, levels cut"
     " to [price, size]"},
    {"new_slots", (PyCFunction)(void (*)(void))new_slots, METH_FASTCALL,
     "new_slots(cls, *values) -> cls instance: slots set in __slots__ order, __init__ not run"},
    {"crc32", crc32_bytes, METH_O, "crc32(data) -> int: zlib.crc32(data), computed here"},
    {"set_merge_min", set_merge_min, METH_O,
     "set_merge_min(n) -> int: merge a side's batch of >= n rows instead of applying them one by one (tests)"},
    {"set_clmul", set_clmul, METH_O, "set_clmul(flag) -> bool: use carry-less multiplication if the CPU has it"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "scanner.book._core", "Compiled book kernels (see scanner/book/pycore.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    crc_init();
    if (py_one == NULL && (py_one = PyLong_FromLong(1)) == NULL)
        return NULL;
#ifdef HAVE_CLMUL_PATH
    __builtin_cpu_init();
    use_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse2");
#endif
    return PyModule_Create(&module);
}
