/*
 * init.c: the enclave's PID 1 (issue 5). It honours the contract of AWS's init (aws-nitro-enclaves-sdk-bootstrap
 * init/init.c; spec launch.md §3) so that either init works with either customer ramdisk, and improves on it where
 * issue 5 asks: modules from a list, a heartbeat failure that is not fatal, WORKDIR and USER, the image's PATH,
 * a console line for every failure, and the command's exit status on the console.
 *
 * Ramdisks (spec builder.md §2-§4): the bootstrap ramdisk holds /init, /dev/, optionally /nsm.ko, /modules/order
 * and /modules/NAME.ko; the customer ramdisk holds /rootfs/..., /cmd, /env and optionally /workdir and /user.
 *
 * Test mode (EIF_INIT_TEST=1 and not PID 1): no /dev, console, modules or heartbeat (EIF_INIT_HEARTBEAT=1 tries
 * it); files read from $EIF_INIT_ROOT (default /); a plain chroot into $EIF_INIT_ROOT/rootfs; no mounts unless
 * EIF_INIT_MOUNTS=1 (then in a private mount namespace, so no mount outlives the process; devtmpfs is the host's
 * one instance, where the /dev/fd, /dev/std* links and /dev/shm, /dev/pts already exist); a child subreaper that
 * logs each orphan it reaps; exits with the command's status (128 + signal) instead of rebooting.
 */
#define _GNU_SOURCE /* chroot, setgroups, sync, syscall, unshare, sigwaitinfo under -std=c11 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * The vsock address, as struct sockaddr_vm of include/uapi/linux/vm_sockets.h (16 bytes: family, reserved, port,
 * cid, flags, zero[3]). Declared here because musl-gcc does not see the kernel's headers; AF_VSOCK (40) is in
 * <sys/socket.h> of both libcs.
 */
struct vsock_address {
    unsigned short svm_family;
    unsigned short svm_reserved1;
    unsigned int svm_port;
    unsigned int svm_cid;
    unsigned char svm_flags;
    unsigned char svm_zero[3];
};
_Static_assert(sizeof(struct vsock_address) == 16, "struct sockaddr_vm is 16 bytes (linux/vm_sockets.h)");

/*
 * The heartbeat (spec launch.md §2.5; AWS init.c enclave_ready): connect to the parent instance, which is CID 3 in
 * Nitro (nitro-cli's VMADDR_CID_PARENT; VMADDR_CID_HOST = 2 is the hypervisor side of a plain VM), port 9000
 * (ENCLAVE_READY_VSOCK_PORT), send 0xB7 and read it back.
 */
#define HEARTBEAT_CID 3
#define HEARTBEAT_PORT 9000
#define HEARTBEAT_BYTE 0xB7
/* nitro-cli waits at least 180 s for the heartbeat; 10 s per step is plenty for a parent that listens before it
 * starts the enclave, and bounds the boot delay where nothing listens. (AWS defines TIMEOUT 20000 but never uses
 * it: its connect and read can block forever.) */
#define HEARTBEAT_TIMEOUT_MS 10000

/* Exit status of the test mode when the init itself fails before the command runs (Docker's 125: "the container
 * runtime failed", docker-run(1)). Exec failures are 127, as for a shell's "command not found". */
#define EXIT_INIT_FAILED 125
#define EXIT_EXEC_FAILED 127

static int test_mode;
static char root_dir[PATH_MAX] = "/";

/* Signals the init forwards to the command's process group: SIGTERM and SIGINT ask the command to stop; SIGHUP,
 * SIGQUIT, SIGUSR1 and SIGUSR2 are the usual requests to a daemon (reload, quit with a dump, its own meanings). */
static const int forwarded_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

/* Writes one console line, "enclave: ...\n", with a single write(2) so that lines of the init and of the command's
 * processes do not interleave mid-line. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "enclave: ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2; /* truncated: still one whole line */
    line[len++] = '\n';
    while (write(STDERR_FILENO, line, len) < 0 && errno == EINTR)
        ;
}

/* Ends the enclave: sync(2) and reboot(2) with RB_AUTOBOOT, which the Nitro hypervisor (and QEMU's nitro machine)
 * treat as the enclave's end, as AWS's init does. In test mode, exits with `status` instead. Never returns. */
