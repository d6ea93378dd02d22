/*
 * test_cbor.c: unit tests of cbor.c (run by `build OUTDIR test`). Plain C, no framework: each test is a function,
 * CHECK records a failure with its line and goes on, and the program prints one TAP line per test and exits 1 if
 * any failed. Every input is decoded from a heap block of exactly its size, so a read past the end would be a read
 * outside the block (visible to ASan or valgrind when the test is built with them).
 */
#include "cbor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures_in_test;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                                        \
            failures_in_test++;                                                                                        \
        }                                                                                                              \
    } while (0)

#define CHECK_STR(actual, expected)                                                                                    \
    do {                                                                                                               \
        const char *a_ = (actual), *e_ = (expected);                                                                   \
        if (a_ == NULL || strcmp(a_, e_) != 0) {                                                                       \
            printf("#   %s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #actual, a_ ? a_ : "(null)", e_); \
            failures_in_test++;                                                                                        \
        }                                                                                                              \
    } while (0)

#define CHECK_CONTAINS(actual, part)                                                                                   \
    do {                                                                                                               \
        const char *a_ = (actual), *p_ = (part);                                                                       \
        if (strstr(a_, p_) == NULL) {                                                                                  \
            printf("#   %s:%d: %s is \"%s\", expected it to contain \"%s\"\n", __FILE__, __LINE__, #actual, a_, p_);   \
            failures_in_test++;                                                                                        \
        }                                                                                                              \
    } while (0)

/* --- building inputs --- */

struct bytes {
    uint8_t b[1024];
    size_t n;
};

/* The 48 bytes of a test PCR: 0x01, 0x08, 0x0f, ... (i * 7 + 1) */
static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 7 + 1);
}

/*
 * Assembles bytes from space-separated tokens: "text" is a CBOR text string (header and bytes, length < 24),
 * pN is N raw bytes of pattern(), anything else is raw bytes in hex.
 */
static struct bytes assemble(const char *spec)
{
    struct bytes out = { .n = 0 };
    const char *p = spec;
    while (*p) {
        if (*p == ' ') {
            p++;
        } else if (*p == '"') {
            const char *end = strchr(p + 1, '"');
            size_t n = (size_t)(end - p - 1);
            out.b[out.n++] = (uint8_t)(0x60 + n);
            memcpy(out.b + out.n, p + 1, n);
            out.n += n;
            p = end + 1;
        } else if (*p == 'p') {
            char *end;
            size_t n = strtoul(p + 1, &end, 10);
            for (size_t i = 0; i < n; i++)
                out.b[out.n++] = pattern(i);
            p = end;
        } else {
            unsigned v;
            sscanf(p, "%2x", &v);
            out.b[out.n++] = (uint8_t)v;
            p += 2;
        }
    }
    return out;
}

static int hex_equals(const uint8_t *b, size_t n, const char *hex)
{
    char s[256];
    if (2 * n + 1 > sizeof s)
        return 0;
    for (size_t i = 0; i < n; i++)
        snprintf(s + 2 * i, 3, "%02x", b[i]);
    s[2 * n] = '\0';
    if (strcmp(s, hex) != 0) {
        printf("#   bytes are %s\n#   expected  %s\n", s, hex);
        return 0;
    }
    return 1;
}

/* Decodes the first n bytes of in from an exact heap copy. */
static enum nsm_decode_result decode_pcr(const uint8_t *in, size_t n, struct nsm_pcr *pcr, char *detail, size_t cap)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, in, n);
    enum nsm_decode_result res = nsm_decode_describe_pcr(copy, n, pcr, detail, cap);
    free(copy);
    return res;
}

static enum nsm_decode_result decode_nsm(const uint8_t *in, size_t n, struct nsm_description *d, char *detail,
                                         size_t cap)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, in, n);
    enum nsm_decode_result res = nsm_decode_describe_nsm(copy, n, d, detail, cap);
    free(copy);
    return res;
}

