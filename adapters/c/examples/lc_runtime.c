/*
 * lc_runtime.c: a small C runtime on libsnapc's runtime API. It checkpoints
 * running snapc processes over real FIFOs, as a node daemon would: one
 * global coordinator (snapc_gc_*) and one local coordinator (snapc_lc_*)
 * in storage it allocates, one poll(2) loop of its own, the clock read by
 * it and passed in, every action carried out here.
 *
 *   lc_runtime --pipe-dir DIR [--timeout-ms T] [--term] [--checkpoints K] PID...
 *
 * Each PID must be a snapc process using DIR as its pipe directory
 * (SNAPC_PIPE_DIR) and taking SIGUSR1. Runs K checkpoints (default 1) one
 * after the other, printing one line per step ("signal pid=P", "wrote
 * pid=P len=L", "report pid=P ...") and per checkpoint ("checkpoint ok
 * seq=S handle=H reference=R" or "checkpoint failed ..."). A process that
 * vanishes mid-handshake fails that checkpoint within the deadlines (the
 * others are released and go on); it is then removed from the table
 * ("removed pid=P") and the next checkpoint goes on without it. Exits 0
 * when every checkpoint succeeded, else 1.
 *
 * Build: cc lc_runtime.c $(pkg-config --cflags --libs snapc) -o lc_runtime
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <snapc.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum wait { NONE, WATCH, OPEN, READ, STOPPED };

struct proc {
    uint32_t pid;
    snapc_slot slot;    /* as the last action named it */
    enum wait wait;     /* what the slot's outstanding action waits for */
    uint32_t n;         /* the handshake counter of the names found */
    uint64_t signalled; /* when the last signal went out */
    int gone;           /* removed from the table */
    int to_app, from_app; /* prog_read (we write), prog_write (we read) */
    uint8_t buf[SNAPC_MAX_FRAME_LEN];
    size_t want, have;
};

static const char *dir;
static struct proc *procs;
static size_t nprocs;
static snapc_lc *lc;
static snapc_gc *gc;
static uint8_t msg[SNAPC_MAX_MESSAGE_LEN];
static int finished, succeeded;

static uint64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* A misuse of the API ends the program; an input the machine did not take
 * (it moved on meanwhile) is only noted. */
static void check(int status, const char *what) {
    if (status == SNAPC_E_INVAL || status == SNAPC_E_NOSPACE || status == SNAPC_E_PANIC) {
        fprintf(stderr, "lc_runtime: %s: %s\n", what, snapc_strerror(status));
        exit(2);
    }
    if (status < 0)
        fprintf(stderr, "lc_runtime: %s not taken: %s\n", what, snapc_strerror(status));
}

static struct proc *by_slot(snapc_slot s) {
    return s.index < nprocs ? &procs[s.index] : NULL;
}

static void close_fds(struct proc *p) {
    if (p->to_app >= 0)
        close(p->to_app);
    if (p->from_app >= 0)
        close(p->from_app);
    p->to_app = p->from_app = -1;
    p->wait = NONE;
}

/*
 * The newest pair of FIFO names of `pid` in the pipe directory. A
 * coordinator that did not see the process's earlier handshakes (this one
 * starts fresh) learns its handshake counter from the names it creates.
 */
static int find_names(uint32_t pid, uint32_t *n) {
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned p, k;
        char rest;
        if (sscanf(e->d_name, "opal_cr_prog_write.%u_%u%c", &p, &k, &rest) != 2 || p != pid)
            continue;
        char name[SNAPC_MAX_FIFO_NAME_LEN + 1];
        struct stat st;
        check(snapc_fifo_name(SNAPC_FIFO_PROG_READ, pid, k, name, sizeof name), "fifo name");
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISFIFO(st.st_mode) &&
            (!found || k > *n)) {
            *n = k;
            found = 1;
        }
    }
    closedir(d);
    return found;
}

