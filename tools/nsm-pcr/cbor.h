/*
 * cbor.h: the CBOR (RFC 8949) the Nitro Secure Module speaks, and only that much: the bytes of the DescribePCR and
 * DescribeNSM requests, and a bounds-checked reader for their responses (spec local-boot.md §10.2, §10.3; AWS's
 * nsm-api serialises its Request and Response enums with serde_cbor: a unit variant is a bare text string, any
 * other variant a map of one entry, variant name -> fields).
 *
 * The reader handles definite lengths only (the NSM, AWS's and QEMU's, never sends indefinite ones): map, array,
 * text and byte string headers with 0-8 byte arguments, tags, simple values and floats. Every length is checked
 * against the bytes that are left before anything is read, so no input, however truncated or hostile, makes it read
 * outside [buf, buf + len). No side effects and no allocation: test_cbor.c tests it on a build machine.
 */
#ifndef NSM_PCR_CBOR_H
#define NSM_PCR_CBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The NSM's limits (QEMU hw/virtio/virtio-nsm.c, Linux drivers/misc/nsm.c): a request of at most 0x1000 bytes,
 * a response buffer of exactly 0x3000 bytes. */
#define NSM_REQUEST_MAX 0x1000
#define NSM_RESPONSE_MAX 0x3000

/* The largest PCR the reader accepts: SHA-512 (the NSM's digest is SHA384, 48 bytes; SHA256 and SHA512 exist in
 * nsm-api's Digest). */
#define NSM_PCR_MAX 64

/* --- requests --- */

/*
 * Writes the CBOR of {"DescribePCR":{"index":index}} into buf (cap bytes): 21 bytes for index < 24, 22 below 256,
 * 23 above. The index is a CBOR unsigned integer in its shortest form (QEMU accepts only a one-byte width, so
 * indexes of 256 and more get an Error from it; nsm-api's index is a u16). Returns the length, or 0 if cap is too
 * small.
 */
size_t nsm_encode_describe_pcr(uint16_t index, uint8_t *buf, size_t cap);

/* Writes the CBOR of "DescribeNSM" (a bare text string: a unit variant) into buf. Returns 12, or 0 if cap < 12. */
size_t nsm_encode_describe_nsm(uint8_t *buf, size_t cap);

/* --- the reader --- */

/* A cursor over len bytes. err is NULL until the first failure, then says what was wrong (a static string). */
struct cbor_reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    const char *err;
};

/* One item's header: major type (0-7), additional information (0-27) and argument (the value of an integer, the
 * length of a string, the number of elements or pairs, the tag number, the simple value or the float's bits). */
struct cbor_head {
    unsigned major;
    unsigned ai;
    uint64_t arg;
};

#define CBOR_UINT 0
#define CBOR_NEGINT 1
#define CBOR_BYTES 2
#define CBOR_TEXT 3
#define CBOR_ARRAY 4
#define CBOR_MAP 5
#define CBOR_TAG 6
#define CBOR_SIMPLE 7 /* false 20, true 21, null 22, undefined 23; floats (ai 25-27) */

void cbor_reader_init(struct cbor_reader *r, const uint8_t *buf, size_t len);

/*
 * Reads one header. For byte and text strings it also checks that the string's bytes are there (they are not
 * consumed: cbor_read_string does that). Rejects: truncation, reserved additional information (28-30), indefinite
 * lengths (31), two-byte simple values below 32 (not well-formed, RFC 8949 §3.3). Returns 0, or -1 with r->err set.
 */
int cbor_read_head(struct cbor_reader *r, struct cbor_head *h);

/* Reads a byte (major 2) or text (major 3) string: *data points into the input, *n is its length. Returns 0 or -1. */
int cbor_read_string(struct cbor_reader *r, unsigned major, const uint8_t **data, size_t *n);

/* Skips one whole item (its elements too), nested at most 16 deep. Returns 0 or -1. */
int cbor_skip(struct cbor_reader *r);

/* --- responses --- */

enum nsm_decode_result {
    NSM_DECODE_OK = 0,
    NSM_DECODE_ERROR_RESPONSE = 1, /* {"Error":"..."}: detail holds the error's name */
    NSM_DECODE_MALFORMED = 2,      /* not the response expected: detail says what is wrong */
};

struct nsm_pcr {
    bool locked;
    size_t len; /* 32, 48 or 64 */
    uint8_t data[NSM_PCR_MAX];
};

/*
 * Decodes the response to DescribePCR, {"DescribePCR":{"lock":bool,"data":bstr}}, keys in any order (QEMU sends
 * "data" first), unknown keys skipped, each known key exactly once, nothing after the map. detail (detail_cap
 * bytes, NUL-terminated, printable ASCII only) receives the NSM's error name or what was malformed.
 */
enum nsm_decode_result nsm_decode_describe_pcr(const uint8_t *buf, size_t len, struct nsm_pcr *pcr, char *detail,
                                               size_t detail_cap);

#define NSM_LOCKED_MAX 64

struct nsm_description {
    uint64_t version_major, version_minor, version_patch;
    uint64_t max_pcrs;
    char module_id[128]; /* printable ASCII; other bytes become '?', longer ids are cut */
    char digest[16];     /* "SHA384" */
    size_t locked_count;
    uint64_t locked[NSM_LOCKED_MAX];
};

/*
 * Decodes the response to DescribeNSM: {"DescribeNSM":{"version_major":u,"version_minor":u,"version_patch":u,
 * "module_id":text,"max_pcrs":u,"locked_pcrs":[u...],"digest":text}}, keys in any order, all seven required,
 * unknown keys skipped. Same results and detail as nsm_decode_describe_pcr.
 */
enum nsm_decode_result nsm_decode_describe_nsm(const uint8_t *buf, size_t len, struct nsm_description *desc,
                                               char *detail, size_t detail_cap);

#endif