#define LOCKED_LOCK_FIRST "a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 58 30 p48"
#define UNLOCKED_DATA_FIRST "a1 \"DescribePCR\" a2 \"data\" 58 30 p48 \"lock\" f4"
#define ERROR_INVALID_INDEX "a1 \"Error\" 6c 496e76616c6964496e646578" /* "InvalidIndex" */
/* QEMU's DescribeNSM answer (hw/virtio/virtio-nsm.c), PCRs 0-4 locked */
#define DESCRIBE_NSM                                                                                                   \
    "a1 \"DescribeNSM\" a7 \"digest\" \"SHA384\" \"max_pcrs\" 18 20 \"module_id\" \"i-234-enc5678\" "                  \
    "6b 6c6f636b65645f70637273 85 00 01 02 03 04 "                                                                     \
    "6d 76657273696f6e5f6d616a6f72 01 6d 76657273696f6e5f6d696e6f72 00 6d 76657273696f6e5f7061746368 00"

/* --- requests --- */

static void test_request_index_0_is_the_21_bytes_of_the_spec(void)
{
    uint8_t b[NSM_REQUEST_MAX];
    size_t n = nsm_encode_describe_pcr(0, b, sizeof b);
    CHECK(n == 21);
    CHECK(hex_equals(b, n, "a16b4465736372696265504352a165696e64657800"));
}

static void test_request_indexes_below_24_change_only_the_last_byte(void)
{
    for (unsigned i = 1; i < 24; i++) {
        uint8_t b[64];
        size_t n = nsm_encode_describe_pcr((uint16_t)i, b, sizeof b);
        CHECK(n == 21);
        CHECK(memcmp(b, "\xa1\x6b" "DescribePCR" "\xa1\x65" "index", 20) == 0);
        CHECK(b[20] == i);
    }
    uint8_t b[64];
    size_t n = nsm_encode_describe_pcr(23, b, sizeof b);
    CHECK(hex_equals(b, n, "a16b4465736372696265504352a165696e64657817"));
}

static void test_request_indexes_from_24_take_a_longer_integer(void)
{
    uint8_t b[64];
    size_t n = nsm_encode_describe_pcr(31, b, sizeof b);
    CHECK(n == 22);
    CHECK(hex_equals(b, n, "a16b4465736372696265504352a165696e646578181f"));
    n = nsm_encode_describe_pcr(24, b, sizeof b);
    CHECK(hex_equals(b, n, "a16b4465736372696265504352a165696e6465781818"));
    n = nsm_encode_describe_pcr(255, b, sizeof b);
    CHECK(hex_equals(b, n, "a16b4465736372696265504352a165696e64657818ff"));
    n = nsm_encode_describe_pcr(256, b, sizeof b);
    CHECK(n == 23);
    CHECK(hex_equals(b, n, "a16b4465736372696265504352a165696e646578190100"));
    n = nsm_encode_describe_pcr(65535, b, sizeof b);
    CHECK(hex_equals(b, n, "a16b4465736372696265504352a165696e64657819ffff"));
}

static void test_request_buffer_too_small_gives_0_and_no_write_past_it(void)
{
    for (size_t cap = 0; cap < 22; cap++) {
        uint8_t b[32];
        memset(b, 0xee, sizeof b);
        CHECK(nsm_encode_describe_pcr(31, b, cap) == 0);
        for (size_t i = cap; i < sizeof b; i++)
            CHECK(b[i] == 0xee);
    }
    uint8_t b[22];
    CHECK(nsm_encode_describe_pcr(31, b, 22) == 22);
    CHECK(nsm_encode_describe_pcr(0, b, 20) == 0);
    CHECK(nsm_encode_describe_nsm(b, 11) == 0);
}

static void test_request_describe_nsm_is_a_bare_text_string(void)
{
    uint8_t b[16];
    size_t n = nsm_encode_describe_nsm(b, sizeof b);
    CHECK(n == 12);
    CHECK(hex_equals(b, n, "6b44657363726962654e534d"));
}

/* --- DescribePCR responses --- */

static void check_pattern(const struct nsm_pcr *pcr, size_t len)
{
    CHECK(pcr->len == len);
    for (size_t i = 0; i < len && i < pcr->len; i++)
        CHECK(pcr->data[i] == pattern(i));
}

