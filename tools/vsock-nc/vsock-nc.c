/*
 * vsock-nc.c: a small netcat for AF_VSOCK, for enclave applications that talk to their parent (issue 8: the local
 * enclave's `run-enclave --local --forward` and `--publish`). Busybox's nc has no AF_VSOCK.
 *
 *   vsock-nc [-v] ADDRESS                           connect: stdin to the socket, the socket to stdout
 *   vsock-nc -l [-v] ADDRESS --echo                 listen: echo every connection's bytes back to it
 *   vsock-nc -l [-v] ADDRESS -e PROGRAM [ARG...]    listen: run PROGRAM per connection, the socket as stdin and stdout
 *
 * ADDRESS is vsock:CID:PORT (connect), vsock:PORT (listen, any CID) or tcp:A.B.C.D:PORT (both; a numeric IPv4
 * host). The tcp form exists so that the splicing, echoing and exec logic can be tested on a host without a
 * loopback vsock (tools/vsock-nc/test).
 *
 * Connect: copies stdin to the socket and the socket to stdout, both at once (poll), through one 64 KiB buffer per
 * direction. At the end of stdin it shuts the socket's write side down (the peer sees EOF) and keeps reading; at the
 * socket's end it shuts stdout's write side down when stdout is a socket (else closes it), so an EOF travels on in
 * both directions. Exit status 0 when both directions have ended, 1 with one line
 * "vsock-nc: <what failed>: <strerror>" on stderr otherwise (refused, reset, a closed stdout...).
 *
 * Listen: prints "vsock-nc: listening on ADDRESS" on stderr once listen() succeeded, then forks a child per
 * connection; children are reaped in a SIGCHLD handler. --echo: the child writes back every byte it reads, and
 * after the peer's EOF (a half-close: the peer may still be reading) shuts its write side down and closes. -e: the
 * child makes the socket its stdin and stdout (stderr stays) and execs PROGRAM, as inetd and `nc -e` do.
 *
 * -v prints one line per connection on stderr. A usage error is exit status 2.
 */
#define _GNU_SOURCE /* accept4, SOCK_CLOEXEC, MSG_NOSIGNAL under -std=c11 */

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*
 * AF_VSOCK's address, struct sockaddr_vm of the kernel's include/uapi/linux/vm_sockets.h (16 bytes, the size of
 * struct sockaddr), declared here because musl-gcc does not see the kernel's headers. AF_VSOCK itself (40) is in
 * <sys/socket.h>, musl's and glibc's. When the compiler sees <linux/vm_sockets.h> (gcc), the layout and the
 * constants are checked against it.
 */
struct vsock_addr {
    sa_family_t svm_family; /* AF_VSOCK */
    unsigned short svm_reserved1;
    unsigned int svm_port;
    unsigned int svm_cid;
    uint8_t svm_flags; /* VMADDR_FLAG_TO_HOST (0x01) and nothing else: 0 here */
    unsigned char svm_zero[sizeof(struct sockaddr) - sizeof(sa_family_t) - sizeof(unsigned short)
                           - sizeof(unsigned int) - sizeof(unsigned int) - sizeof(uint8_t)];
};
_Static_assert(sizeof(struct vsock_addr) == 16, "struct sockaddr_vm is 16 bytes (linux/vm_sockets.h)");

#define VSOCK_CID_ANY 0xFFFFFFFFu /* VMADDR_CID_ANY (-1U): bind to any CID */

#if defined(__has_include)
#if __has_include(<linux/vm_sockets.h>)
#include <linux/vm_sockets.h>
_Static_assert(sizeof(struct vsock_addr) == sizeof(struct sockaddr_vm), "sockaddr_vm's size");
_Static_assert(offsetof(struct vsock_addr, svm_port) == offsetof(struct sockaddr_vm, svm_port), "svm_port");
_Static_assert(offsetof(struct vsock_addr, svm_cid) == offsetof(struct sockaddr_vm, svm_cid), "svm_cid");
_Static_assert(offsetof(struct vsock_addr, svm_flags) == offsetof(struct sockaddr_vm, svm_flags), "svm_flags");
_Static_assert(VSOCK_CID_ANY == VMADDR_CID_ANY, "VMADDR_CID_ANY");
#endif
#endif

#define BUF_SIZE (64 * 1024) /* one buffer per direction: memory stays bounded whatever the peers do */

static bool verbose;

_Noreturn static void die(const char *what, int err)
{
    fprintf(stderr, "vsock-nc: %s: %s\n", what, strerror(err));
    exit(1);
}

