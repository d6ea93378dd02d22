/*
 * config.h: the parts of the enclave init that only read and parse, with no effect on the system, so that
 * test_config.c can test them on a build machine: the /cmd, /env, /workdir, /user and /modules/order files of the
 * ramdisks (spec builder.md §2-§4), Docker's USER resolution through the image's /etc/passwd and /etc/group, and
 * the PATH search of execvpe.
 */
#ifndef ENCLAVE_INIT_CONFIG_H
#define ENCLAVE_INIT_CONFIG_H

#include <stddef.h>
#include <sys/types.h>

/* A NULL-terminated array of strings: argv and envp shapes. */
struct strlist {
    char **v; /* v[n] == NULL */
    size_t n;
};

/*
 * Reads a whole file into a NUL-terminated heap buffer (*data, *len without the NUL).
 * Returns 0, or the errno of the failed open/read/allocation (ENOENT when the file is missing).
 */
int read_file(const char *path, char **data, size_t *len);

/*
 * Splits the bytes of a /cmd or /env file into lines, in place: every '\n' becomes the end of one element, so each
 * line loses exactly one trailing '\n' and keeps everything else (empty lines stay, as empty elements; "\r" stays).
 * A last line without '\n' is still an element; an empty file gives no elements. This is how AWS's init reads the
 * files (getline, then one '\n' stripped) and how nitro-cli writes them (every element followed by '\n').
 * The elements point into data, which must outlive the list. Returns 0 or ENOMEM.
 */
int split_lines(char *data, size_t len, struct strlist *out);

/* Frees the array of a strlist (not the strings: they point into the file's buffer). */
void strlist_free(struct strlist *list);

/*
 * Parses a uid or gid written in decimal: digits only, at most 2147483647, the range runc accepts for USER ids
 * (libcontainer/user: minID 0, maxID 1<<31 - 1). Returns 1 and sets *id, or 0 if text is not such a number.
 */
int parse_id(const char *text, unsigned long *id);

/* A Docker USER value split into its parts ("user", "user:group", "uid", "uid:gid", names or numbers). */
struct user_spec {
    char user[256];     /* the user part; "" for an empty spec (Docker's default: uid 0) */
    int user_is_id;     /* the user part is numeric (always treated as a uid, as runc does) */
    unsigned long uid;  /* when user_is_id */
    int has_group;      /* a non-empty group part was given */
    char group[256];
    int group_is_id;
    unsigned long gid;  /* when group_is_id */
};

/*
 * Parses a USER value (one line of /user). Returns 0, or EINVAL for a value Docker would not run: a group without
 * a user (":g"), more than one ':', or a part longer than 255 bytes. "user:" is "user" (runc treats an empty group
 * part as none).
 */
int parse_user_spec(const char *spec, struct user_spec *out);

/* One /etc/passwd entry, as far as the init needs it. */
struct passwd_entry {
    char name[256];
    unsigned long uid;
    unsigned long gid;
    char home[4096];    /* "/" when the entry has no home field or an empty one */
};

/*
 * Finds the first entry of an /etc/passwd text ("name:password:uid:gid:gecos:home:shell" per line) whose name is
 * `name` (by_uid == 0) or whose uid is `uid` (by_uid != 0). Parsed by hand: a static binary has no NSS. Skipped:
 * empty lines, '#' comments, NIS "+"/"-" lines, lines with fewer than 4 fields or a non-numeric uid or gid (glibc's
 * and musl's parsers skip malformed lines too). Missing gecos/home/shell fields are allowed.
 * Returns 1 and fills *out, or 0 when there is no such entry (also when text is NULL: no /etc/passwd).
 */
int passwd_find(const char *text, const char *name, int by_uid, unsigned long uid, struct passwd_entry *out);

/*
 * Finds the first /etc/group entry ("name:password:gid:member,member" per line) whose name is `name` (by_gid == 0)
 * or whose gid is `gid`, with the same skipping rules as passwd_find (at least 3 fields, numeric gid).
 * Returns 1 and sets *out_gid, or 0 when there is none.
 */
int group_find(const char *text, const char *name, int by_gid, unsigned long gid, unsigned long *out_gid);

/* setgroups(2) accepts at most NGROUPS_MAX groups (65536 since Linux 2.6.4, include/uapi/linux/limits.h). */
#define MAX_GROUPS 65536

/*
 * Appends to the heap array *gids (*n entries) the gid of every /etc/group entry whose member list names `user`, in
 * file order, leaving out gids already present. Returns 0, ENOMEM, or E2BIG past MAX_GROUPS gids.
 */
int group_memberships(const char *text, const char *user, unsigned long **gids, size_t *n);

/* The identity the command runs as. */
struct resolved_user {
    unsigned long uid;
    unsigned long gid;
    char home[4096];
    unsigned long *groups; /* setgroups(2) list: the primary gid first, then the supplementary ones; heap */
    size_t ngroups;
};

/*
 * Resolves a USER value the way Docker does (runc libcontainer/user GetExecUser, moby daemon/oci_linux.go getUser):
 * - user part: a name must be in /etc/passwd; a number is a uid, looked up by uid when an entry exists (its name,
 *   gid and home are then used) and accepted without one (gid 0, home "/"); an empty spec is uid 0.
 * - group part: a name must be in /etc/group; a number is a gid, with or without an entry. With an explicit group
 *   there are no supplementary groups; without one, the groups are those whose member list names the user.
 * - groups = [gid] + supplementary gids (moby sets AdditionalGids to the primary gid plus runc's Sgids).
 * passwd_text / group_text may be NULL (file absent). On failure writes one sentence to err (no "enclave: " prefix,
 * no newline) and returns EINVAL (bad spec or unknown name) or ENOMEM; on success returns 0; free with
 * resolved_user_free.
 */
int resolve_user(const char *spec, const char *passwd_text, const char *group_text, struct resolved_user *out,
                 char *err, size_t errlen);
void resolved_user_free(struct resolved_user *u);

/* Docker's PATH for a container whose image sets none (moby oci.DefaultPathEnv on Linux). */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* The value of the first NAME=value element of envp for `name`, or NULL (the element getenv(3) would return). */
const char *env_get(char *const envp[], const char *name);

typedef int (*exec_fn)(const char *path, char *const argv[], char *const envp[]);

/*
 * Runs `file` like execvpe(3), but searching `path` (the image's PATH; DEFAULT_PATH when NULL) instead of the
 * caller's environment: a file with a '/' is run as it is; otherwise each PATH element is tried in order ("" means
 * the working directory), going on after ENOENT, ENOTDIR and EACCES and stopping at any other error; if every
 * element failed and one failed with EACCES, the result is EACCES, else ENOENT (musl src/process/execvp.c, glibc
 * posix/execvpe.c). `exec` is execve(2), or a stand-in for tests. Unlike glibc, an ENOEXEC file is not retried with
 * /bin/sh (musl does not either; AWS's init.c notes that it is built with musl-gcc).
 * Returns only on failure, with the errno to report.
 */
int exec_search(const char *file, char *const argv[], char *const envp[], const char *path, exec_fn exec);

/* "SIGTERM" for 15, and so on for the signals of signal(7); "SIGRTMIN+n" for real-time ones; "SIG?" otherwise. */
const char *signal_name(int sig, char *buf, size_t buflen);

#endif