static void test_decode_locked_48_byte_pcr(void)
{
    struct bytes in = assemble(LOCKED_LOCK_FIRST);
    CHECK(in.n == 75); /* the size observed through /dev/nsm (spec §10.3) */
    CHECK(hex_equals(in.b, 31, "a16b4465736372696265504352a2646c6f636bf56464617461583001080f16"));
    struct nsm_pcr pcr;
    char detail[128];
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_OK);
    CHECK(pcr.locked);
    check_pattern(&pcr, 48);
}

static void test_decode_keys_in_the_other_order(void)
{
    /* QEMU's own order: "data", then "lock" */
    struct bytes in = assemble(UNLOCKED_DATA_FIRST);
    CHECK(in.n == 75);
    struct nsm_pcr pcr = { .locked = true };
    char detail[128];
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_OK);
    CHECK(!pcr.locked);
    check_pattern(&pcr, 48);
}

static void test_decode_other_digest_sizes(void)
{
    struct nsm_pcr pcr;
    char detail[128];
    struct bytes in = assemble("a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 58 20 p32");
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_OK);
    check_pattern(&pcr, 32);
    in = assemble("a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 58 40 p64");
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_OK);
    check_pattern(&pcr, 64);
    in = assemble("a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 58 2f p47");
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_MALFORMED);
    CHECK_CONTAINS(detail, "not 32, 48 or 64 bytes");
    /* a non-minimal length header is still well-formed */
    in = assemble("a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 59 0030 p48");
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_OK);
    check_pattern(&pcr, 48);
}

static void test_decode_skips_unknown_keys(void)
{
    struct bytes in = assemble("a1 \"DescribePCR\" a4 \"x\" 82 01 a1 \"a\" 41 00 \"lock\" f5 \"tag\" c1 1a 00000001 "
                               "\"data\" 58 30 p48");
    struct nsm_pcr pcr;
    char detail[128];
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_OK);
    CHECK(pcr.locked);
    check_pattern(&pcr, 48);
}

static void test_decode_error_response(void)
{
    struct bytes in = assemble(ERROR_INVALID_INDEX);
    struct nsm_pcr pcr;
    char detail[128];
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_ERROR_RESPONSE);
    CHECK_STR(detail, "InvalidIndex");
    struct nsm_description d;
    CHECK(decode_nsm(in.b, in.n, &d, detail, sizeof detail) == NSM_DECODE_ERROR_RESPONSE);
    CHECK_STR(detail, "InvalidIndex");
}

static void test_decode_error_name_is_made_printable_and_cut(void)
{
    struct bytes in = assemble("a1 \"Error\" 64 41 0a ff 42");
    struct nsm_pcr pcr;
    char detail[8];
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_ERROR_RESPONSE);
    CHECK_STR(detail, "A??B");
    in = assemble("a1 \"Error\" \"InvalidOperation\"");
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_ERROR_RESPONSE);
    CHECK_STR(detail, "Invalid");
}

/* Every proper prefix of a valid response is rejected, from a block of exactly that size. */
static void check_every_truncation(const char *spec, int describe_nsm)
{
    struct bytes in = assemble(spec);
    for (size_t n = 0; n < in.n; n++) {
        char detail[160];
        struct nsm_pcr pcr;
        struct nsm_description d;
        enum nsm_decode_result res = describe_nsm ? decode_nsm(in.b, n, &d, detail, sizeof detail)
                                                  : decode_pcr(in.b, n, &pcr, detail, sizeof detail);
        if (res != NSM_DECODE_MALFORMED)
            printf("#   prefix of %zu bytes: result %d\n", n, (int)res);
        CHECK(res == NSM_DECODE_MALFORMED);
        CHECK_CONTAINS(detail, "truncated");
    }
}

static void test_decode_every_truncation_is_rejected(void)
{
    check_every_truncation(LOCKED_LOCK_FIRST, 0);
    check_every_truncation(UNLOCKED_DATA_FIRST, 0);
    check_every_truncation(ERROR_INVALID_INDEX, 0);
    check_every_truncation(DESCRIBE_NSM, 1);
}

struct malformed_case {
    const char *spec;
    const char *detail;
};