static void warn(const char *what, int err)
{
    fprintf(stderr, "vsock-nc: %s: %s\n", what, strerror(err));
}

/* Without a complaint (--help): the usage on stdout, exit 0; else the complaint and the usage on stderr, exit 2. */
_Noreturn static void usage(const char *complaint)
{
    FILE *f = complaint ? stderr : stdout;
    if (complaint != NULL)
        fprintf(f, "vsock-nc: %s\n", complaint);
    fputs("usage: vsock-nc [-v] ADDRESS                         connect: stdin to the socket, the socket to stdout\n"
          "       vsock-nc -l [-v] ADDRESS --echo               listen: echo each connection's bytes back\n"
          "       vsock-nc -l [-v] ADDRESS -e PROGRAM [ARG...]  listen: run PROGRAM per connection, the socket as\n"
          "                                                     its stdin and stdout\n"
          "ADDRESS: vsock:CID:PORT (connect), vsock:PORT (listen, any CID), tcp:A.B.C.D:PORT (both);\n"
          "         vsock CID and PORT 0-4294967295, tcp PORT 1-65535\n",
          f);
    exit(complaint ? 2 : 0);
}

/* --- addresses --- */

struct address {
    union {
        struct sockaddr sa;
        struct vsock_addr vm;
        struct sockaddr_in in;
    } u;
    socklen_t len;
};

/* A decimal number of n characters (digits only; leading zeros are fine) that is at most max. */
static int parse_number(const char *s, size_t n, uint32_t max, uint32_t *value)
{
    uint64_t v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > max)
            return -1;
    }
    *value = (uint32_t)v;
    return 0;
}

/*
 * Parses ADDRESS for connecting (vsock:CID:PORT, tcp:A.B.C.D:PORT) or listening (vsock:PORT, tcp:A.B.C.D:PORT).
 * A malformed one is a usage error.
 */
static void parse_address(const char *s, bool listen, struct address *a)
{
    char msg[160];
    memset(a, 0, sizeof *a);
    if (strncmp(s, "vsock:", 6) == 0) {
        const char *rest = s + 6, *colon = strchr(rest, ':');
        uint32_t cid = VSOCK_CID_ANY, port;
        if (listen && colon != NULL)
            usage("to listen, a vsock address is vsock:PORT (any CID)");
        if (!listen && colon == NULL)
            usage("to connect, a vsock address is vsock:CID:PORT");
        if (colon != NULL && parse_number(rest, (size_t)(colon - rest), UINT32_MAX, &cid)) {
            snprintf(msg, sizeof msg, "vsock CID '%.*s' is not a number 0-4294967295", (int)(colon - rest), rest);
            usage(msg);
        }
        const char *p = colon ? colon + 1 : rest;
        if (parse_number(p, strlen(p), UINT32_MAX, &port)) {
            snprintf(msg, sizeof msg, "vsock port '%.40s' is not a number 0-4294967295", p);
            usage(msg);
        }
        a->u.vm.svm_family = AF_VSOCK;
        a->u.vm.svm_cid = cid;
        a->u.vm.svm_port = port;
        a->len = sizeof a->u.vm;
    } else if (strncmp(s, "tcp:", 4) == 0) {
        const char *rest = s + 4, *colon = strrchr(rest, ':');
        char host[INET_ADDRSTRLEN];
        uint32_t port;
        if (colon == NULL)
            usage("a tcp address is tcp:A.B.C.D:PORT");
        size_t n = (size_t)(colon - rest);
        bool ok = n < sizeof host;
        if (ok) {
            memcpy(host, rest, n);
            host[n] = '\0';
            ok = inet_pton(AF_INET, host, &a->u.in.sin_addr) == 1;
        }
        if (!ok) {
            snprintf(msg, sizeof msg, "tcp host '%.*s' is not a numeric IPv4 address", (int)(n > 40 ? 40 : n), rest);
            usage(msg);
        }
        if (parse_number(colon + 1, strlen(colon + 1), 65535, &port) || port == 0) {
            snprintf(msg, sizeof msg, "tcp port '%.40s' is not a number 1-65535", colon + 1);
            usage(msg);
        }
        a->u.in.sin_family = AF_INET;
        a->u.in.sin_port = htons((uint16_t)port);
        a->len = sizeof a->u.in;
    } else {
        snprintf(msg, sizeof msg, "'%.60s' is not an address (vsock:CID:PORT, vsock:PORT or tcp:A.B.C.D:PORT)", s);
        usage(msg);
    }
}

