/*
 * nsm-pcr.c: prints PCRs read from the Nitro Secure Module through /dev/nsm, from inside an enclave (or QEMU's
 * nitro-enclave machine, spec local-boot.md §10.3).
 *
 *   nsm-pcr [--describe] [INDEX...]
 *
 * For each INDEX (default 0 1 2) sends {"DescribePCR":{"index":INDEX}} with the raw ioctl of Linux's NSM driver
 * (drivers/misc/nsm.c, CONFIG_NSM, Linux >= 6.8) and prints
 *
 *   nsm-pcr: PCR<INDEX> <hex> locked=<0|1>
 *
 * --describe first sends "DescribeNSM" and prints one line with module_id, digest, version, max_pcrs and the
 * locked PCRs; with --describe and no INDEX, only that line. Any failure is one line on stderr,
 * "nsm-pcr: <what failed>: <strerror or detail>", and exit status 1; a usage error is exit status 2.
 */
#define _GNU_SOURCE /* O_CLOEXEC and ioctl's declaration under -std=c11 */

#include "cbor.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define NSM_DEVICE "/dev/nsm"

/*
 * The raw message of include/uapi/linux/nsm.h: two (address, length) pairs of u64, 32 bytes on every architecture
 * (the brief's struct iovec pair has the same layout on 64-bit). Declared here because musl-gcc does not see the
 * kernel's headers. On return the driver sets response.len to the length of the response (cut to the buffer).
 */
struct nsm_iovec {
    uint64_t addr;
    uint64_t len;
};
struct nsm_raw {
    struct nsm_iovec request;
    struct nsm_iovec response;
};
_Static_assert(sizeof(struct nsm_raw) == 32, "struct nsm_raw is 32 bytes (linux/nsm.h)");

/* NSM_IOCTL_RAW = _IOWR(NSM_MAGIC 0x0A, 0, struct nsm_raw) */
#define NSM_IOCTL_RAW 0xC0200A00u
_Static_assert(_IOWR(0x0A, 0, struct nsm_raw) == NSM_IOCTL_RAW, "NSM_IOCTL_RAW is 0xC0200A00");

static int nsm_fd = -1;
static uint8_t response[NSM_RESPONSE_MAX]; /* exactly 0x3000 bytes: QEMU's device insists (spec §10.2) */

static void die(const char *what, const char *detail)
{
    fflush(stdout);
    fprintf(stderr, "nsm-pcr: %s: %s\n", what, detail);
    exit(1);
}

/* Sends request (len bytes) and returns the response's length in the static buffer. what names the request. */
static size_t nsm_call(const char *what, const uint8_t *request, size_t len)
{
    if (nsm_fd < 0) {
        nsm_fd = open(NSM_DEVICE, O_RDWR | O_CLOEXEC);
        if (nsm_fd < 0)
            die("cannot open " NSM_DEVICE, strerror(errno));
    }
    struct nsm_raw raw = {
        .request = { (uint64_t)(uintptr_t)request, len },
        .response = { (uint64_t)(uintptr_t)response, sizeof response },
    };
    int rc;
    do
        rc = ioctl(nsm_fd, NSM_IOCTL_RAW, &raw);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s: ioctl NSM_IOCTL_RAW on " NSM_DEVICE, what);
        die(msg, strerror(errno));
    }
    if (raw.response.len > sizeof response) /* the driver cuts it to the buffer; never trust more */
        raw.response.len = sizeof response;
    return (size_t)raw.response.len;
}

/* Reports a failed decode and exits. */
static void decode_failed(const char *what, enum nsm_decode_result res, const char *detail)
{
    char msg[320];
    if (res == NSM_DECODE_ERROR_RESPONSE)
        snprintf(msg, sizeof msg, "the NSM answered Error \"%s\"", detail);
    else
        snprintf(msg, sizeof msg, "%s", detail);
    die(what, msg);
}