static void test_decode_malformed_inputs(void)
{
    static const struct malformed_case cases[] = {
        { "", "truncated" },
        { "80", "expected a map of one entry" },
        { "\"DescribePCR\"", "expected a map of one entry" },
        { "a2 \"DescribePCR\" a0 \"x\" 00", "expected a map of one entry" },
        { "a0", "expected a map of one entry" },
        { "bf \"DescribePCR\" a0 ff", "indefinite length" },
        { "a1 \"DescribePCR\" bf \"lock\" f5 \"data\" 58 30 p48 ff", "indefinite length" },
        { "a1 7f \"Describe\" \"PCR\" ff a0", "indefinite length" },
        { "a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 5f 58 30 p48 ff", "indefinite length" },
        { "bc", "reserved" },
        { "a1 \"DescribePCR\" a2 \"lock\" fc \"data\" 58 30 p48", "reserved" },
        { "a1 01 a0", "expected a text string" },
        { "a1 \"GetRandom\" a1 \"random\" 40", "a \"GetRandom\" response to DescribePCR" },
        { "a1 \"Error\" 01", "expected a text string" },
        { "a1 \"Error\" \"InvalidIndex\" 00", "bytes after the response" },
        { "a1 \"DescribePCR\" 82 01 02", "DescribePCR is not a map" },
        { "a1 \"DescribePCR\" a2 01 f5 \"data\" 58 30 p48", "expected a text string" },
        { "a1 \"DescribePCR\" a2 \"lock\" 01 \"data\" 58 30 p48", "\"lock\" is not a boolean" },
        { "a1 \"DescribePCR\" a2 \"lock\" f6 \"data\" 58 30 p48", "\"lock\" is not a boolean" },
        { "a1 \"DescribePCR\" a2 \"lock\" f9 0015 \"data\" 58 30 p48", "\"lock\" is not a boolean" },
        { "a1 \"DescribePCR\" a2 \"lock\" f8 15 \"data\" 58 30 p48", "two-byte simple value" },
        { "a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 78 30 p48", "expected a byte string" },
        { "a1 \"DescribePCR\" a1 \"data\" 58 30 p48", "no \"lock\"" },
        { "a1 \"DescribePCR\" a1 \"lock\" f5", "no \"data\"" },
        { "a1 \"DescribePCR\" a3 \"lock\" f5 \"data\" 58 30 p48 \"lock\" f4", "a key appears twice" },
        { "a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 58 30 p48 00", "bytes after the response" },
        { "a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 5b ffffffffffffffff p48", "truncated" },
        { "a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 5b 8000000000000030 p48", "truncated" },
        { "a1 \"DescribePCR\" bb ffffffffffffffff \"lock\" f5", "truncated" },
        { "a1 \"DescribePCR\" a3 \"x\" 9b ffffffffffffffff \"lock\" f5 \"data\" 58 30 p48", "truncated" },
        { "a1 \"DescribePCR\" a3 \"x\" bb 7fffffffffffffff \"lock\" f5 \"data\" 58 30 p48", "truncated" },
        { "a1 7b ffffffffffffffff a0", "truncated" },
        { "a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 18", "truncated" },
        { "a1 \"DescribePCR\" a2 \"lock\" f5 \"data\" 1b 0000", "truncated" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bytes in = assemble(cases[i].spec);
        struct nsm_pcr pcr;
        char detail[160];
        enum nsm_decode_result res = decode_pcr(in.b, in.n, &pcr, detail, sizeof detail);
        if (res != NSM_DECODE_MALFORMED || strstr(detail, cases[i].detail) == NULL)
            printf("#   case %zu (%s): result %d, detail \"%s\"\n", i, cases[i].spec, (int)res, detail);
        CHECK(res == NSM_DECODE_MALFORMED);
        CHECK_CONTAINS(detail, cases[i].detail);
        CHECK_CONTAINS(detail, "malformed response: ");
    }
}

static void test_decode_nesting_is_bounded(void)
{
    /* an unknown key whose value nests 17 arrays: the skip stops at 16 */
    char spec[512] = "a1 \"DescribePCR\" a3 \"x\" ";
    for (int i = 0; i < 17; i++)
        strcat(spec, "81 ");
    strcat(spec, "00 \"lock\" f5 \"data\" 58 30 p48");
    struct bytes in = assemble(spec);
    struct nsm_pcr pcr;
    char detail[160];
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_MALFORMED);
    CHECK_CONTAINS(detail, "nested too deep");
    /* 16 are fine */
    strcpy(spec, "a1 \"DescribePCR\" a3 \"x\" ");
    for (int i = 0; i < 16; i++)
        strcat(spec, "81 ");
    strcat(spec, "00 \"lock\" f5 \"data\" 58 30 p48");
    in = assemble(spec);
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_OK);
    /* tags nest too */
    strcpy(spec, "a1 \"DescribePCR\" a3 \"x\" ");
    for (int i = 0; i < 17; i++)
        strcat(spec, "c1 ");
    strcat(spec, "00 \"lock\" f5 \"data\" 58 30 p48");
    in = assemble(spec);
    CHECK(decode_pcr(in.b, in.n, &pcr, detail, sizeof detail) == NSM_DECODE_MALFORMED);
}

