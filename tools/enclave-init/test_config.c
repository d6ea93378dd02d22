/*
 * test_config.c: unit tests of config.c (run by `build OUTDIR test`). Plain C, no framework: each test is a function,
 * CHECK records a failure with its line and goes on, and the program prints one TAP line per test and exits 1 if
 * any failed.
 */
#define _GNU_SOURCE /* mkstemp, setenv under -std=c11 */

#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* --- split_lines and read_file: the /cmd and /env format (spec builder.md §4) --- */

/* Splits a copy of text (len bytes) and checks the elements against expected (NULL-terminated). */
static void check_split(const char *text, size_t len, const char *const expected[])
{
    char *copy = malloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = '\0'; /* read_file's terminating NUL */
    struct strlist lines;
    CHECK(split_lines(copy, len, &lines) == 0);
    size_t n = 0;
    while (expected[n] != NULL)
        n++;
    CHECK(lines.n == n);
    for (size_t i = 0; i < n && i < lines.n; i++)
        CHECK_STR(lines.v[i], expected[i]);
    CHECK(lines.v[lines.n] == NULL);
    strlist_free(&lines);
    free(copy);
}

static void test_split_lines_strips_one_newline_per_line(void)
{
    check_split("/bin/hello.sh\n", 14, (const char *const[]){ "/bin/hello.sh", NULL });
    check_split("a\nb\n", 4, (const char *const[]){ "a", "b", NULL });
    /* nitro-cli's own test env: values with spaces and '=' pass through whole */
    const char *env = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nHELLO=Hello from the enclave side!\nA=b=c\n";
    check_split(env, strlen(env),
                (const char *const[]){ "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                       "HELLO=Hello from the enclave side!", "A=b=c", NULL });
}

static void test_split_lines_empty_file_gives_no_elements(void)
{
    check_split("", 0, (const char *const[]){ NULL });
}

static void test_split_lines_keeps_empty_lines(void)
{
    check_split("\n", 1, (const char *const[]){ "", NULL });
    check_split("a\n\nb\n", 5, (const char *const[]){ "a", "", "b", NULL });
    check_split("a\n\n", 3, (const char *const[]){ "a", "", NULL });
    check_split("\n\n\n", 3, (const char *const[]){ "", "", "", NULL });
}

static void test_split_lines_last_line_without_newline_counts(void)
{
    check_split("a\nb", 3, (const char *const[]){ "a", "b", NULL });
    check_split("only", 4, (const char *const[]){ "only", NULL });
}

static void test_split_lines_keeps_carriage_returns_and_spaces(void)
{
    /* No trimming beyond the one '\n', as AWS's init: "\r" and spaces belong to the element. */
    check_split("x=1\r\n  y \n", 10, (const char *const[]){ "x=1\r", "  y ", NULL });
}

static char *temp_file(const char *content, size_t len)
{
    const char *dir = getenv("TMPDIR");
    char *path = malloc(PATH_MAX);
    snprintf(path, PATH_MAX, "%s/enclave-init-test-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        exit(2);
    }
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, content + done, len - done);
        if (w <= 0) {
            perror("write");
            exit(2);
        }
        done += (size_t)w;
    }
    close(fd);
    return path;
}

static void test_read_file_very_long_lines(void)
{
    /* Two lines of 1 MiB + 1 each: far beyond any fixed buffer or the first read. */
    size_t line = (1u << 20) + 1, len = 2 * (line + 1);
    char *content = malloc(len);
    memset(content, 'x', len);
    memcpy(content, "LONG=", 5);
    content[line] = '\n';
    content[len - 1] = '\n';
    char *path = temp_file(content, len);

    char *data;
    size_t got;
    CHECK(read_file(path, &data, &got) == 0);
    CHECK(got == len);
    CHECK(data[got] == '\0');
    struct strlist lines;
    CHECK(split_lines(data, got, &lines) == 0);
    CHECK(lines.n == 2);
    CHECK(lines.n == 2 && strlen(lines.v[0]) == line && strlen(lines.v[1]) == line);
    CHECK(lines.n == 2 && strncmp(lines.v[0], "LONG=xxx", 8) == 0);
    strlist_free(&lines);
    free(data);
    unlink(path);
    free(path);
    free(content);
}