static _Noreturn void end_enclave(int status)
{
    if (test_mode)
        exit(status);
    sync();
    reboot(RB_AUTOBOOT);
    /* reboot(2) fails only without CAP_SYS_BOOT; exiting PID 1 then panics the kernel, which ends the enclave too
     * (panic=30 on the nitro-cli cmdline). */
    say("reboot failed: %s; exiting, which panics the kernel", strerror(errno));
    exit(status);
}

/* A path of the ramdisk root: "/cmd", or "$EIF_INIT_ROOT/cmd" in test mode. */
static const char *root_path(const char *name, char *buf, size_t buflen)
{
    size_t len = strlen(root_dir);
    int n = snprintf(buf, buflen, "%s%s%s", root_dir, len > 0 && root_dir[len - 1] == '/' ? "" : "/", name);
    if (n < 0 || (size_t)n >= buflen) {
        say("the path %s/%s is too long; ending the enclave", root_dir, name);
        end_enclave(EXIT_INIT_FAILED);
    }
    return buf;
}

/* /dev and the console (AWS init.c init_dev, init_console). The kernel may have mounted devtmpfs already
 * (CONFIG_DEVTMPFS_MOUNT or devtmpfs.mount=1): EBUSY is fine. */
static void setup_dev_and_console(void)
{
    if (mount("dev", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, NULL) < 0 && errno != EBUSY)
        say("cannot mount devtmpfs on /dev: %s", strerror(errno));

    int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        /* Keep the descriptors the kernel gave PID 1 (its own /dev/console of the built-in initramfs, if any). */
        say("cannot open /dev/console: %s", strerror(errno));
        return;
    }
    for (int i = 0; i <= 2; i++)
        dup2(fd, i); /* dup2 clears FD_CLOEXEC on the copies */
    if (fd > 2)
        close(fd);
}

/* Loads one kernel module with finit_module(2) (no libc wrapper in musl; the syscall takes a descriptor, an option
 * string and flags). EEXIST means already loaded. Returns 0 or an errno; on ENOENT nothing was logged. */
static int load_module(const char *path, int quiet_if_missing)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int error = errno;
        if (!(quiet_if_missing && error == ENOENT))
            say("cannot load module %s: %s; continuing", path, strerror(error));
        return error;
    }
    int rc = (int)syscall(SYS_finit_module, fd, "", 0);
    int error = rc < 0 ? errno : 0;
    close(fd);
    if (error != 0 && error != EEXIST) {
        say("cannot load module %s: %s; continuing", path, strerror(error));
        return error;
    }
    /* The ramdisk lives in RAM: free the module's copy once the kernel has it (AWS unlinks nsm.ko too). */
    unlink(path);
    return 0;
}

/* Step 2: the modules of /modules/order, in order, then /nsm.ko. A missing nsm.ko is skipped silently, as AWS's
 * init does: kernels >= 6.8 have the NSM driver built in. A failed load is one line, never the end of the boot. */
static void load_modules(void)
{
    char *data;
    size_t len;
    int rc = read_file("/modules/order", &data, &len);
    if (rc == 0) {
        struct strlist lines;
        if (split_lines(data, len, &lines) == 0) {
            for (size_t i = 0; i < lines.n; i++) {
                const char *rel = lines.v[i];
                while (*rel == '/')
                    rel++; /* paths are relative to /; tolerate a leading slash */
                if (*rel == '\0' || *rel == '#')
                    continue;
                char path[PATH_MAX];
                snprintf(path, sizeof path, "/%s", rel);
                load_module(path, 0);
            }
            strlist_free(&lines);
        } else {
            say("cannot read /modules/order: %s; continuing", strerror(ENOMEM));
        }
        free(data);
    } else if (rc != ENOENT) {
        say("cannot read /modules/order: %s; continuing", strerror(rc));
    }
    load_module("/nsm.ko", 1);
}