/* Every one-byte change of a valid response decodes to something or is rejected; never reads out of its block. */
static void test_decode_every_one_byte_corruption_stays_in_bounds(void)
{
    const char *specs[] = { LOCKED_LOCK_FIRST, UNLOCKED_DATA_FIRST, ERROR_INVALID_INDEX };
    size_t ok = 0, rejected = 0;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        struct bytes in = assemble(specs[s]);
        for (size_t pos = 0; pos < in.n; pos++) {
            uint8_t saved = in.b[pos];
            for (unsigned v = 0; v < 256; v++) {
                in.b[pos] = (uint8_t)v;
                struct nsm_pcr pcr;
                char detail[160];
                enum nsm_decode_result res = decode_pcr(in.b, in.n, &pcr, detail, sizeof detail);
                CHECK(strlen(detail) < sizeof detail);
                if (res == NSM_DECODE_OK) {
                    ok++;
                    CHECK(pcr.len == 48);
                } else {
                    rejected++;
                }
            }
            in.b[pos] = saved;
        }
    }
    printf("#   %zu decoded, %zu rejected\n", ok, rejected);
    CHECK(ok > 0 && rejected > 0);
}

/* --- DescribeNSM --- */

static void test_decode_describe_nsm(void)
{
    struct bytes in = assemble(DESCRIBE_NSM);
    struct nsm_description d;
    char detail[160];
    CHECK(decode_nsm(in.b, in.n, &d, detail, sizeof detail) == NSM_DECODE_OK);
    CHECK_STR(d.module_id, "i-234-enc5678");
    CHECK_STR(d.digest, "SHA384");
    CHECK(d.version_major == 1 && d.version_minor == 0 && d.version_patch == 0);
    CHECK(d.max_pcrs == 32);
    CHECK(d.locked_count == 5);
    for (size_t i = 0; i < d.locked_count; i++)
        CHECK(d.locked[i] == i);
}

static void test_decode_describe_nsm_rejects_missing_keys_and_wrong_types(void)
{
    struct nsm_description d;
    char detail[200];
    struct bytes in = assemble("a1 \"DescribeNSM\" a1 \"digest\" \"SHA384\"");
    CHECK(decode_nsm(in.b, in.n, &d, detail, sizeof detail) == NSM_DECODE_MALFORMED);
    CHECK_CONTAINS(detail, "a key is missing");
    in = assemble("a1 \"DescribeNSM\" a1 \"max_pcrs\" 20");
    CHECK(decode_nsm(in.b, in.n, &d, detail, sizeof detail) == NSM_DECODE_MALFORMED);
    CHECK_CONTAINS(detail, "max_pcrs is not a uint");
    in = assemble("a1 \"DescribeNSM\" a1 6b 6c6f636b65645f70637273 a0");
    CHECK(decode_nsm(in.b, in.n, &d, detail, sizeof detail) == NSM_DECODE_MALFORMED);
    CHECK_CONTAINS(detail, "locked_pcrs is not an array");
    in = assemble("a1 \"DescribeNSM\" a1 6b 6c6f636b65645f70637273 98 41");
    CHECK(decode_nsm(in.b, in.n, &d, detail, sizeof detail) == NSM_DECODE_MALFORMED);
    CHECK_CONTAINS(detail, "more than 64");
    in = assemble("a1 \"DescribePCR\" a0");
    CHECK(decode_nsm(in.b, in.n, &d, detail, sizeof detail) == NSM_DECODE_MALFORMED);
    CHECK_CONTAINS(detail, "a \"DescribePCR\" response to DescribeNSM");
}

