/*
 * config.c: reading and parsing for the enclave init (see config.h). No mounts, no processes, no global state.
 */
#define _GNU_SOURCE /* strnlen, NAME_MAX/PATH_MAX, open flags under -std=c11 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* runc libcontainer/user: USER ids must lie in [minID, maxID] = [0, 1<<31 - 1]. */
#define MAX_ID 2147483647UL

int read_file(const char *path, char **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;

    size_t cap = 4096, used = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        return ENOMEM;
    }
    for (;;) {
        if (cap - used < 2) {
            /* Grow by doubling: the files are small, but an image may carry a long env (the tests use 1 MiB lines). */
            if (cap > SIZE_MAX / 2) {
                free(buf);
                close(fd);
                return ENOMEM;
            }
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                close(fd);
                return ENOMEM;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + used, cap - used - 1);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            int error = errno;
            free(buf);
            close(fd);
            return error;
        }
        if (got == 0)
            break;
        used += (size_t)got;
    }
    close(fd);
    buf[used] = '\0';
    *data = buf;
    *len = used;
    return 0;
}

int split_lines(char *data, size_t len, struct strlist *out)
{
    size_t count = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n')
            count++;
    }
    if (len > 0 && data[len - 1] != '\n')
        count++; /* a last line without its '\n' */

    char **v = calloc(count + 1, sizeof *v);
    if (v == NULL)
        return ENOMEM;
    size_t n = 0;
    char *start = data;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            data[i] = '\0';
            v[n++] = start;
            start = data + i + 1;
        }
    }
    if (start < data + len)
        v[n++] = start; /* data[len] is the buffer's NUL (read_file), so this element is terminated */
    v[n] = NULL;
    out->v = v;
    out->n = n;
    return 0;
}

void strlist_free(struct strlist *list)
{
    free(list->v);
    list->v = NULL;
    list->n = 0;
}

/* A byte range of a line: one ':'-separated field of /etc/passwd or /etc/group. */
struct span {
    const char *p;
    size_t len;
};

static int span_is(struct span s, const char *text)
{
    return strlen(text) == s.len && memcmp(s.p, text, s.len) == 0;
}

static int span_copy(struct span s, char *dst, size_t dstlen)
{
    if (s.len >= dstlen)
        return 0;
    memcpy(dst, s.p, s.len);
    dst[s.len] = '\0';
    return 1;
}

static int parse_id_span(struct span s, unsigned long *id)
{
    if (s.len == 0)
        return 0;
    unsigned long value = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return 0;
        value = value * 10 + (unsigned long)(s.p[i] - '0');
        if (value > MAX_ID)
            return 0;
    }
    *id = value;
    return 1;
}

int parse_id(const char *text, unsigned long *id)
{
    struct span s = { text, strlen(text) };
    return parse_id_span(s, id);
}

int parse_user_spec(const char *spec, struct user_spec *out)
{
    memset(out, 0, sizeof *out);
    const char *colon = strchr(spec, ':');
    struct span user = { spec, colon ? (size_t)(colon - spec) : strlen(spec) };
    struct span group = { colon ? colon + 1 : "", colon ? strlen(colon + 1) : 0 };

    if (group.len > 0 && memchr(group.p, ':', group.len) != NULL)
        return EINVAL; /* "a:b:c" */
    if (user.len == 0 && group.len > 0)
        return EINVAL; /* ":group": Docker has no user to take the group's members from */
    if (!span_copy(user, out->user, sizeof out->user) || !span_copy(group, out->group, sizeof out->group))
        return EINVAL;

    /* An empty spec is Docker's default user (runc: "" matches uid 0 of the defaults). */
    out->user_is_id = user.len == 0 ? 1 : parse_id_span(user, &out->uid);
    if (user.len == 0)
        out->uid = 0;
    out->has_group = group.len > 0;
    if (out->has_group)
        out->group_is_id = parse_id_span(group, &out->gid);
    return 0;
}

/*
 * Walks a passwd/group text line by line: sets *line to the next line (without its '\n') and returns 1, or returns
 * 0 at the end. Lines that no libc parser accepts as entries are left out here: empty lines, '#' comments (glibc
 * nss_files skips them) and the NIS compat "+"/"-" lines.
 */
static int next_entry(const char **cursor, struct span *line)
{
    while (**cursor != '\0') {
        const char *start = *cursor;
        const char *end = strchr(start, '\n');
        if (end == NULL)
            end = start + strlen(start);
        *cursor = *end == '\n' ? end + 1 : end;
        if (end == start || *start == '#' || *start == '+' || *start == '-')
            continue;
        line->p = start;
        line->len = (size_t)(end - start);
        return 1;
    }
    return 0;
}

