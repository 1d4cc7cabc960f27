/*
 * heat.c: an MPI program checkpointed by snapc, on libsnapc.
 *
 *   mpirun -np P heat [--iters N] [--cells C] [--pace-us U] [--timing [--no-agree]]
 *
 * --pace-us sleeps after each iteration, to stretch a run (HEAT_PACE_US,
 * when set, wins: a restarted job runs its recorded command line with the
 * environment of its restart); the result does not depend on it.
 *
 * The 1-D heat equation on a rod split into P pieces of C cells each: every
 * iteration each rank exchanges its edge cells with its neighbours
 * (MPI_Sendrecv) and takes one explicit step. At the end rank 0 prints the
 * checksum of the whole field (FNV-1a of each rank's cells, folded in rank
 * order): a run restarted from any snapshot ends with the checksum of an
 * uninterrupted one, because every rank's part of a snapshot is the field
 * at one and the same iteration.
 *
 * That is the agreement below (docs/PROTOCOL.md §11): a checkpoint signal
 * reaches each rank at its own moment; acting on it at once would leave a
 * rank in its handshake while its neighbour waits for its edge cells. So
 * after each iteration the ranks combine their "a checkpoint is pending"
 * flags with one small MPI_Allreduce, and when any rank has one, all of
 * them call snapc_progress_wait() at that same iteration: each takes its
 * own signal there (waiting for it if it has not come yet), and no
 * message is in flight, since every rank finished the iteration's exchange
 * before the allreduce could end. The program calls snapc nowhere else.
 *
 * Each rank's snapshot holds "iter" (the iteration, in text) and "field"
 * (its cells, raw doubles). Output, tagged by mpirun with the rank when
 * asked (--tag-output): "start iter=<k>", "checkpoint iter=<k>" per
 * snapshot, and on rank 0 "result iters=<n> checksum=<x>". --timing adds,
 * on rank 0, nanoseconds per iteration of the whole loop and of the
 * agreement alone: the mean, and the best batch of 100 iterations (what an
 * undisturbed machine gives; the slowest rank's); --no-agree leaves the
 * agreement out (the ranks then never take a checkpoint: it is only there
 * to measure what the agreement costs).
 *
 * Build: mpicc heat.c $(pkg-config --cflags --libs snapc) -o heat
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <snapc.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct heat {
    int rank, nranks;
    long cells;      /* this rank's cells; u[0] and u[cells + 1] are its halo */
    long iter;       /* iterations done */
    double *u, *next;
};

static const double ALPHA = 0.25;
static const double PI = 3.14159265358979323846;

static void init(struct heat *h) {
    long global = h->cells * h->nranks;
    for (long i = 1; i <= h->cells; i++) {
        long x = h->rank * h->cells + (i - 1);
        h->u[i] = 50.0 * sin(PI * (double)x / (double)global);
    }
    /* The rod's ends: hot on the left, cold on the right. */
    h->u[0] = h->rank == 0 ? 100.0 : 0.0;
    h->u[h->cells + 1] = 0.0;
    h->next[0] = h->u[0];
    h->next[h->cells + 1] = h->u[h->cells + 1];
}

static void iterate(struct heat *h) {
    int left = h->rank > 0 ? h->rank - 1 : MPI_PROC_NULL;
    int right = h->rank + 1 < h->nranks ? h->rank + 1 : MPI_PROC_NULL;
    MPI_Sendrecv(&h->u[1], 1, MPI_DOUBLE, left, 0, &h->u[h->cells + 1], 1, MPI_DOUBLE, right, 0,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Sendrecv(&h->u[h->cells], 1, MPI_DOUBLE, right, 1, &h->u[0], 1, MPI_DOUBLE, left, 1,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    for (long i = 1; i <= h->cells; i++)
        h->next[i] = h->u[i] + ALPHA * (h->u[i - 1] - 2.0 * h->u[i] + h->u[i + 1]);
    double *t = h->u;
    h->u = h->next;
    h->next = t;
    h->next[0] = h->u[0];
    h->next[h->cells + 1] = h->u[h->cells + 1];
    h->iter++;
}

static uint64_t fnv(uint64_t hash, const void *bytes, size_t len) {
    const unsigned char *b = bytes;
    for (size_t i = 0; i < len; i++) {
        hash ^= b[i];
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

static const uint64_t FNV_BASIS = 0xcbf29ce484222325ULL;

/* Writes `len` bytes to dir/name, private, never through a symlink. */
static int put(const char *dir, const char *name, const void *bytes, size_t len) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "heat: %s: %s\n", path, strerror(errno));
        return -1;
    }
    const char *p = bytes;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "heat: %s: %s\n", path, strerror(errno));
            close(fd);
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd);
}