/* --- the reader --- */

static void test_reader_argument_sizes(void)
{
    struct bytes in = assemble("17 18 18 19 0100 1a 00010000 1b 0000000100000000 38 ff f4 f5 f9 3c00 fb 3ff0000000000000");
    uint8_t *copy = malloc(in.n);
    memcpy(copy, in.b, in.n);
    struct cbor_reader r;
    cbor_reader_init(&r, copy, in.n);
    struct cbor_head h;
    const uint64_t want[][3] = {
        { 0, 23, 23 },
        { 0, 24, 24 },
        { 0, 25, 256 },
        { 0, 26, 65536 },
        { 0, 27, 4294967296u },
        { 1, 24, 255 },
        { 7, 20, 20 },
        { 7, 21, 21 },
        { 7, 25, 0x3c00 },
        { 7, 27, 0x3ff0000000000000u },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK(cbor_read_head(&r, &h) == 0);
        CHECK(h.major == want[i][0] && h.ai == want[i][1] && h.arg == want[i][2]);
    }
    CHECK(r.pos == in.n);
    CHECK(cbor_read_head(&r, &h) == -1);
    CHECK_CONTAINS(r.err, "truncated");
    free(copy);
}

static void test_reader_string_and_skip(void)
{
    struct bytes in = assemble("63 616263 43 010203 a2 01 82 02 03 \"k\" c2 41 ff 00");
    uint8_t *copy = malloc(in.n);
    memcpy(copy, in.b, in.n);
    struct cbor_reader r;
    cbor_reader_init(&r, copy, in.n);
    const uint8_t *s;
    size_t n;
    CHECK(cbor_read_string(&r, CBOR_TEXT, &s, &n) == 0 && n == 3 && memcmp(s, "abc", 3) == 0);
    CHECK(cbor_read_string(&r, CBOR_TEXT, &s, &n) == -1);
    CHECK_CONTAINS(r.err, "expected a text string");
    cbor_reader_init(&r, copy, in.n);
    CHECK(cbor_skip(&r) == 0 && r.pos == 4);
    CHECK(cbor_read_string(&r, CBOR_BYTES, &s, &n) == 0 && n == 3 && s[2] == 3);
    CHECK(cbor_skip(&r) == 0);
    CHECK(r.pos == in.n - 1);
    CHECK(cbor_skip(&r) == 0 && r.pos == in.n);
    CHECK(cbor_skip(&r) == -1);
    free(copy);
}

int main(void)
{
    static const struct {
        const char *name;
        void (*run)(void);
    } tests[] = {
#define T(f) { #f, f }
        T(test_request_index_0_is_the_21_bytes_of_the_spec),
        T(test_request_indexes_below_24_change_only_the_last_byte),
        T(test_request_indexes_from_24_take_a_longer_integer),
        T(test_request_buffer_too_small_gives_0_and_no_write_past_it),
        T(test_request_describe_nsm_is_a_bare_text_string),
        T(test_decode_locked_48_byte_pcr),
        T(test_decode_keys_in_the_other_order),
        T(test_decode_other_digest_sizes),
        T(test_decode_skips_unknown_keys),
        T(test_decode_error_response),
        T(test_decode_error_name_is_made_printable_and_cut),
        T(test_decode_every_truncation_is_rejected),
        T(test_decode_malformed_inputs),
        T(test_decode_nesting_is_bounded),
        T(test_decode_every_one_byte_corruption_stays_in_bounds),
        T(test_decode_describe_nsm),
        T(test_decode_describe_nsm_rejects_missing_keys_and_wrong_types),
        T(test_reader_argument_sizes),
        T(test_reader_string_and_skip),
#undef T
    };
    size_t count = sizeof tests / sizeof tests[0], failed = 0;
    printf("1..%zu\n", count);
    for (size_t i = 0; i < count; i++) {
        failures_in_test = 0;
        tests[i].run();
        printf("%s %zu - %s\n", failures_in_test ? "not ok" : "ok", i + 1, tests[i].name);
        if (failures_in_test)
            failed++;
    }
    printf("# %zu tests, %zu failed\n", count, failed);
    return failed ? 1 : 0;
}