/* Writes an address as the command line spells it: vsock:CID:PORT, vsock:PORT (any CID), tcp:A.B.C.D:PORT. */
static void format_address(const struct sockaddr *sa, char *buf, size_t cap)
{
    if (sa->sa_family == AF_VSOCK) {
        const struct vsock_addr *vm = (const struct vsock_addr *)sa;
        if (vm->svm_cid == VSOCK_CID_ANY)
            snprintf(buf, cap, "vsock:%u", vm->svm_port);
        else
            snprintf(buf, cap, "vsock:%u:%u", vm->svm_cid, vm->svm_port);
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        char host[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, cap, "tcp:%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else {
        snprintf(buf, cap, "(address family %u)", (unsigned)sa->sa_family);
    }
}

/* --- connect: two pumps --- */

enum kind { KIND_SOCKET, KIND_OTHER };

/* What an fd is: a socket gets recv/send with MSG_DONTWAIT; anything else is read and written as it is. */
static enum kind kind_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) ? KIND_SOCKET : KIND_OTHER;
}

/* One direction: from -> buf -> to. */
struct pump {
    const char *from_name, *to_name;
    int from, to;
    enum kind from_kind, to_kind;
    size_t off, len; /* the bytes buf[off, off + len) are still to be written */
    bool eof;        /* from has ended */
    bool done;       /* ... and everything was written, and the end passed on to "to" */
    unsigned char buf[BUF_SIZE];
};

/*
 * Reads into the empty buffer. A socket is read with MSG_DONTWAIT; anything else only after poll said it is
 * readable (a pipe, a terminal or a file then does not block). Dies on an error.
 */
static void pump_read(struct pump *p)
{
    ssize_t n = p->from_kind == KIND_SOCKET ? recv(p->from, p->buf, sizeof p->buf, MSG_DONTWAIT)
                                            : read(p->from, p->buf, sizeof p->buf);
    if (n > 0) {
        p->off = 0;
        p->len = (size_t)n;
    } else if (n == 0) {
        p->eof = true;
    } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
        char what[96];
        snprintf(what, sizeof what, "read from %s", p->from_name);
        die(what, errno);
    }
}

/*
 * Writes what it can of the buffer without blocking: a socket with MSG_DONTWAIT; anything else at most PIPE_BUF
 * bytes after poll said it is writable (a pipe with room takes them whole). So one direction never waits for the
 * other. Dies on an error (a reset, a closed pipe: SIGPIPE is ignored).
 */
static void pump_write(struct pump *p)
{
    ssize_t n;
    if (p->to_kind == KIND_SOCKET)
        n = send(p->to, p->buf + p->off, p->len, MSG_DONTWAIT | MSG_NOSIGNAL);
    else
        n = write(p->to, p->buf + p->off, p->len < PIPE_BUF ? p->len : PIPE_BUF);
    if (n >= 0) {
        p->off += (size_t)n;
        p->len -= (size_t)n;
    } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
        char what[96];
        snprintf(what, sizeof what, "write to %s", p->to_name);
        die(what, errno);
    }
}

/*
 * Passes the end on: a socket's write side is shut down (the peer reads EOF and may still send), anything else is
 * closed. ENOTCONN: the peer is gone already (its reset is reported by the other direction, if it matters).
 */
static void pump_finish(struct pump *p)
{
    if (p->to_kind == KIND_SOCKET) {
        if (shutdown(p->to, SHUT_WR) < 0 && errno != ENOTCONN) {
            char what[96];
            snprintf(what, sizeof what, "shutdown of %s", p->to_name);
            die(what, errno);
        }
    } else {
        close(p->to);
    }
    p->done = true;
}