/* Waits up to HEARTBEAT_TIMEOUT_MS for `events` on fd. Returns 0, or ETIMEDOUT / the poll error. */
static int wait_for(int fd, short events)
{
    struct pollfd p = { .fd = fd, .events = events };
    for (;;) {
        int n = poll(&p, 1, HEARTBEAT_TIMEOUT_MS);
        if (n > 0)
            return 0;
        if (n == 0)
            return ETIMEDOUT;
        if (errno != EINTR)
            return errno;
    }
}

/* The heartbeat's steps; returns 0, or sets *what to the failed step and returns its errno. A non-blocking socket
 * bounds every step (the vsock transport's own connect timeout is 2 s, net/vmw_vsock/af_vsock.c
 * VSOCK_DEFAULT_CONNECT_TIMEOUT, but a parent that accepts and never answers would block a read forever). */
static int heartbeat_steps(int fd, const char **what)
{
    struct vsock_address sa = { .svm_family = AF_VSOCK, .svm_port = HEARTBEAT_PORT, .svm_cid = HEARTBEAT_CID };
    *what = "connect";
    if (connect(fd, (const struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno != EINPROGRESS)
            return errno;
        int rc = wait_for(fd, POLLOUT);
        if (rc != 0)
            return rc;
        int error = 0;
        socklen_t elen = sizeof error;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &elen) < 0)
            return errno;
        if (error != 0)
            return error;
    }
    unsigned char byte = HEARTBEAT_BYTE;
    *what = "write";
    if (write(fd, &byte, 1) != 1)
        return errno ? errno : EIO;
    *what = "read";
    int rc = wait_for(fd, POLLIN);
    if (rc != 0)
        return rc;
    ssize_t got = read(fd, &byte, 1);
    if (got < 0)
        return errno;
    if (got == 0)
        return ECONNRESET; /* closed without the echo */
    *what = "echo";
    return byte == HEARTBEAT_BYTE ? 0 : EPROTO;
}

/* Step 3. Unlike AWS's init, which exits (and so panics the kernel) on any failure, a failed heartbeat is one line:
 * the image still runs where no parent answers (QEMU without a listener, tests). */
static void heartbeat(void)
{
    const char *what = "socket";
    int rc = 0;
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        rc = errno;
    else {
        errno = 0;
        rc = heartbeat_steps(fd, &what);
        close(fd);
    }
    if (rc != 0)
        say("heartbeat to the parent (vsock %d:%d) failed: %s: %s; continuing", HEARTBEAT_CID, HEARTBEAT_PORT, what,
            rc == EPROTO ? "the parent answered another byte" : strerror(rc));
}

/* Reads a required ramdisk file into lines, or ends the enclave with one line (AWS's init crashes here:
 * fclose(NULL), aws-nitro-enclaves-cli#194, #668). */
static void read_required(const char *name, char **data, struct strlist *lines)
{
    char path[PATH_MAX];
    size_t len;
    int rc = read_file(root_path(name, path, sizeof path), data, &len);
    if (rc == 0)
        rc = split_lines(*data, len, lines);
    if (rc != 0) {
        say("cannot read %s: %s (the customer ramdisk must hold /cmd and /env; was it unpacked completely? "
            "an enclave needs about 4 times the EIF's size in memory); ending the enclave",
            path, strerror(rc));
        end_enclave(EXIT_INIT_FAILED);
    }
}

/* Reads the first line of an optional one-line file (/workdir, /user) into buf; "" when the file is missing. */
static void read_optional_line(const char *name, char *buf, size_t buflen)
{
    char path[PATH_MAX];
    char *data;
    size_t len;
    buf[0] = '\0';
    int rc = read_file(root_path(name, path, sizeof path), &data, &len);
    if (rc == ENOENT)
        return;
    if (rc != 0) {
        say("cannot read %s: %s; ending the enclave", path, strerror(rc));
        end_enclave(EXIT_INIT_FAILED);
    }
    size_t line = strcspn(data, "\n");
    if (line >= buflen) {
        say("%s is too long (%zu bytes, at most %zu); ending the enclave", path, line, buflen - 1);
        end_enclave(EXIT_INIT_FAILED);
    }
    memcpy(buf, data, line);
    buf[line] = '\0';
    free(data);
}