/* Splits a line at ':' into at most max fields; returns how many fields the line has (which may be more). */
static size_t split_fields(struct span line, struct span *f, size_t max)
{
    size_t n = 0;
    const char *p = line.p, *end = line.p + line.len;
    for (;;) {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        const char *stop = colon ? colon : end;
        if (n < max) {
            f[n].p = p;
            f[n].len = (size_t)(stop - p);
        }
        n++;
        if (colon == NULL)
            return n;
        p = colon + 1;
    }
}

int passwd_find(const char *text, const char *name, int by_uid, unsigned long uid, struct passwd_entry *out)
{
    if (text == NULL)
        return 0;
    struct span line;
    const char *cursor = text;
    while (next_entry(&cursor, &line)) {
        struct span f[7]; /* name, password, uid, gid, gecos, home, shell (passwd(5)) */
        size_t n = split_fields(line, f, 7);
        unsigned long entry_uid, entry_gid;
        if (n < 4 || !parse_id_span(f[2], &entry_uid) || !parse_id_span(f[3], &entry_gid))
            continue;
        if (by_uid ? entry_uid != uid : !span_is(f[0], name))
            continue;
        if (!span_copy(f[0], out->name, sizeof out->name))
            continue;
        out->uid = entry_uid;
        out->gid = entry_gid;
        if (n < 6 || f[5].len == 0 || !span_copy(f[5], out->home, sizeof out->home))
            strcpy(out->home, "/"); /* runc's default Home when the entry has none */
        return 1;
    }
    return 0;
}

int group_find(const char *text, const char *name, int by_gid, unsigned long gid, unsigned long *out_gid)
{
    if (text == NULL)
        return 0;
    struct span line;
    const char *cursor = text;
    while (next_entry(&cursor, &line)) {
        struct span f[4]; /* name, password, gid, members (group(5)) */
        size_t n = split_fields(line, f, 4);
        unsigned long entry_gid;
        if (n < 3 || !parse_id_span(f[2], &entry_gid))
            continue;
        if (by_gid ? entry_gid != gid : !span_is(f[0], name))
            continue;
        *out_gid = entry_gid;
        return 1;
    }
    return 0;
}

/* Appends gid to the heap array unless it is there already. */
static int add_gid(unsigned long **gids, size_t *n, unsigned long gid)
{
    for (size_t i = 0; i < *n; i++) {
        if ((*gids)[i] == gid)
            return 0;
    }
    if (*n >= MAX_GROUPS)
        return E2BIG;
    unsigned long *bigger = realloc(*gids, (*n + 1) * sizeof **gids);
    if (bigger == NULL)
        return ENOMEM;
    *gids = bigger;
    (*gids)[(*n)++] = gid;
    return 0;
}

int group_memberships(const char *text, const char *user, unsigned long **gids, size_t *n)
{
    if (text == NULL)
        return 0;
    struct span line;
    const char *cursor = text;
    while (next_entry(&cursor, &line)) {
        struct span f[4];
        size_t count = split_fields(line, f, 4);
        unsigned long gid;
        if (count < 4 || !parse_id_span(f[2], &gid))
            continue;
        const char *p = f[3].p, *end = f[3].p + f[3].len;
        while (p <= end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *stop = comma ? comma : end;
            struct span member = { p, (size_t)(stop - p) };
            if (member.len > 0 && span_is(member, user)) {
                int rc = add_gid(gids, n, gid);
                if (rc != 0)
                    return rc;
                break;
            }
            p = stop + 1;
        }
    }
    return 0;
}

int resolve_user(const char *spec, const char *passwd_text, const char *group_text, struct resolved_user *out,
                 char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct user_spec s;
    if (parse_user_spec(spec, &s) != 0) {
        snprintf(err, errlen, "the user '%s' is not a valid USER value (user, user:group, uid or uid:gid)", spec);
        return EINVAL;
    }

    struct passwd_entry pw;
    int found = s.user_is_id ? passwd_find(passwd_text, NULL, 1, s.uid, &pw) : passwd_find(passwd_text, s.user, 0, 0, &pw);
    if (!found && !s.user_is_id) {
        snprintf(err, errlen, "unknown user '%s': %s", s.user,
                 passwd_text ? "no such name in the image's /etc/passwd" : "the image has no /etc/passwd");
        return EINVAL;
    }
    out->uid = found ? pw.uid : s.uid;
    out->gid = found ? pw.gid : 0; /* runc's default gid for a uid without an entry */
    strcpy(out->home, found ? pw.home : "/");

    if (s.has_group) {
        unsigned long gid;
        if (s.group_is_id)
            out->gid = s.gid; /* numeric: used with or without an /etc/group entry */
        else if (group_find(group_text, s.group, 0, 0, &gid))
            out->gid = gid;
        else {
            snprintf(err, errlen, "unknown group '%s': %s", s.group,
                     group_text ? "no such name in the image's /etc/group" : "the image has no /etc/group");
            return EINVAL;
        }
    }

    int rc = add_gid(&out->groups, &out->ngroups, out->gid);
    if (rc == 0 && !s.has_group && found)
        rc = group_memberships(group_text, pw.name, &out->groups, &out->ngroups);
    if (rc != 0) {
        snprintf(err, errlen, "cannot list the groups of user '%s': %s", spec, strerror(rc));
        resolved_user_free(out);
        return rc;
    }
    return 0;
}