/* Copies stdin to sock and sock to stdout until both have ended. */
static void splice_stdio(int sock, const char *name)
{
    static struct pump up, down; /* static: 64 KiB buffers each; zero: empty, not ended */
    up.from_name = "stdin";
    up.from = STDIN_FILENO;
    up.from_kind = kind_of(STDIN_FILENO);
    up.to_name = down.from_name = name;
    up.to = down.from = sock;
    up.to_kind = down.from_kind = KIND_SOCKET;
    down.to_name = "stdout";
    down.to = STDOUT_FILENO;
    down.to_kind = kind_of(STDOUT_FILENO);
    struct pump *pumps[2] = { &up, &down };

    while (!up.done || !down.done) {
        struct pollfd fds[4];
        int slot[2][2]; /* per pump: its index in fds for reading, for writing; -1 for none */
        nfds_t n = 0;
        for (int i = 0; i < 2; i++) {
            struct pump *p = pumps[i];
            slot[i][0] = slot[i][1] = -1;
            if (p->done)
                continue;
            if (p->len == 0 && !p->eof) {
                slot[i][0] = (int)n;
                fds[n++] = (struct pollfd){ .fd = p->from, .events = POLLIN };
            } else if (p->len > 0) {
                slot[i][1] = (int)n;
                fds[n++] = (struct pollfd){ .fd = p->to, .events = POLLOUT };
            }
        }
        /*
         * A socket we wait to write to is polled with a timeout, and on the timeout written to anyway: after its
         * peer's reset, Linux's vsock reports neither POLLOUT nor POLLHUP for it (virtio_transport_do_close sets
         * only peer_shutdown, and vsock_poll in net/vmw_vsock/af_vsock.c then gives POLLRDHUP alone), so a writer
         * waiting for POLLOUT would wait forever, while send() says EPIPE at once.
         */
        int timeout = -1;
        for (int i = 0; i < 2; i++)
            if (!pumps[i]->done && pumps[i]->len > 0 && pumps[i]->to_kind == KIND_SOCKET)
                timeout = 1000;
        int ready = n > 0 ? poll(fds, n, timeout) : 0;
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            die("poll", errno);
        }
        if (ready == 0 && timeout >= 0) {
            for (int i = 0; i < 2; i++) {
                struct pump *p = pumps[i];
                if (!p->done && p->len > 0 && p->to_kind == KIND_SOCKET)
                    pump_write(p); /* MSG_DONTWAIT: EAGAIN if it is only slow; the error if it is dead */
                if (p->eof && p->len == 0 && !p->done)
                    pump_finish(p);
            }
            continue;
        }
        for (int i = 0; i < 2; i++) {
            struct pump *p = pumps[i];
            /* POLLHUP and POLLERR too: the read or write then says what happened (EOF, the error) */
            if (slot[i][0] >= 0 && fds[slot[i][0]].revents != 0)
                pump_read(p);
            else if (slot[i][1] >= 0 && fds[slot[i][1]].revents != 0)
                pump_write(p);
            if (p->eof && p->len == 0 && !p->done)
                pump_finish(p);
        }
    }
}

/* Connects to a (vsock or tcp). EINTR does not abandon the connection: its outcome is awaited. */
static int connect_to(const struct address *a, const char *name)
{
    char what[96];
    snprintf(what, sizeof what, "connect to %s", name);
    int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(what, sizeof what, "socket for %s", name);
        die(what, errno);
    }
    if (connect(fd, &a->u.sa, a->len) < 0) {
        if (errno != EINTR)
            die(what, errno);
        /* interrupted: the connection goes on; wait until it is made or failed, then take its error */
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        while (poll(&pfd, 1, -1) < 0)
            if (errno != EINTR)
                die(what, errno);
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            die(what, errno);
        if (err != 0)
            die(what, err);
    }
    return fd;
}

/* --- listen --- */

static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    errno = saved;
}

static void set_signal(int sig, void (*handler)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

/* Sends all n bytes (blocking): short writes and EINTR continue. Returns 0, or -1 with errno. */
static int send_all(int fd, const unsigned char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The --echo child: every byte back, then after the peer's EOF our own (a half-close), then close. */
static int echo(int fd, const char *peer)
{
    static unsigned char buf[BUF_SIZE];
    char what[96];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(what, sizeof what, "echo: read from %s", peer);
            warn(what, errno);
            return 1;
        }
        if (send_all(fd, buf, (size_t)n) < 0) {
            snprintf(what, sizeof what, "echo: write to %s", peer);
            warn(what, errno);
            return 1;
        }
    }
    if (shutdown(fd, SHUT_WR) < 0 && errno != ENOTCONN) {
        snprintf(what, sizeof what, "echo: shutdown of %s", peer);
        warn(what, errno);
        return 1;
    }
    close(fd);
    return 0;
}