/* Step 5a: make /rootfs the root (AWS init.c HEAD, and switch_root(8)): bind it on itself so that it is a mount
 * point, move that mount onto /, and chroot into it. The initramfs itself cannot be unmounted (ramfs-rootfs-
 * initramfs.rst), so it stays underneath. Test mode: a plain chroot. */
static void switch_root(void)
{
    if (test_mode) {
        char rootfs[PATH_MAX];
        root_path("rootfs", rootfs, sizeof rootfs);
        if (chroot(rootfs) < 0 || chdir("/") < 0) {
            say("cannot chroot into %s: %s; ending the enclave", rootfs, strerror(errno));
            end_enclave(EXIT_INIT_FAILED);
        }
        return;
    }
    const char *step = "bind-mount /rootfs";
    if (mount("/rootfs", "/rootfs", NULL, MS_BIND | MS_REC, NULL) < 0)
        goto fail;
    step = "chdir /rootfs";
    if (chdir("/rootfs") < 0)
        goto fail;
    step = "move /rootfs onto /";
    if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
        goto fail;
    step = "chroot";
    if (chroot(".") < 0 || chdir("/") < 0)
        goto fail;
    return;
fail:
    say("cannot switch the root to /rootfs: %s: %s; ending the enclave", step, strerror(errno));
    end_enclave(EXIT_INIT_FAILED);
}

static void ensure_dir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        say("cannot create %s: %s", path, strerror(errno));
}

static void mount_at(const char *source, const char *target, const char *type, unsigned long flags, const char *data)
{
    ensure_dir(target, 0755);
    if (mount(source, target, type, flags, data) < 0) {
        if (errno == EBUSY && strcmp(type, "devtmpfs") == 0)
            return; /* already mounted by the kernel (CONFIG_DEVTMPFS_MOUNT) */
        say("cannot mount %s on %s: %s; continuing", type, target, strerror(errno));
    }
}

static void link_at(const char *target, const char *linkpath)
{
    if (symlink(target, linkpath) < 0 && errno != EEXIST)
        say("cannot create the symlink %s: %s", linkpath, strerror(errno));
}

/* Step 5b: the file systems inside the new root, with AWS's flags (init.c `ops`), so that an image sees what it
 * sees under AWS's init. Mount points the image lacks are created. A failed mount is one line and the boot goes
 * on: most commands need none of them. */
