/*
 * cbor.c: the NSM's requests and a bounds-checked reader of its responses (see cbor.h).
 */
#include "cbor.h"

#include <stdio.h>
#include <string.h>

#define SKIP_DEPTH_MAX 16

/* --- requests --- */

/* Writes a header with the shortest argument; returns its length, or 0 if cap is too small. */
static size_t put_head(uint8_t *buf, size_t cap, unsigned major, uint64_t arg)
{
    uint8_t ib = (uint8_t)(major << 5);
    size_t n;
    if (arg < 24)
        n = 0;
    else if (arg <= 0xff)
        n = 1;
    else if (arg <= 0xffff)
        n = 2;
    else if (arg <= 0xffffffffu)
        n = 4;
    else
        n = 8;
    if (cap < 1 + n)
        return 0;
    buf[0] = (uint8_t)(ib | (n == 0 ? arg : n == 1 ? 24 : n == 2 ? 25 : n == 4 ? 26 : 27));
    for (size_t i = 0; i < n; i++)
        buf[1 + i] = (uint8_t)(arg >> (8 * (n - 1 - i)));
    return 1 + n;
}

/* Appends a header (and, for strings, the bytes) at *pos; returns -1 when it does not fit. */
static int put(uint8_t *buf, size_t cap, size_t *pos, unsigned major, uint64_t arg, const char *bytes)
{
    size_t n = put_head(buf + *pos, cap - *pos, major, arg);
    if (n == 0)
        return -1;
    *pos += n;
    if (bytes != NULL) {
        if (cap - *pos < arg)
            return -1;
        memcpy(buf + *pos, bytes, (size_t)arg);
        *pos += (size_t)arg;
    }
    return 0;
}

static int put_text(uint8_t *buf, size_t cap, size_t *pos, const char *text)
{
    return put(buf, cap, pos, CBOR_TEXT, strlen(text), text);
}

size_t nsm_encode_describe_pcr(uint16_t index, uint8_t *buf, size_t cap)
{
    size_t pos = 0;
    if (put(buf, cap, &pos, CBOR_MAP, 1, NULL) || put_text(buf, cap, &pos, "DescribePCR")
        || put(buf, cap, &pos, CBOR_MAP, 1, NULL) || put_text(buf, cap, &pos, "index")
        || put(buf, cap, &pos, CBOR_UINT, index, NULL))
        return 0;
    return pos;
}

size_t nsm_encode_describe_nsm(uint8_t *buf, size_t cap)
{
    size_t pos = 0;
    if (put_text(buf, cap, &pos, "DescribeNSM"))
        return 0;
    return pos;
}

/* --- the reader --- */

void cbor_reader_init(struct cbor_reader *r, const uint8_t *buf, size_t len)
{
    r->buf = buf;
    r->len = len;
    r->pos = 0;
    r->err = NULL;
}

static int fail(struct cbor_reader *r, const char *err)
{
    if (r->err == NULL)
        r->err = err;
    return -1;
}

int cbor_read_head(struct cbor_reader *r, struct cbor_head *h)
{
    if (r->err != NULL)
        return -1;
    if (r->pos >= r->len)
        return fail(r, "truncated: an item is missing");
    uint8_t ib = r->buf[r->pos];
    h->major = ib >> 5;
    h->ai = ib & 0x1f;
    size_t n;
    if (h->ai < 24)
        n = 0;
    else if (h->ai <= 27)
        n = (size_t)1 << (h->ai - 24);
    else if (h->ai == 31)
        return fail(r, "indefinite length (not supported)");
    else
        return fail(r, "reserved additional information 28-30");
    if (r->len - r->pos - 1 < n)
        return fail(r, "truncated: a header's argument is cut");
    uint64_t arg = h->ai < 24 ? h->ai : 0;
    for (size_t i = 0; i < n; i++)
        arg = arg << 8 | r->buf[r->pos + 1 + i];
    if (h->major == CBOR_SIMPLE && h->ai == 24 && arg < 32)
        return fail(r, "a two-byte simple value below 32 (not well-formed)");
    h->arg = arg;
    r->pos += 1 + n;
    if ((h->major == CBOR_BYTES || h->major == CBOR_TEXT) && h->arg > r->len - r->pos)
        return fail(r, "truncated: a string is longer than what is left");
    return 0;
}

int cbor_read_string(struct cbor_reader *r, unsigned major, const uint8_t **data, size_t *n)
{
    struct cbor_head h;
    if (cbor_read_head(r, &h))
        return -1;
    if (h.major != major)
        return fail(r, major == CBOR_TEXT ? "expected a text string" : "expected a byte string");
    *data = r->buf + r->pos;
    *n = (size_t)h.arg; /* <= len - pos: checked by cbor_read_head */
    r->pos += *n;
    return 0;
}