static void test_read_file_empty_and_missing(void)
{
    char *path = temp_file("", 0);
    char *data = NULL;
    size_t len = 99;
    CHECK(read_file(path, &data, &len) == 0);
    CHECK(len == 0 && data != NULL && data[0] == '\0');
    free(data);
    unlink(path);
    CHECK(read_file(path, &data, &len) == ENOENT);
    free(path);
}

/* --- USER values (Docker's USER: user, user:group, uid, uid:gid) --- */

static void test_parse_id_accepts_decimal_ids_in_runc_range(void)
{
    unsigned long id = 7;
    CHECK(parse_id("0", &id) && id == 0);
    CHECK(parse_id("1000", &id) && id == 1000);
    CHECK(parse_id("2147483647", &id) && id == 2147483647UL);
    CHECK(!parse_id("2147483648", &id));
    CHECK(!parse_id("99999999999999999999999", &id));
    CHECK(!parse_id("", &id));
    CHECK(!parse_id("-1", &id));
    CHECK(!parse_id("+1", &id));
    CHECK(!parse_id(" 1", &id));
    CHECK(!parse_id("1a", &id));
    CHECK(!parse_id("0x10", &id));
}

static void test_parse_user_spec_all_forms(void)
{
    struct user_spec s;
    CHECK(parse_user_spec("app", &s) == 0);
    CHECK_STR(s.user, "app");
    CHECK(!s.user_is_id && !s.has_group);

    CHECK(parse_user_spec("app:staff", &s) == 0);
    CHECK_STR(s.user, "app");
    CHECK_STR(s.group, "staff");
    CHECK(!s.user_is_id && s.has_group && !s.group_is_id);

    CHECK(parse_user_spec("1000", &s) == 0);
    CHECK(s.user_is_id && s.uid == 1000 && !s.has_group);

    CHECK(parse_user_spec("1000:2000", &s) == 0);
    CHECK(s.user_is_id && s.uid == 1000 && s.has_group && s.group_is_id && s.gid == 2000);

    CHECK(parse_user_spec("app:2000", &s) == 0);
    CHECK(!s.user_is_id && s.group_is_id && s.gid == 2000);

    CHECK(parse_user_spec("1000:staff", &s) == 0);
    CHECK(s.user_is_id && s.uid == 1000 && !s.group_is_id);
    CHECK_STR(s.group, "staff");
}

static void test_parse_user_spec_empty_is_root(void)
{
    struct user_spec s;
    CHECK(parse_user_spec("", &s) == 0);
    CHECK(s.user_is_id && s.uid == 0 && !s.has_group);
}

static void test_parse_user_spec_empty_group_part_is_no_group(void)
{
    struct user_spec s;
    CHECK(parse_user_spec("app:", &s) == 0);
    CHECK_STR(s.user, "app");
    CHECK(!s.has_group);
}