static void mount_filesystems(void)
{
    const unsigned long common = MS_NODEV | MS_NOSUID | MS_NOEXEC;
    mount_at("dev", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, NULL);
    mount_at("proc", "/proc", "proc", common, NULL);
    link_at("/proc/self/fd", "/dev/fd");
    link_at("/proc/self/fd/0", "/dev/stdin");
    link_at("/proc/self/fd/1", "/dev/stdout");
    link_at("/proc/self/fd/2", "/dev/stderr");
    mount_at("tmpfs", "/run", "tmpfs", common, "mode=0755");
    /* AWS passes no mode; tmpfs's default root mode is 1777 (Documentation/filesystems/tmpfs.rst). Said here. */
    mount_at("tmpfs", "/tmp", "tmpfs", common, "mode=1777");
    mount_at("shm", "/dev/shm", "tmpfs", common, "mode=1777");
    mount_at("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, NULL);
    mount_at("sysfs", "/sys", "sysfs", common, NULL);
    /* cgroups: AWS mounts a tmpfs and one cgroup-v1 hierarchy per controller. The unified hierarchy (cgroup2) is
     * what current software expects; a kernel without it (ENODEV) is not worth a line. */
    if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", common, NULL) < 0 && errno != ENODEV && errno != ENOENT)
        say("cannot mount cgroup2 on /sys/fs/cgroup: %s; continuing", strerror(errno));
}

/* The environment the command gets: the image's /env, plus Docker's default PATH when it has none (AWS's init
 * also supplies a PATH, but only for an empty /env) and HOME from /etc/passwd when it has none (runc sets HOME
 * the same way). */
static char **command_env(const struct strlist *env, const char *home)
{
    char **envp = calloc(env->n + 3, sizeof *envp);
    if (envp == NULL) {
        say("out of memory for the environment; ending the enclave");
        end_enclave(EXIT_INIT_FAILED);
    }
    size_t n = 0;
    for (size_t i = 0; i < env->n; i++)
        envp[n++] = env->v[i];
    envp[n] = NULL;
    if (env_get(envp, "PATH") == NULL)
        envp[n++] = "PATH=" DEFAULT_PATH;
    envp[n] = NULL;
    if (env_get(envp, "HOME") == NULL) {
        size_t len = strlen(home) + sizeof "HOME=";
        char *h = malloc(len);
        if (h == NULL) {
            say("out of memory for the environment; ending the enclave");
            end_enclave(EXIT_INIT_FAILED);
        }
        snprintf(h, len, "HOME=%s", home);
        envp[n++] = h;
    }
    envp[n] = NULL;
    return envp;
}

/* Step 7, in the child: a new session and process group (so that signals reach every process of the command),
 * default signal dispositions and an empty mask, the working directory, the user, then exec. Never returns. */
static _Noreturn void run_command(char **argv, char **envp, const char *workdir, const struct resolved_user *user)
{
    setsid();
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL); /* fails harmlessly for SIGKILL, SIGSTOP and the libc's reserved signals */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Docker's WORKDIR is absolute; a relative one is taken from / (the root after the switch). */
    const char *dir = workdir[0] != '\0' ? workdir : "/";
    if (chdir("/") < 0 || chdir(dir) < 0) {
        say("cannot change to the working directory '%s': %s", dir, strerror(errno));
        _exit(EXIT_EXEC_FAILED);
    }

    /* setgroups, setgid, setuid, in that order: the group calls need the privilege that setuid gives up. */
    gid_t *groups = calloc(user->ngroups ? user->ngroups : 1, sizeof *groups);
    if (groups == NULL) {
        say("out of memory for the groups");
        _exit(EXIT_EXEC_FAILED);
    }
    for (size_t i = 0; i < user->ngroups; i++)
        groups[i] = (gid_t)user->groups[i];
    const char *step = "setgroups";
    if (setgroups(user->ngroups, groups) < 0)
        goto fail;
    step = "setgid";
    if (setgid((gid_t)user->gid) < 0)
        goto fail;
    step = "setuid";
    if (setuid((uid_t)user->uid) < 0)
        goto fail;

    int error = exec_search(argv[0], argv, envp, env_get(envp, "PATH"), execve);
    say("cannot run '%s': %s", argv[0], strerror(error));
    _exit(EXIT_EXEC_FAILED);
fail:
    say("cannot switch to uid %lu gid %lu: %s: %s", user->uid, user->gid, step, strerror(errno));
    _exit(EXIT_EXEC_FAILED);
}

/* Step 8: PID 1's loop. Every signal is blocked (AWS init.c main), so they queue until sigwaitinfo takes them:
 * SIGCHLD means children to reap, the others are forwarded. Blocked signals are queued even for init, which
 * ignores unhandled signals otherwise (kernel/signal.c sig_ignored). Returns the command's wait status. */
static int supervise(pid_t child)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded_signals / sizeof forwarded_signals[0]; i++)
        sigaddset(&set, forwarded_signals[i]);

    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&set, &info);
        if (sig < 0) {
            if (errno == EINTR)
                continue;
            say("sigwaitinfo failed: %s; ending the enclave", strerror(errno));
            end_enclave(EXIT_INIT_FAILED);
        }
        if (sig != SIGCHLD) {
            /* To the command's process group; before the child's setsid() there is none yet, so to the child
             * itself (its signals are still blocked: the signal waits for its exec). */
            if (kill(-child, sig) < 0 && errno == ESRCH)
                kill(child, sig);
            continue;
        }
        /* SIGCHLD does not queue: one signal may stand for several children, so reap until none is left. */
        for (;;) {
            int status;
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0)
                break;
            if (pid == child)
                return status;
            if (test_mode)
                say("reaped orphan PID %d", (int)pid);
        }
    }
}