static int skip(struct cbor_reader *r, int depth)
{
    if (depth > SKIP_DEPTH_MAX)
        return fail(r, "nested too deep");
    struct cbor_head h;
    if (cbor_read_head(r, &h))
        return -1;
    switch (h.major) {
    case CBOR_BYTES:
    case CBOR_TEXT:
        r->pos += (size_t)h.arg;
        return 0;
    case CBOR_ARRAY:
    case CBOR_MAP:
        /* Each element takes at least one byte: a count larger than what is left is truncation, which also bounds
         * the loop. */
        if (h.arg > r->len - r->pos || (h.major == CBOR_MAP && h.arg > (r->len - r->pos) / 2))
            return fail(r, "truncated: more elements than bytes left");
        for (uint64_t i = 0; i < (h.major == CBOR_MAP ? 2 * h.arg : h.arg); i++)
            if (skip(r, depth + 1))
                return -1;
        return 0;
    case CBOR_TAG:
        return skip(r, depth + 1);
    default: /* integers, simple values, floats: the header is all */
        return 0;
    }
}

int cbor_skip(struct cbor_reader *r)
{
    return skip(r, 0);
}

/* --- responses --- */

/* Copies n bytes into dst (cap bytes, NUL-terminated), printable ASCII only: anything else becomes '?'. */
static void copy_printable(char *dst, size_t cap, const uint8_t *src, size_t n)
{
    if (cap == 0)
        return;
    size_t i;
    for (i = 0; i < n && i + 1 < cap; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
    dst[i] = '\0';
}

static bool text_is(const uint8_t *s, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

static enum nsm_decode_result malformed(struct cbor_reader *r, char *detail, size_t cap)
{
    if (cap > 0)
        snprintf(detail, cap, "malformed response: %s (at byte %zu of %zu)", r->err ? r->err : "?", r->pos, r->len);
    return NSM_DECODE_MALFORMED;
}

/* The reader must be at the end of the input. */
static int expect_end(struct cbor_reader *r)
{
    if (r->err == NULL && r->pos != r->len)
        return fail(r, "bytes after the response");
    return r->err ? -1 : 0;
}

/*
 * Reads the envelope every response has: a map of one entry whose key names the response. For {"Error":"Name"}
 * copies Name into detail and returns NSM_DECODE_ERROR_RESPONSE; for {want: ...} returns NSM_DECODE_OK with the
 * reader at the value; anything else is NSM_DECODE_MALFORMED.
 */
static enum nsm_decode_result envelope(struct cbor_reader *r, const char *want, char *detail, size_t cap)
{
    struct cbor_head h;
    if (cbor_read_head(r, &h))
        return malformed(r, detail, cap);
    if (h.major != CBOR_MAP || h.arg != 1) {
        fail(r, "expected a map of one entry");
        return malformed(r, detail, cap);
    }
    const uint8_t *key, *value;
    size_t key_len, value_len;
    if (cbor_read_string(r, CBOR_TEXT, &key, &key_len))
        return malformed(r, detail, cap);
    if (text_is(key, key_len, want))
        return NSM_DECODE_OK;
    if (text_is(key, key_len, "Error")) {
        if (cbor_read_string(r, CBOR_TEXT, &value, &value_len) || expect_end(r))
            return malformed(r, detail, cap);
        copy_printable(detail, cap, value, value_len);
        return NSM_DECODE_ERROR_RESPONSE;
    }
    char name[48];
    copy_printable(name, sizeof name, key, key_len);
    if (cap > 0)
        snprintf(detail, cap, "malformed response: a \"%s\" response to %s", name, want);
    return NSM_DECODE_MALFORMED;
}

/* Reads the header of a map and returns its number of pairs, or -1. */
static int64_t read_map(struct cbor_reader *r, const char *what)
{
    struct cbor_head h;
    if (cbor_read_head(r, &h))
        return -1;
    if (h.major != CBOR_MAP)
        return fail(r, what);
    if (h.arg > (r->len - r->pos) / 2)
        return fail(r, "truncated: more pairs than bytes left");
    return (int64_t)h.arg;
}

/* Reads an unsigned integer. */
static int read_uint(struct cbor_reader *r, uint64_t *v, const char *what)
{
    struct cbor_head h;
    if (cbor_read_head(r, &h))
        return -1;
    if (h.major != CBOR_UINT)
        return fail(r, what);
    *v = h.arg;
    return 0;
}

/* Marks a key as seen; a second one is an error. */
static int once(struct cbor_reader *r, unsigned *seen, unsigned bit)
{
    if (*seen & bit)
        return fail(r, "a key appears twice");
    *seen |= bit;
    return 0;
}

enum nsm_decode_result nsm_decode_describe_pcr(const uint8_t *buf, size_t len, struct nsm_pcr *pcr, char *detail,
                                               size_t detail_cap)
{
    struct cbor_reader r;
    cbor_reader_init(&r, buf, len);
    if (detail_cap > 0)
        detail[0] = '\0';
    enum nsm_decode_result res = envelope(&r, "DescribePCR", detail, detail_cap);
    if (res != NSM_DECODE_OK)
        return res;
    int64_t pairs = read_map(&r, "DescribePCR is not a map");
    if (pairs < 0)
        return malformed(&r, detail, detail_cap);
    enum { LOCK = 1, DATA = 2 };
    unsigned seen = 0;
    for (int64_t i = 0; i < pairs; i++) {
        const uint8_t *key, *data;
        size_t key_len, data_len;
        struct cbor_head h;
        if (cbor_read_string(&r, CBOR_TEXT, &key, &key_len))
            return malformed(&r, detail, detail_cap);
        if (text_is(key, key_len, "lock")) {
            if (once(&r, &seen, LOCK) || cbor_read_head(&r, &h))
                return malformed(&r, detail, detail_cap);
            if (h.major != CBOR_SIMPLE || (h.ai != 20 && h.ai != 21)) {
                fail(&r, "\"lock\" is not a boolean");
                return malformed(&r, detail, detail_cap);
            }
            pcr->locked = h.ai == 21;
        } else if (text_is(key, key_len, "data")) {
            if (once(&r, &seen, DATA) || cbor_read_string(&r, CBOR_BYTES, &data, &data_len))
                return malformed(&r, detail, detail_cap);
            if (data_len != 32 && data_len != 48 && data_len != 64) {
                fail(&r, "\"data\" is not 32, 48 or 64 bytes");
                return malformed(&r, detail, detail_cap);
            }
            memcpy(pcr->data, data, data_len);
            pcr->len = data_len;
        } else if (cbor_skip(&r)) {
            return malformed(&r, detail, detail_cap);
        }
    }
    if (!(seen & LOCK))
        fail(&r, "no \"lock\"");
    if (!(seen & DATA))
        fail(&r, "no \"data\"");
    if (expect_end(&r))
        return malformed(&r, detail, detail_cap);
    return NSM_DECODE_OK;
}

enum nsm_decode_result nsm_decode_describe_nsm(const uint8_t *buf, size_t len, struct nsm_description *desc,
                                               char *detail, size_t detail_cap)
{
    struct cbor_reader r;
    cbor_reader_init(&r, buf, len);
    if (detail_cap > 0)
        detail[0] = '\0';
    enum nsm_decode_result res = envelope(&r, "DescribeNSM", detail, detail_cap);
    if (res != NSM_DECODE_OK)
        return res;
    int64_t pairs = read_map(&r, "DescribeNSM is not a map");
    if (pairs < 0)
        return malformed(&r, detail, detail_cap);
    enum { MAJOR = 1, MINOR = 2, PATCH = 4, MODULE = 8, MAX = 16, LOCKED = 32, DIGEST = 64, ALL = 127 };
    unsigned seen = 0;
    for (int64_t i = 0; i < pairs; i++) {
        const uint8_t *key, *s;
        size_t key_len, n;
        struct cbor_head h;
        if (cbor_read_string(&r, CBOR_TEXT, &key, &key_len))
            return malformed(&r, detail, detail_cap);
        int bad;
        if (text_is(key, key_len, "version_major"))
            bad = once(&r, &seen, MAJOR) || read_uint(&r, &desc->version_major, "version_major is not a uint");
        else if (text_is(key, key_len, "version_minor"))
            bad = once(&r, &seen, MINOR) || read_uint(&r, &desc->version_minor, "version_minor is not a uint");
        else if (text_is(key, key_len, "version_patch"))
            bad = once(&r, &seen, PATCH) || read_uint(&r, &desc->version_patch, "version_patch is not a uint");
        else if (text_is(key, key_len, "max_pcrs"))
            bad = once(&r, &seen, MAX) || read_uint(&r, &desc->max_pcrs, "max_pcrs is not a uint");
        else if (text_is(key, key_len, "module_id")) {
            bad = once(&r, &seen, MODULE) || cbor_read_string(&r, CBOR_TEXT, &s, &n);
            if (!bad)
                copy_printable(desc->module_id, sizeof desc->module_id, s, n);
        } else if (text_is(key, key_len, "digest")) {
            bad = once(&r, &seen, DIGEST) || cbor_read_string(&r, CBOR_TEXT, &s, &n);
            if (!bad)
                copy_printable(desc->digest, sizeof desc->digest, s, n);
        } else if (text_is(key, key_len, "locked_pcrs")) {
            bad = once(&r, &seen, LOCKED) || cbor_read_head(&r, &h);
            if (!bad && h.major != CBOR_ARRAY)
                bad = fail(&r, "locked_pcrs is not an array");
            if (!bad && h.arg > NSM_LOCKED_MAX)
                bad = fail(&r, "locked_pcrs has more than 64 elements");
            desc->locked_count = 0;
            for (uint64_t j = 0; !bad && j < h.arg; j++)
                bad = read_uint(&r, &desc->locked[desc->locked_count++], "locked_pcrs holds a non-uint");
        } else
            bad = cbor_skip(&r);
        if (bad)
            return malformed(&r, detail, detail_cap);
    }
    if (seen != ALL)
        fail(&r, "a key is missing (version_major, version_minor, version_patch, module_id, max_pcrs, locked_pcrs, "
                 "digest)");
    if (expect_end(&r))
        return malformed(&r, detail, detail_cap);
    return NSM_DECODE_OK;
}