/* Opens one FIFO of the pair: never through a symlink, only a FIFO of ours. */
static int open_fifo(int which, struct proc *p, int flags) {
    char name[SNAPC_MAX_FIFO_NAME_LEN + 1], path[4096];
    check(snapc_fifo_name(which, p->pid, p->n, name, sizeof name), "fifo name");
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, flags | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode) || st.st_uid != geteuid()) {
        close(fd);
        return -EPERM;
    }
    return fd;
}

static void try_open(struct proc *p) {
    if (p->to_app < 0) {
        int fd = open_fifo(SNAPC_FIFO_PROG_READ, p, O_WRONLY);
        if (fd == -ENXIO)
            return; /* the process has not opened its end yet: next tick */
        if (fd < 0) {
            close_fds(p);
            check(snapc_lc_io_error(lc, now_us(), p->slot, SNAPC_IO_FAILED), "io_error");
            return;
        }
        p->to_app = fd;
    }
    int fd = open_fifo(SNAPC_FIFO_PROG_WRITE, p, O_RDONLY);
    if (fd < 0) {
        close_fds(p);
        check(snapc_lc_io_error(lc, now_us(), p->slot, SNAPC_IO_FAILED), "io_error");
        return;
    }
    p->from_app = fd;
    p->wait = NONE;
    check(snapc_lc_opened(lc, now_us(), p->slot), "opened");
}

static void gc_actions(void);
static void run(void);

/* Carries out every action the local coordinator has. */
static void lc_actions(void) {
    snapc_lc_action a;
    int r;
    while ((r = snapc_lc_poll_action(lc, &a, msg, sizeof msg)) == 1) {
        struct proc *p = by_slot(a.slot);
        switch (a.kind) {
        case SNAPC_LC_SIGNAL:
            printf("signal pid=%u\n", a.pid);
            p->slot = a.slot;
            p->signalled = now_us();
            if (kill((pid_t)a.pid, SIGUSR1) != 0)
                check(snapc_lc_io_error(lc, now_us(), a.slot, SNAPC_IO_PEER_GONE), "io_error");
            break;
        case SNAPC_LC_WATCH_FIFOS:
            p->slot = a.slot;
            p->wait = WATCH;
            break;
        case SNAPC_LC_OPEN_FIFOS:
            p->slot = a.slot;
            p->wait = OPEN;
            try_open(p);
            break;
        case SNAPC_LC_WRITE: {
            p->slot = a.slot;
            ssize_t w = write(p->to_app, a.bytes, a.len); /* <= PIPE_BUF: all or nothing */
            printf("wrote pid=%u len=%zu\n", p->pid, a.len);
            if (w == (ssize_t)a.len)
                check(snapc_lc_written(lc, now_us(), a.slot), "written");
            else
                check(snapc_lc_io_error(lc, now_us(), a.slot,
                                        errno == EPIPE ? SNAPC_IO_PEER_GONE : SNAPC_IO_FAILED),
                      "io_error");
            break;
        }
        case SNAPC_LC_READ:
            p->slot = a.slot;
            p->wait = READ;
            p->want = a.len;
            p->have = 0;
            break;
        case SNAPC_LC_WAIT_STOPPED:
            p->slot = a.slot;
            p->wait = STOPPED;
            break;
        case SNAPC_LC_CLOSE:
            close_fds(p);
            break;
        case SNAPC_LC_SEND_TO_GC:
            /* One node: the message goes straight to the global coordinator. */
            snapc_gc_lc_message(gc, now_us(), 0, msg, a.len);
            gc_actions();
            break;
        case SNAPC_LC_REPORT:
            if (a.report.ok)
                printf("report pid=%u ok state=%d total_us=%llu\n", a.report.pid, a.report.state,
                       (unsigned long long)a.report.total_us);
            else
                printf("report pid=%u failed: %s\n", a.report.pid, a.report.text);
            break;
        default:
            break;
        }
        fflush(stdout);
    }
    check(r, "lc poll_action");
}