int main(void)
{
    int pid1 = getpid() == 1;
    const char *t = getenv("EIF_INIT_TEST");
    test_mode = !pid1 && t != NULL && strcmp(t, "1") == 0;
    if (!pid1 && !test_mode) {
        /* Run by hand on a host, the real mode would mount over /dev, chroot and reboot the machine. */
        say("this is the enclave's init: it runs as PID 1 (or with EIF_INIT_TEST=1 for tests); not starting");
        return 2;
    }

    /* Step 1: block every signal (AWS init.c main), so that none kills PID 1 and all queue for supervise(). */
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);

    if (test_mode) {
        const char *root = getenv("EIF_INIT_ROOT");
        if (root != NULL && root[0] != '\0')
            snprintf(root_dir, sizeof root_dir, "%s", root);
        /* Orphans of the command are reparented to the nearest subreaper instead of the real PID 1
         * (prctl(2) PR_SET_CHILD_SUBREAPER), so this process reaps them as PID 1 would. */
        if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
            say("cannot become a child subreaper: %s", strerror(errno));
    } else {
        setup_dev_and_console();
        load_modules();
    }

    const char *hb = getenv("EIF_INIT_HEARTBEAT");
    if (!test_mode || (hb != NULL && strcmp(hb, "1") == 0))
        heartbeat();

    /* Step 4: the customer ramdisk's files. AWS reads /env before /cmd; the order only matters for the messages. */
    char *env_data, *cmd_data;
    struct strlist env, cmd;
    read_required("cmd", &cmd_data, &cmd);
    read_required("env", &env_data, &env);
    if (cmd.n == 0) {
        say("/cmd is empty: the image has no command (neither CMD nor ENTRYPOINT); ending the enclave");
        end_enclave(EXIT_INIT_FAILED);
    }
    char workdir[PATH_MAX], user_spec[1024];
    read_optional_line("workdir", workdir, sizeof workdir);
    read_optional_line("user", user_spec, sizeof user_spec);
    if (!test_mode) {
        /* As AWS's init: the files are read once; the test mode leaves its fake root as it found it. */
        unlink("/cmd");
        unlink("/env");
        unlink("/workdir");
        unlink("/user");
    }

    /* Step 5. In test mode, mounts only on request and in a private mount namespace, made before the chroot
     * (MS_PRIVATE needs a mount point, and the fake root is none): they go away with this process instead of
     * piling up on the host. */
    const char *m = getenv("EIF_INIT_MOUNTS");
    int mounts = !test_mode || (m != NULL && strcmp(m, "1") == 0);
    if (test_mode && mounts && (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)) {
        say("cannot make a private mount namespace: %s; ending the enclave", strerror(errno));
        end_enclave(EXIT_INIT_FAILED);
    }
    switch_root();
    if (mounts)
        mount_filesystems();

    /* Step 6: the user, through the image's own /etc/passwd and /etc/group (no NSS in a static binary). */
    char *passwd_text = NULL, *group_text = NULL;
    size_t ignored;
    if (read_file("/etc/passwd", &passwd_text, &ignored) != 0)
        passwd_text = NULL;
    if (read_file("/etc/group", &group_text, &ignored) != 0)
        group_text = NULL;
    struct resolved_user user;
    char why[512];
    if (resolve_user(user_spec, passwd_text, group_text, &user, why, sizeof why) != 0) {
        say("%s; ending the enclave", why);
        end_enclave(EXIT_INIT_FAILED);
    }
    free(passwd_text);
    free(group_text);

    /* Step 7. */
    char **envp = command_env(&env, user.home);
    pid_t child = fork();
    if (child < 0) {
        say("cannot start the command: fork: %s; ending the enclave", strerror(errno));
        end_enclave(EXIT_INIT_FAILED);
    }
    if (child == 0)
        run_command(cmd.v, envp, workdir, &user);

    /* Step 8. */
    int status = supervise(child);
    int code;
    if (WIFEXITED(status)) {
        code = WEXITSTATUS(status);
        say("command exited with status %d", code);
    } else {
        char buf[32];
        int sig = WTERMSIG(status);
        code = 128 + sig;
        say("command killed by signal %d (%s)", sig, signal_name(sig, buf, sizeof buf));
    }
    if (test_mode)
        kill(-child, SIGKILL); /* what the reboot does to what is left of the command's processes */
    end_enclave(code);
}