static void describe_nsm(void)
{
    uint8_t request[16];
    size_t len = nsm_encode_describe_nsm(request, sizeof request);
    size_t n = nsm_call("DescribeNSM", request, len);
    struct nsm_description desc;
    char detail[256];
    enum nsm_decode_result res = nsm_decode_describe_nsm(response, n, &desc, detail, sizeof detail);
    if (res != NSM_DECODE_OK)
        decode_failed("DescribeNSM", res, detail);
    printf("nsm-pcr: NSM module_id=%s digest=%s version=%llu.%llu.%llu max_pcrs=%llu locked_pcrs=", desc.module_id,
           desc.digest, (unsigned long long)desc.version_major, (unsigned long long)desc.version_minor,
           (unsigned long long)desc.version_patch, (unsigned long long)desc.max_pcrs);
    for (size_t i = 0; i < desc.locked_count; i++)
        printf("%s%llu", i ? "," : "", (unsigned long long)desc.locked[i]);
    printf("%s\n", desc.locked_count ? "" : "none");
}

static void describe_pcr(uint16_t index)
{
    char what[48];
    snprintf(what, sizeof what, "DescribePCR %u", (unsigned)index);
    uint8_t request[32];
    size_t len = nsm_encode_describe_pcr(index, request, sizeof request);
    size_t n = nsm_call(what, request, len);
    struct nsm_pcr pcr;
    char detail[256];
    enum nsm_decode_result res = nsm_decode_describe_pcr(response, n, &pcr, detail, sizeof detail);
    if (res != NSM_DECODE_OK)
        decode_failed(what, res, detail);
    char hex[2 * NSM_PCR_MAX + 1];
    for (size_t i = 0; i < pcr.len; i++)
        snprintf(hex + 2 * i, 3, "%02x", pcr.data[i]);
    hex[2 * pcr.len] = '\0';
    printf("nsm-pcr: PCR%u %s locked=%d\n", (unsigned)index, hex, pcr.locked ? 1 : 0);
}

/* Without a complaint (--help): the usage on stdout, exit 0; else both on stderr, exit 2. */
static void usage(const char *complaint)
{
    FILE *f = complaint ? stderr : stdout;
    if (complaint != NULL)
        fprintf(f, "nsm-pcr: %s\n", complaint);
    fprintf(f, "usage: nsm-pcr [--describe] [INDEX...]   (INDEX 0-65535; default 0 1 2)\n");
    exit(complaint ? 2 : 0);
}

/* A decimal PCR index, 0-65535 (nsm-api's u16; the NSM itself answers InvalidIndex from max_pcrs, 32, on). */
static int parse_index(const char *s, uint16_t *index)
{
    unsigned long v = 0;
    if (*s == '\0' || strlen(s) > 5)
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 0xffff)
        return -1;
    *index = (uint16_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    static uint16_t indexes[256];
    size_t count = 0;
    int describe = 0, options = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options && strcmp(a, "--") == 0) {
            options = 0;
        } else if (options && strcmp(a, "--describe") == 0) {
            describe = 1;
        } else if (options && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            usage(NULL);
        } else {
            uint16_t index;
            if (parse_index(a, &index)) {
                char msg[96];
                snprintf(msg, sizeof msg, "not a PCR index: '%.40s'", a);
                usage(msg);
            }
            if (count == sizeof indexes / sizeof indexes[0])
                usage("at most 256 indexes");
            indexes[count++] = index;
        }
    }
    if (count == 0 && !describe) {
        indexes[count++] = 0;
        indexes[count++] = 1;
        indexes[count++] = 2;
    }
    if (describe)
        describe_nsm();
    for (size_t i = 0; i < count; i++) {
        describe_pcr(indexes[i]);
        fflush(stdout); /* each line as soon as it is known, before a later failure's line on stderr */
    }
    if (fflush(stdout) != 0 || ferror(stdout))
        die("cannot write to stdout", strerror(errno));
    if (nsm_fd >= 0)
        close(nsm_fd);
    return 0;
}