static void gc_actions(void) {
    snapc_gc_action a;
    int r;
    while ((r = snapc_gc_poll_action(gc, &a, msg, sizeof msg)) == 1) {
        switch (a.kind) {
        case SNAPC_GC_SEND_TO_LCS:
            snapc_lc_gc_message(lc, now_us(), msg, a.len);
            lc_actions();
            break;
        case SNAPC_GC_ESTABLISHED:
            printf("established seq=%u handle=%u reference=%s\n", a.seq, a.handle, a.reference);
            break;
        case SNAPC_GC_FINISHED:
            finished = 1;
            succeeded = a.report.ok;
            if (a.report.ok)
                printf("checkpoint ok seq=%lld handle=%u reference=%s\n", (long long)a.report.seq,
                       a.report.handle, a.report.reference);
            else
                printf("checkpoint failed seq=%lld failure=%d\n", (long long)a.report.seq,
                       a.report.failure);
            break;
        default: /* SEND_TO_RANK: no rank asked here */
            break;
        }
        fflush(stdout);
    }
    check(r, "gc poll_action");
}

/* Reads what a slot waits for; a whole frame goes to the machine. */
static void read_ready(struct proc *p) {
    ssize_t got = read(p->from_app, p->buf + p->have, p->want - p->have);
    if (got < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (got <= 0) { /* end of file: the process is gone */
        p->wait = NONE;
        check(snapc_lc_io_error(lc, now_us(), p->slot, got == 0 ? SNAPC_IO_PEER_GONE : SNAPC_IO_FAILED),
              "io_error");
        return;
    }
    p->have += (size_t)got;
    if (p->have == p->want) {
        p->wait = NONE;
        check(snapc_lc_read(lc, now_us(), p->slot, p->buf, p->have), "read");
    }
}

/* Exited (a zombie too) or never there. */
static int is_gone(uint32_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%u/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    int gone = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "State:", 6))
            gone = strchr(line, 'Z') != NULL || strchr(line, 'X') != NULL;
    fclose(f);
    return gone;
}

static int is_stopped(uint32_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%u/status", pid);
    FILE *f = fopen(path, "r");
    int stopped = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "State:", 6))
            stopped = strchr(line, 'T') != NULL;
    if (f)
        fclose(f);
    return stopped;
}