/* Reads exactly `len` bytes of dir/name. */
static int get(const char *dir, const char *name, void *bytes, size_t len) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return -1;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "heat: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t got = fread(bytes, 1, len, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != len || extra != EOF) {
        fprintf(stderr, "heat: %s: not %zu bytes\n", path, len);
        return -1;
    }
    return 0;
}

static int save(void *user, const char *dir) {
    struct heat *h = user;
    char iter[32];
    int n = snprintf(iter, sizeof iter, "%ld\n", h->iter);
    if (put(dir, "iter", iter, (size_t)n) != 0 ||
        put(dir, "field", &h->u[1], (size_t)h->cells * sizeof(double)) != 0)
        return SNAPC_ERROR;
    return SNAPC_CONTINUE;
}

static int load(void *user, const char *dir) {
    struct heat *h = user;
    char iter[32] = {0};
    char path[4096];
    if (snprintf(path, sizeof path, "%s/iter", dir) >= (int)sizeof path)
        return -1;
    FILE *f = fopen(path, "r");
    if (!f || !fgets(iter, sizeof iter, f)) {
        fprintf(stderr, "heat: %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    char *end;
    h->iter = strtol(iter, &end, 10);
    if (end == iter || h->iter < 0)
        return -1;
    return get(dir, "field", &h->u[1], (size_t)h->cells * sizeof(double));
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int usage(void) {
    fprintf(stderr, "usage: heat [--iters N] [--cells C] [--pace-us U] [--timing [--no-agree]]\n");
    return 2;
}

int main(int argc, char **argv) {
    long iters = 20000, cells = 4096, pace_us = 0;
    int timing = 0, agree = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--timing")) {
            timing = 1;
            continue;
        }
        if (!strcmp(argv[i], "--no-agree")) {
            agree = 0;
            continue;
        }
        if (i + 1 >= argc)
            return usage();
        long v = strtol(argv[i + 1], NULL, 10);
        if (!strcmp(argv[i], "--iters") && v >= 0)
            iters = v;
        else if (!strcmp(argv[i], "--cells") && v > 0)
            cells = v;
        else if (!strcmp(argv[i], "--pace-us") && v >= 0)
            pace_us = v;
        else
            return usage();
        i++;
    }
    const char *pace = getenv("HEAT_PACE_US");
    if (pace && *pace)
        pace_us = strtol(pace, NULL, 10);
    MPI_Init(&argc, &argv);
    struct heat h = {.cells = cells};
    MPI_Comm_rank(MPI_COMM_WORLD, &h.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &h.nranks);
    h.u = calloc((size_t)cells + 2, sizeof(double));
    h.next = calloc((size_t)cells + 2, sizeof(double));
    if (!h.u || !h.next)
        MPI_Abort(MPI_COMM_WORLD, 1);
    init(&h);

    /* After MPI_Init: the restart hook loads this rank's part of the
     * snapshot (SNAPC_RESTART_SNAPSHOT/rank-<rank>, the rank from
     * OMPI_COMM_WORLD_RANK) into the field allocated above. */
    snapc_hooks hooks = {.checkpoint = save, .restart = load};
    snapc *s = snapc_start(&hooks, &h);
    if (!s) {
        fprintf(stderr, "heat: rank %d: snapc_start: %s\n", h.rank, snapc_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    /* Every rank restarts from the same iteration, or none runs on. */
    long lo = h.iter, hi = h.iter;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
    if (lo != hi) {
        if (h.rank == 0)
            fprintf(stderr, "heat: the ranks restart from iterations %ld to %ld\n", lo, hi);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    printf("start iter=%ld\n", h.iter);
    fflush(stdout);

    /* How long the signal the agreement announced may take to come. */
    const char *timeout = getenv("SNAPC_TIMEOUT");
    double wait_s = timeout ? strtod(timeout, NULL) : 10.0;
    uint32_t wait_ms = wait_s > 0 && wait_s < 4e6 ? (uint32_t)(wait_s * 1000.0) : 10000;

    double agree_ns = 0;
    long timed = 0;
    /* The best batch of 100 iterations: [0] the loop, [1] the agreement. */
    double best[2] = {1e300, 1e300}, batch_start = 0, batch_agree = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    double start = now_ns();
    while (h.iter < iters) {
        if (timed % 100 == 0) {
            double now = now_ns();
            if (timed > 0) {
                best[0] = fmin(best[0], (now - batch_start) / 100.0);
                best[1] = fmin(best[1], batch_agree / 100.0);
            }
            batch_start = now;
            batch_agree = 0;
        }
        iterate(&h);
        timed++;
        /* The agreement: one small allreduce per iteration. */
        double before = now_ns();
        int pending = snapc_pending(s), any = 0;
        if (agree)
            MPI_Allreduce(&pending, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
        agree_ns += now_ns() - before;
        batch_agree += now_ns() - before;
        if (any) {
            int ev = snapc_progress_wait(s, wait_ms);
            if (ev == SNAPC_EVENT_CHECKPOINT) {
                printf("checkpoint iter=%ld\n", h.iter);
                fflush(stdout);
            } else if (ev == SNAPC_E_TIMEOUT) {
                fprintf(stderr, "heat: rank %d: no checkpoint signal within %u ms at iteration %ld\n",
                        h.rank, wait_ms, h.iter);
            } else if (ev < 0 || ev == SNAPC_EVENT_CHECKPOINT_FAILED) {
                fprintf(stderr, "heat: rank %d: checkpoint at iteration %ld failed: %s\n", h.rank,
                        h.iter, snapc_last_error());
            }
            if (snapc_is_terminating(s) == 1)
                break;
        }
        if (pace_us > 0) {
            struct timespec nap = {pace_us / 1000000, (pace_us % 1000000) * 1000};
            nanosleep(&nap, NULL);
        }
    }

    MPI_Barrier(MPI_COMM_WORLD);
    double loop_ns = now_ns() - start;
    uint64_t mine = fnv(FNV_BASIS, &h.u[1], (size_t)h.cells * sizeof(double));
    uint64_t *all = h.rank == 0 ? calloc((size_t)h.nranks, sizeof(uint64_t)) : NULL;
    MPI_Gather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    double agreement = timed ? agree_ns / (double)timed : 0;
    MPI_Reduce(h.rank == 0 ? MPI_IN_PLACE : &agreement, &agreement, 1, MPI_DOUBLE, MPI_SUM, 0,
               MPI_COMM_WORLD);
    MPI_Reduce(h.rank == 0 ? MPI_IN_PLACE : best, best, 2, MPI_DOUBLE, MPI_MAX, 0,
               MPI_COMM_WORLD);
    if (h.rank == 0) {
        printf("result iters=%ld checksum=%016" PRIx64 "\n", h.iter,
               fnv(FNV_BASIS, all, (size_t)h.nranks * sizeof(uint64_t)));
        if (timing)
            printf("timing: ranks=%d cells=%ld iterations=%ld loop_ns=%.0f agreement_ns=%.0f "
                   "best_loop_ns=%.0f best_agreement_ns=%.0f%s\n",
                   h.nranks, h.cells, timed, timed ? loop_ns / (double)timed : 0,
                   agreement / (double)h.nranks, best[0], best[1],
                   agree ? "" : " (no agreement)");
        free(all);
    }
    snapc_stop(s);
    free(h.u);
    free(h.next);
    MPI_Finalize();
    return 0;
}