static void test_parse_user_spec_rejects_malformed(void)
{
    struct user_spec s;
    CHECK(parse_user_spec(":staff", &s) == EINVAL);
    CHECK(parse_user_spec("a:b:c", &s) == EINVAL);
    char long_name[300];
    memset(long_name, 'u', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    CHECK(parse_user_spec(long_name, &s) == EINVAL);
}

/* --- /etc/passwd and /etc/group --- */

static const char passwd_text[] =
    "# the image's users\n"
    "root:x:0:0:root:/root:/bin/sh\n"
    "\n"
    "+nisuser::::::\n"
    "short:x:5\n"                          /* fewer than 4 fields: skipped */
    "badid:x:abc:10:Bad:/bad:/bin/sh\n"    /* non-numeric uid: skipped */
    "badgid:x:11:-1:Bad:/bad:/bin/sh\n"    /* non-numeric gid: skipped */
    "app:x:1000:1000:App,,,:/home/app:/bin/sh\n"
    "nohome:x:1001:1001\n"                 /* only 4 fields: accepted, home "/" */
    "emptyhome:x:1002:1002:::/bin/sh\n"
    "app:x:1999:1999::/second:/bin/sh\n"   /* a second "app": the first wins */
    "last:x:1003:1003::/home/last:/bin/sh"; /* no final newline */

static void test_passwd_find_by_name(void)
{
    struct passwd_entry pw;
    CHECK(passwd_find(passwd_text, "app", 0, 0, &pw));
    CHECK(pw.uid == 1000 && pw.gid == 1000);
    CHECK_STR(pw.home, "/home/app");
    CHECK(passwd_find(passwd_text, "root", 0, 0, &pw) && pw.uid == 0);
    CHECK_STR(pw.home, "/root");
    CHECK(passwd_find(passwd_text, "last", 0, 0, &pw) && pw.uid == 1003);
    CHECK_STR(pw.home, "/home/last");
}

static void test_passwd_find_by_uid(void)
{
    struct passwd_entry pw;
    CHECK(passwd_find(passwd_text, NULL, 1, 1000, &pw));
    CHECK_STR(pw.name, "app");
    CHECK(passwd_find(passwd_text, NULL, 1, 1999, &pw));
    CHECK_STR(pw.home, "/second");
    CHECK(!passwd_find(passwd_text, NULL, 1, 4242, &pw));
}

static void test_passwd_find_skips_comments_short_and_malformed_lines(void)
{
    struct passwd_entry pw;
    CHECK(!passwd_find(passwd_text, "# the image's users", 0, 0, &pw));
    CHECK(!passwd_find(passwd_text, "+nisuser", 0, 0, &pw));
    CHECK(!passwd_find(passwd_text, "short", 0, 0, &pw));
    CHECK(!passwd_find(passwd_text, "badid", 0, 0, &pw));
    CHECK(!passwd_find(passwd_text, "badgid", 0, 0, &pw));
    CHECK(!passwd_find(passwd_text, "", 0, 0, &pw));
    CHECK(!passwd_find(passwd_text, "ap", 0, 0, &pw)); /* no prefix match */
    CHECK(!passwd_find(NULL, "app", 0, 0, &pw));
    CHECK(!passwd_find("", "app", 0, 0, &pw));
}

static void test_passwd_find_missing_home_is_root_dir(void)
{
    struct passwd_entry pw;
    CHECK(passwd_find(passwd_text, "nohome", 0, 0, &pw) && pw.uid == 1001);
    CHECK_STR(pw.home, "/");
    CHECK(passwd_find(passwd_text, "emptyhome", 0, 0, &pw) && pw.uid == 1002);
    CHECK_STR(pw.home, "/");
}

static const char group_text[] =
    "# groups\n"
    "root:x:0:root\n"
    "staff:x:50:app,bob\n"
    "apple:x:60:apple\n"          /* "apple" is not "app" */
    "nomembers:x:70:\n"
    "nofield:x:80\n"              /* no member field: a group, but nobody's supplementary group */
    "bad:x:zz:app\n"              /* non-numeric gid: skipped */
    "app:x:1000:\n"
    "users:x:100:bob,app\n"
    "dup:x:50:app\n"              /* gid 50 again: listed once */
    "last:x:90:app";              /* no final newline */

static void test_group_find_by_name_and_gid(void)
{
    unsigned long gid = 0;
    CHECK(group_find(group_text, "staff", 0, 0, &gid) && gid == 50);
    CHECK(group_find(group_text, "nofield", 0, 0, &gid) && gid == 80);
    CHECK(group_find(group_text, NULL, 1, 100, &gid) && gid == 100);
    CHECK(!group_find(group_text, "bad", 0, 0, &gid));
    CHECK(!group_find(group_text, "nosuch", 0, 0, &gid));
    CHECK(!group_find(NULL, "staff", 0, 0, &gid));
}

static void test_group_memberships_lists_groups_naming_the_user(void)
{
    unsigned long *gids = NULL;
    size_t n = 0;
    CHECK(group_memberships(group_text, "app", &gids, &n) == 0);
    /* staff (50), users (100), last (90); "dup" repeats 50; "apple" and "bad" do not count */
    CHECK(n == 3);
    CHECK(n == 3 && gids[0] == 50 && gids[1] == 100 && gids[2] == 90);
    free(gids);

    gids = NULL;
    n = 0;
    CHECK(group_memberships(group_text, "nobody", &gids, &n) == 0);
    CHECK(n == 0);
    free(gids);
}

/* --- resolve_user: Docker's USER semantics --- */

static const char image_passwd[] =
    "root:x:0:0:root:/root:/bin/sh\n"
    "app:x:1000:1000:App:/home/app:/bin/sh\n";
static const char image_group[] =
    "root:x:0:\n"
    "wheel:x:10:root\n"
    "staff:x:50:app\n"
    "app:x:1000:\n";

static void check_user(const char *spec, const char *pw, const char *gr, unsigned long uid, unsigned long gid,
                       const char *home, const unsigned long *groups, size_t ngroups)
{
    struct resolved_user u;
    char err[256] = "";
    int rc = resolve_user(spec, pw, gr, &u, err, sizeof err);
    if (rc != 0) {
        printf("#   resolve_user(\"%s\") failed: %s\n", spec, err);
        failures_in_test++;
        return;
    }
    CHECK(u.uid == uid);
    CHECK(u.gid == gid);
    CHECK_STR(u.home, home);
    CHECK(u.ngroups == ngroups);
    for (size_t i = 0; i < ngroups && i < u.ngroups; i++)
        CHECK(u.groups[i] == groups[i]);
    resolved_user_free(&u);
}

static void check_user_fails(const char *spec, const char *pw, const char *gr, const char *message)
{
    struct resolved_user u;
    char err[256] = "";
    CHECK(resolve_user(spec, pw, gr, &u, err, sizeof err) == EINVAL);
    CHECK_STR(err, message);
}

static void test_resolve_user_name(void)
{
    check_user("app", image_passwd, image_group, 1000, 1000, "/home/app", (unsigned long[]){ 1000, 50 }, 2);
}

static void test_resolve_user_name_and_group(void)
{
    /* An explicit group: no supplementary groups (runc: "only make sense if in the implicit form"). */
    check_user("app:staff", image_passwd, image_group, 1000, 50, "/home/app", (unsigned long[]){ 50 }, 1);
    check_user("app:4242", image_passwd, image_group, 1000, 4242, "/home/app", (unsigned long[]){ 4242 }, 1);
}

static void test_resolve_user_uid_with_and_without_entry(void)
{
    /* A number with an entry takes the entry's gid, home and groups, as the name would. */
    check_user("1000", image_passwd, image_group, 1000, 1000, "/home/app", (unsigned long[]){ 1000, 50 }, 2);
    /* Without one: gid 0, home "/". */
    check_user("4321", image_passwd, image_group, 4321, 0, "/", (unsigned long[]){ 0 }, 1);
    check_user("4321:4321", image_passwd, image_group, 4321, 4321, "/", (unsigned long[]){ 4321 }, 1);
    check_user("4321:staff", image_passwd, image_group, 4321, 50, "/", (unsigned long[]){ 50 }, 1);
    check_user("1000", NULL, NULL, 1000, 0, "/", (unsigned long[]){ 0 }, 1);
}

static void test_resolve_user_empty_is_root_with_its_groups(void)
{
    check_user("", image_passwd, image_group, 0, 0, "/root", (unsigned long[]){ 0, 10 }, 2);
    check_user("", NULL, NULL, 0, 0, "/", (unsigned long[]){ 0 }, 1);
}

static void test_resolve_user_unknown_names_fail_clearly(void)
{
    check_user_fails("nosuch", image_passwd, image_group, "unknown user 'nosuch': no such name in the image's /etc/passwd");
    check_user_fails("app", NULL, image_group, "unknown user 'app': the image has no /etc/passwd");
    check_user_fails("app:nosuch", image_passwd, image_group, "unknown group 'nosuch': no such name in the image's /etc/group");
    check_user_fails("1000:staff", image_passwd, NULL, "unknown group 'staff': the image has no /etc/group");
    check_user_fails(":staff", image_passwd, image_group,
                     "the user ':staff' is not a valid USER value (user, user:group, uid or uid:gid)");
}

/* --- env_get and exec_search (execvpe with the image's PATH) --- */

static void test_env_get_first_exact_name(void)
{
    char *envp[] = { "PATHX=no", "PATH", "PATH=/first", "PATH=/second", "EMPTY=", NULL };
    CHECK_STR(env_get(envp, "PATH"), "/first");
    CHECK_STR(env_get(envp, "EMPTY"), "");
    CHECK(env_get(envp, "HOME") == NULL);
}

/* A stand-in for execve: records each path it is given and fails with the errno the table gives that path (ENOENT
 * when it is not listed). errno 0 stands for an exec that succeeded, which exec_search reports as 0. */
static char calls[16][PATH_MAX];
static size_t ncalls;
struct outcome {
    const char *path;
    int error;
};
static const struct outcome *outcomes;

static int fake_exec(const char *path, char *const argv[], char *const envp[])
{
    (void)argv;
    (void)envp;
    if (ncalls < 16)
        snprintf(calls[ncalls], PATH_MAX, "%s", path);
    ncalls++;
    errno = ENOENT;
    for (size_t i = 0; outcomes != NULL && outcomes[i].path != NULL; i++) {
        if (strcmp(outcomes[i].path, path) == 0)
            errno = outcomes[i].error;
    }
    return -1;
}

/* Sets the table for the next search (a compound literal: it lives until the end of the calling block). */
#define OUTCOMES(...) (outcomes = (const struct outcome[]){ __VA_ARGS__, { NULL, 0 } }, ncalls = 0)

static int search(const char *file, const char *path)
{
    char *argv[] = { (char *)file, NULL };
    char *envp[] = { NULL };
    return exec_search(file, argv, envp, path, fake_exec);
}

static void test_exec_search_tries_path_in_order(void)
{
    OUTCOMES({ "/b/sh", 0 });
    CHECK(search("sh", "/a:/b:/c") == 0);
    CHECK(ncalls == 2);
    CHECK_STR(calls[0], "/a/sh");
    CHECK_STR(calls[1], "/b/sh");
}

static void test_exec_search_not_found_is_enoent(void)
{
    OUTCOMES({ "/nothing", 0 });
    CHECK(search("app", "/a:/b") == ENOENT);
    CHECK(ncalls == 2);
}

static void test_exec_search_eacces_goes_on_and_is_reported(void)
{
    OUTCOMES({ "/a/app", EACCES }, { "/b/app", ENOTDIR });
    CHECK(search("app", "/a:/b:/c") == EACCES);
    CHECK(ncalls == 3);
    OUTCOMES({ "/a/app", EACCES }, { "/b/app", 0 });
    CHECK(search("app", "/a:/b") == 0);
}

static void test_exec_search_other_errors_stop(void)
{
    OUTCOMES({ "/a/app", ENOEXEC });
    CHECK(search("app", "/a:/b") == ENOEXEC);
    CHECK(ncalls == 1);
    OUTCOMES({ "/a/app", E2BIG });
    CHECK(search("app", "/a:/b") == E2BIG);
    CHECK(ncalls == 1);
}

static void test_exec_search_slash_runs_the_path_itself(void)
{
    OUTCOMES({ "./run.sh", 0 });
    CHECK(search("./run.sh", "/a") == 0);
    CHECK(ncalls == 1);
    CHECK_STR(calls[0], "./run.sh");
    OUTCOMES({ "/nothing", 0 });
    CHECK(search("/usr/bin/missing", "/a") == ENOENT);
    CHECK(ncalls == 1);
}

static void test_exec_search_empty_elements_mean_working_directory(void)
{
    OUTCOMES({ "/nothing", 0 });
    CHECK(search("app", ":/a::/b/:") == ENOENT);
    CHECK(ncalls == 5);
    CHECK_STR(calls[0], "app");
    CHECK_STR(calls[1], "/a/app");
    CHECK_STR(calls[2], "app");
    CHECK_STR(calls[3], "/b//app");
    CHECK_STR(calls[4], "app");
}

static void test_exec_search_default_path_when_image_has_none(void)
{
    OUTCOMES({ "/nothing", 0 });
    CHECK(search("app", NULL) == ENOENT);
    CHECK(ncalls == 6);
    CHECK_STR(calls[0], "/usr/local/sbin/app");
    CHECK_STR(calls[5], "/bin/app");
}

static void test_exec_search_empty_and_overlong_names(void)
{
    OUTCOMES({ "/nothing", 0 });
    CHECK(search("", "/a") == ENOENT);
    CHECK(ncalls == 0);
    char name[NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    CHECK(search(name, "/a") == ENAMETOOLONG);
    CHECK(ncalls == 0);
    /* A PATH element that cannot fit in PATH_MAX with the name is skipped. */
    char *path = malloc(PATH_MAX + 8);
    memset(path, 'd', PATH_MAX);
    strcpy(path + PATH_MAX, ":/b");
    CHECK(search("app", path) == ENOENT);
    CHECK(ncalls == 1);
    CHECK_STR(calls[0], "/b/app");
    free(path);
}

static void test_signal_name(void)
{
    char buf[32];
    CHECK_STR(signal_name(9, buf, sizeof buf), "SIGKILL");
    CHECK_STR(signal_name(15, buf, sizeof buf), "SIGTERM");
    CHECK_STR(signal_name(2, buf, sizeof buf), "SIGINT");
    CHECK_STR(signal_name(34, buf, sizeof buf), "SIGRTMIN+2");
    CHECK_STR(signal_name(0, buf, sizeof buf), "unknown signal");
    CHECK_STR(signal_name(99, buf, sizeof buf), "unknown signal");
}

int main(void)
{
    static const struct {
        const char *name;
        void (*run)(void);
    } tests[] = {
#define T(f) { #f, f }
        T(test_split_lines_strips_one_newline_per_line),
        T(test_split_lines_empty_file_gives_no_elements),
        T(test_split_lines_keeps_empty_lines),
        T(test_split_lines_last_line_without_newline_counts),
        T(test_split_lines_keeps_carriage_returns_and_spaces),
        T(test_read_file_very_long_lines),
        T(test_read_file_empty_and_missing),
        T(test_parse_id_accepts_decimal_ids_in_runc_range),
        T(test_parse_user_spec_all_forms),
        T(test_parse_user_spec_empty_is_root),
        T(test_parse_user_spec_empty_group_part_is_no_group),
        T(test_parse_user_spec_rejects_malformed),
        T(test_passwd_find_by_name),
        T(test_passwd_find_by_uid),
        T(test_passwd_find_skips_comments_short_and_malformed_lines),
        T(test_passwd_find_missing_home_is_root_dir),
        T(test_group_find_by_name_and_gid),
        T(test_group_memberships_lists_groups_naming_the_user),
        T(test_resolve_user_name),
        T(test_resolve_user_name_and_group),
        T(test_resolve_user_uid_with_and_without_entry),
        T(test_resolve_user_empty_is_root_with_its_groups),
        T(test_resolve_user_unknown_names_fail_clearly),
        T(test_env_get_first_exact_name),
        T(test_exec_search_tries_path_in_order),
        T(test_exec_search_not_found_is_enoent),
        T(test_exec_search_eacces_goes_on_and_is_reported),
        T(test_exec_search_other_errors_stop),
        T(test_exec_search_slash_runs_the_path_itself),
        T(test_exec_search_empty_elements_mean_working_directory),
        T(test_exec_search_default_path_when_image_has_none),
        T(test_exec_search_empty_and_overlong_names),
        T(test_signal_name),
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