int main(int argc, char **argv) {
    uint64_t timeout_us = 10u * 1000000u;
    int term = 0, checkpoints = 1, failures = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--pipe-dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
            timeout_us = strtoull(argv[++i], NULL, 10) * 1000u;
        else if (!strcmp(argv[i], "--term"))
            term = 1;
        else if (!strcmp(argv[i], "--checkpoints") && i + 1 < argc)
            checkpoints = atoi(argv[++i]);
        else
            break;
    }
    nprocs = (size_t)(argc - i);
    if (!dir || nprocs == 0) {
        fprintf(stderr, "usage: lc_runtime --pipe-dir DIR [--timeout-ms T] [--term] [--checkpoints K] PID...\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a vanished reader is EPIPE, not our end */

    /* The machines live in storage sized for this job and owned here. */
    snapc_lc_config lcc;
    check(snapc_lc_config_default(&lcc), "lc config");
    lcc.fifos_us = lcc.open_us = lcc.write_us = lcc.response_us = lcc.final_state_us = timeout_us;
    lcc.stop_us = lcc.verdict_us = timeout_us;
    size_t lc_size = snapc_lc_storage_size(nprocs);
    void *lc_mem = malloc(lc_size);
    check(snapc_lc_init(lc_mem, lc_size, nprocs, &lcc, &lc), "lc init");

    snapc_gc_config gcc;
    check(snapc_gc_config_default(&gcc, 1, (uint32_t)nprocs), "gc config");
    size_t gc_size = snapc_gc_storage_size(1, (uint32_t)nprocs);
    void *gc_mem = malloc(gc_size);
    check(snapc_gc_init(gc_mem, gc_size, 1, &gcc, &gc), "gc init");

    procs = calloc(nprocs, sizeof *procs);
    for (size_t k = 0; k < nprocs; k++) {
        struct proc *p = &procs[k];
        p->pid = (uint32_t)strtoul(argv[i + k], NULL, 10);
        p->to_app = p->from_app = -1;
        snapc_name name = {1, (uint32_t)k};
        check(snapc_lc_add_process(lc, name, p->pid, &p->slot), "add process");
    }

    /* Rank 0's INIT makes the job checkpointable; then the runtime's own command. */
    snapc_request init = {.op = SNAPC_OP_INIT};
    size_t len = 0;
    check(snapc_request_encode(1, &init, msg, sizeof msg, &len), "encode INIT");
    check(snapc_gc_rank_message(gc, now_us(), 0, msg, len), "INIT");
    for (int c = 0; c < checkpoints; c++) {
        /* Processes that ended are no longer the job's. */
        for (size_t k = 0; k < nprocs; k++) {
            if (!procs[k].gone && is_gone(procs[k].pid)) {
                snapc_name name = {1, (uint32_t)k};
                check(snapc_lc_remove_process(lc, now_us(), name), "remove process");
                procs[k].gone = 1;
                printf("removed pid=%u\n", procs[k].pid);
            }
        }
        finished = 0;
        check(snapc_gc_command(gc, now_us(), SNAPC_GC_CHECKPOINT, term, 0), "checkpoint");
        gc_actions();
        lc_actions();
        run();
        failures += !succeeded;
    }
    for (size_t k = 0; k < nprocs; k++)
        close_fds(&procs[k]);
    snapc_lc_fini(lc);
    snapc_gc_fini(gc);
    free(lc_mem);
    free(gc_mem);
    free(procs);
    return failures ? 1 : 0;
}

/* The event loop, until the checkpoint finished. */
static void run(void) {
    while (!finished) {
        struct pollfd fds[nprocs];
        int ticking = 0;
        for (size_t k = 0; k < nprocs; k++) {
            fds[k].fd = procs[k].wait == READ ? procs[k].from_app : -1;
            fds[k].events = POLLIN;
            ticking |= procs[k].wait == WATCH || procs[k].wait == OPEN || procs[k].wait == STOPPED;
        }
        /* Sleep until a frame comes, the next deadline, or a 1 ms tick while watching. */
        uint64_t now = now_us(), deadline = UINT64_MAX, t;
        if (snapc_lc_poll_timeout(lc, &t) == 1 && t < deadline)
            deadline = t;
        if (snapc_gc_poll_timeout(gc, &t) == 1 && t < deadline)
            deadline = t;
        int wait_ms = deadline == UINT64_MAX ? 1000 : deadline <= now ? 0 : (int)((deadline - now + 999) / 1000);
        if (ticking && wait_ms > 1)
            wait_ms = 1;
        if (wait_ms > 1000)
            wait_ms = 1000;
        poll(fds, (nfds_t)nprocs, wait_ms);

        for (size_t k = 0; k < nprocs; k++) {
            struct proc *p = &procs[k];
            if (p->wait == READ && (fds[k].revents & (POLLIN | POLLHUP | POLLERR)))
                read_ready(p);
            else if (p->wait == WATCH && find_names(p->pid, &p->n)) {
                p->wait = NONE;
                check(snapc_lc_fifos_exist(lc, now_us(), p->slot), "fifos exist");
            } else if (p->wait == WATCH && now_us() - p->signalled > 50000) {
                /* A signal that came while the process still ended its
                 * previous handshake is not acted on: repeat it until the
                 * names appear. */
                p->signalled = now_us();
                kill((pid_t)p->pid, SIGUSR1);
            } else if (p->wait == OPEN)
                try_open(p);
            else if (p->wait == STOPPED && is_stopped(p->pid)) {
                p->wait = NONE;
                check(snapc_lc_stopped(lc, now_us(), p->slot), "stopped");
            }
        }
        now = now_us();
        check(snapc_lc_timeout(lc, now), "lc timeout");
        check(snapc_gc_timeout(gc, now), "gc timeout");
        lc_actions();
        gc_actions();
    }
}