/* The -e child: the socket becomes stdin and stdout, signals are as they were for PROGRAM, then exec. */
_Noreturn static void run_program(int fd, char **argv)
{
    if (dup2(fd, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0) { /* dup2 clears FD_CLOEXEC on 0 and 1 */
        warn("dup2", errno);
        _exit(1);
    }
    if (fd > STDOUT_FILENO)
        close(fd);
    set_signal(SIGPIPE, SIG_DFL, 0); /* an ignored signal would stay ignored across exec */
    execvp(argv[0], argv);
    char what[96];
    snprintf(what, sizeof what, "cannot run '%.60s'", argv[0]);
    warn(what, errno);
    _exit(127);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Listens on a and serves each connection in a child: echo (program == NULL) or exec program. Never returns. */
_Noreturn static void serve(const struct address *a, const char *name, char **program)
{
    char what[96];
    int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(what, sizeof what, "socket for %s", name);
        die(what, errno);
    }
    int one = 1;
    if (a->u.sa.sa_family == AF_INET && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("setsockopt SO_REUSEADDR", errno);
    snprintf(what, sizeof what, "bind to %s", name);
    if (bind(fd, &a->u.sa, a->len) < 0)
        die(what, errno);
    snprintf(what, sizeof what, "listen on %s", name);
    if (listen(fd, SOMAXCONN) < 0)
        die(what, errno);
    /* the address as bound: with port 4294967295 (VMADDR_PORT_ANY) the kernel picked one */
    struct address bound;
    bound.len = sizeof bound.u;
    char here[64];
    if (getsockname(fd, &bound.u.sa, &bound.len) == 0)
        format_address(&bound.u.sa, here, sizeof here);
    else
        snprintf(here, sizeof here, "%s", name);
    set_signal(SIGCHLD, on_sigchld, SA_RESTART | SA_NOCLDSTOP);
    fprintf(stderr, "vsock-nc: listening on %s\n", here);

    for (;;) {
        struct sockaddr_storage peer_sa;
        socklen_t peer_len = sizeof peer_sa;
        int c = accept4(fd, (struct sockaddr *)&peer_sa, &peer_len, SOCK_CLOEXEC);
        if (c < 0) {
            switch (errno) {
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
            case EPERM:
                continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM: /* out of something: say so, let children end, try again */
                snprintf(what, sizeof what, "accept on %s", here);
                warn(what, errno);
                sleep_ms(100);
                continue;
            default:
                snprintf(what, sizeof what, "accept on %s", here);
                die(what, errno);
            }
        }
        char peer[64];
        format_address((struct sockaddr *)&peer_sa, peer, sizeof peer);
        if (verbose)
            fprintf(stderr, "vsock-nc: connection from %s on %s\n", peer, here);
        pid_t pid = fork();
        if (pid < 0) {
            warn("fork", errno);
            close(c);
            sleep_ms(100);
            continue;
        }
        if (pid == 0) {
            close(fd);
            set_signal(SIGCHLD, SIG_DFL, 0);
            if (program != NULL)
                run_program(c, program);
            _exit(echo(c, peer));
        }
        close(c);
    }
}

int main(int argc, char **argv)
{
    bool listen_mode = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            usage(NULL);
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "--echo") == 0 || strcmp(a, "-e") == 0)
            usage(listen_mode ? "ADDRESS comes before --echo and -e" : "--echo and -e need -l (listen)");
        for (const char *p = a + 1; *p; p++) { /* -l, -v, and both at once: -lv, -vl */
            if (*p == 'l')
                listen_mode = true;
            else if (*p == 'v')
                verbose = true;
            else {
                char msg[80];
                snprintf(msg, sizeof msg, "unknown option '%.40s'", a);
                usage(msg);
            }
        }
    }
    if (i >= argc)
        usage("no ADDRESS");
    const char *name = argv[i++];
    struct address a;
    parse_address(name, listen_mode, &a);

    set_signal(SIGPIPE, SIG_IGN, 0); /* a closed peer is EPIPE, reported, not a silent death */

    if (!listen_mode) {
        if (i < argc) {
            char msg[96];
            if (strcmp(argv[i], "--echo") == 0 || strcmp(argv[i], "-e") == 0)
                snprintf(msg, sizeof msg, "%s needs -l (listen)", argv[i]);
            else
                snprintf(msg, sizeof msg, "unexpected argument '%.40s' after ADDRESS", argv[i]);
            usage(msg);
        }
        int fd = connect_to(&a, name);
        if (verbose)
            fprintf(stderr, "vsock-nc: connected to %s\n", name);
        splice_stdio(fd, name);
        return 0;
    }
    if (i < argc && strcmp(argv[i], "--echo") == 0) {
        if (i + 1 < argc)
            usage("--echo takes no arguments");
        serve(&a, name, NULL);
    }
    if (i < argc && strcmp(argv[i], "-e") == 0) {
        if (i + 1 >= argc)
            usage("-e needs a PROGRAM");
        serve(&a, name, argv + i + 1);
    }
    usage(i < argc ? "after a listening ADDRESS comes --echo or -e PROGRAM [ARG...]"
                   : "to listen, say what to do: --echo or -e PROGRAM [ARG...]");
}