void resolved_user_free(struct resolved_user *u)
{
    free(u->groups);
    u->groups = NULL;
    u->ngroups = 0;
}

const char *env_get(char *const envp[], const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; envp[i] != NULL; i++) {
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i] + len + 1;
    }
    return NULL;
}

int exec_search(const char *file, char *const argv[], char *const envp[], const char *path, exec_fn exec)
{
    if (file[0] == '\0')
        return ENOENT;
    if (strchr(file, '/') != NULL) {
        exec(file, argv, envp);
        return errno;
    }
    if (path == NULL)
        path = DEFAULT_PATH;
    size_t k = strnlen(file, NAME_MAX + 1);
    if (k > NAME_MAX)
        return ENAMETOOLONG;

    char candidate[PATH_MAX];
    int seen_eacces = 0;
    for (const char *p = path;;) {
        const char *z = strchr(p, ':');
        if (z == NULL)
            z = p + strlen(p);
        size_t l = (size_t)(z - p);
        /* An element too long for PATH_MAX cannot name a file; musl skips it the same way. */
        if (l + 1 + k < sizeof candidate) {
            memcpy(candidate, p, l);
            size_t at = l;
            if (l > 0)
                candidate[at++] = '/';
            memcpy(candidate + at, file, k + 1);
            exec(candidate, argv, envp);
            switch (errno) {
            case EACCES:
                seen_eacces = 1;
                break;
            case ENOENT:
            case ENOTDIR:
                break;
            default:
                return errno;
            }
        }
        if (*z == '\0')
            break;
        p = z + 1;
    }
    return seen_eacces ? EACCES : ENOENT;
}

const char *signal_name(int sig, char *buf, size_t buflen)
{
    /* The standard signals of signal(7), by their libc macros so that the numbers are right on every architecture. */
    static const struct {
        int number;
        const char *name;
    } names[] = {
        { SIGHUP, "SIGHUP" },     { SIGINT, "SIGINT" },       { SIGQUIT, "SIGQUIT" },     { SIGILL, "SIGILL" },
        { SIGTRAP, "SIGTRAP" },   { SIGABRT, "SIGABRT" },     { SIGBUS, "SIGBUS" },       { SIGFPE, "SIGFPE" },
        { SIGKILL, "SIGKILL" },   { SIGUSR1, "SIGUSR1" },     { SIGSEGV, "SIGSEGV" },     { SIGUSR2, "SIGUSR2" },
        { SIGPIPE, "SIGPIPE" },   { SIGALRM, "SIGALRM" },     { SIGTERM, "SIGTERM" },
#ifdef SIGSTKFLT
        { SIGSTKFLT, "SIGSTKFLT" },
#endif
        { SIGCHLD, "SIGCHLD" },   { SIGCONT, "SIGCONT" },     { SIGSTOP, "SIGSTOP" },     { SIGTSTP, "SIGTSTP" },
        { SIGTTIN, "SIGTTIN" },   { SIGTTOU, "SIGTTOU" },     { SIGURG, "SIGURG" },       { SIGXCPU, "SIGXCPU" },
        { SIGXFSZ, "SIGXFSZ" },   { SIGVTALRM, "SIGVTALRM" }, { SIGPROF, "SIGPROF" },     { SIGWINCH, "SIGWINCH" },
        { SIGIO, "SIGIO" },       { SIGPWR, "SIGPWR" },       { SIGSYS, "SIGSYS" },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].number == sig)
            return names[i].name;
    }
    /* The kernel's real-time signals run from 32 to 64 (include/uapi/asm-generic/signal.h SIGRTMIN, _NSIG); the
     * libc's SIGRTMIN is higher (glibc 34, musl 35) because it keeps the first ones for itself. */
    if (sig >= 32 && sig <= 64) {
        snprintf(buf, buflen, "SIGRTMIN+%d", sig - 32);
        return buf;
    }
    return "unknown signal";
}
