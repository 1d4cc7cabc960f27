/*
 * counter.c: the `counter` example application in C, on libsnapc.
 *
 *   counter [--run-for SECONDS | --steps N [--pace-us U]] [--request-checkpoint-at STEP]
 *
 * The same computation as the Rust `counter` (adapters/runtime/src/counter.rs):
 * a checksum folded over many steps, snapc_progress() between slices of
 * 2,000 steps, the state saved by the checkpoint hook and loaded by the
 * restart hook. With --steps the checksum is seeded with the rank
 * (SNAPC_RANK), so that a run restarted from any snapshot ends with the
 * result of an uninterrupted one, and with the Rust counter's.
 *
 * Output: "pid=<pid>", "start steps=<n>", one "checkpoint n=<n> handle=<h>
 * state=<STATE>" line per checkpoint, "result steps=<n> checksum=<x>".
 * Configured by the SNAPC_* environment (snapc_start).
 *
 * Build: cc counter.c $(pkg-config --cflags --libs snapc) -o counter
 */
#define _POSIX_C_SOURCE 200809L
#include <snapc.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct state {
    uint64_t steps;
    uint64_t checksum;
};

static void step(struct state *s) {
    s->steps += 1;
    s->checksum = ((s->checksum << 5) | (s->checksum >> 59)) ^ (s->steps * 0x9e3779b97f4a7c15ULL);
}

static int save(void *user, const char *dir) {
    const struct state *s = user;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/state", dir) >= (int)sizeof path)
        return SNAPC_ERROR;
    /* Private, as the snapshot directory it goes into. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "counter: %s: %s\n", path, strerror(errno));
        return SNAPC_ERROR;
    }
    char line[64];
    int n = snprintf(line, sizeof line, "%" PRIu64 " %" PRIu64 "\n", s->steps, s->checksum);
    int ok = write(fd, line, (size_t)n) == n;
    ok = (close(fd) == 0) && ok;
    return ok ? SNAPC_CONTINUE : SNAPC_ERROR;
}

static int load(void *user, const char *dir) {
    struct state *s = user;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/state", dir) >= (int)sizeof path)
        return -1;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "counter: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int got = fscanf(f, "%" SCNu64 " %" SCNu64, &s->steps, &s->checksum);
    fclose(f);
    return got == 2 ? 0 : -1;
}

static const char *state_name(int state) {
    static const char *names[] = {"NONE", "CHECKPOINT", "RESTART_PRE", "RESTART",
                                  "CONTINUE", "TERM", "RUNNING", "ERROR"};
    return state >= 0 && state < 8 ? names[state] : "?";
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int usage(void) {
    fprintf(stderr, "usage: counter [--run-for SECONDS | --steps N [--pace-us U]] [--request-checkpoint-at STEP]\n");
    return 2;
}

int main(int argc, char **argv) {
    double run_for = 5.0;
    uint64_t total = 0, pace_us = 0, request_at = 0;
    int steps_mode = 0, request = 0;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            return usage();
        const char *v = argv[i + 1];
        if (!strcmp(argv[i], "--run-for"))
            run_for = atof(v);
        else if (!strcmp(argv[i], "--steps"))
            total = strtoull(v, NULL, 10), steps_mode = 1;
        else if (!strcmp(argv[i], "--pace-us"))
            pace_us = strtoull(v, NULL, 10);
        else if (!strcmp(argv[i], "--request-checkpoint-at"))
            request_at = strtoull(v, NULL, 10), request = 1;
        else
            return usage();
    }
    if (snapc_abi_version() != SNAPC_ABI_VERSION) {
        fprintf(stderr, "counter: libsnapc ABI %u, built for %u\n", snapc_abi_version(), SNAPC_ABI_VERSION);
        return 1;
    }
    const char *rank = getenv("SNAPC_RANK");
    struct state st = {0, steps_mode && rank ? strtoull(rank, NULL, 10) : 0};
    /* Rank 0 asks, once: a run restarted from a snapshot does not ask again. */
    if (getenv("SNAPC_RESTART_DIR") || (rank && strtoull(rank, NULL, 10) != 0))
        request = 0;
    /* snapc's log on standard error, as SNAPC_LOG says (warnings by default). */
    if (snapc_log_init(NULL) != SNAPC_OK)
        fprintf(stderr, "counter: %s\n", snapc_last_error());
    snapc_hooks hooks = {.prepare = NULL, .checkpoint = save, .recover = NULL, .restart = load};
    snapc *s = snapc_start(&hooks, &st);
    if (!s) {
        fprintf(stderr, "counter: %s\n", snapc_last_error());
        return 1;
    }
    printf("pid=%d\nstart steps=%" PRIu64 "\n", (int)getpid(), st.steps);
    fflush(stdout);
    double started = now_s();
    for (;;) {
        uint64_t slice = 2000;
        if (steps_mode) {
            if (st.steps >= total)
                break;
            if (total - st.steps < slice)
                slice = total - st.steps;
        } else if (now_s() - started >= run_for) {
            break;
        }
        for (uint64_t i = 0; i < slice; i++)
            step(&st);
        if (steps_mode && pace_us > 0) {
            struct timespec nap = {(time_t)(pace_us / 1000000), (long)(pace_us % 1000000) * 1000};
            nanosleep(&nap, NULL);
        }
        int ev = snapc_progress(s);
        if (ev == SNAPC_EVENT_CHECKPOINT || ev == SNAPC_EVENT_CHECKPOINT_FAILED) {
            snapc_checkpoint_info info;
            if (snapc_last_checkpoint(s, &info) == 1) {
                if (info.ok)
                    printf("checkpoint n=%u handle=%u state=%s\n", info.names.n, info.handle, state_name(info.state));
                else
                    printf("checkpoint n=%u failed: %s\n", info.names.n, info.error.text);
                fflush(stdout);
            }
        } else if (ev < 0) {
            fprintf(stderr, "counter: snapc_progress: %s\n", snapc_last_error());
        }
        if (snapc_is_terminating(s) == 1) {
            printf("terminating after checkpoint\n");
            break;
        }
        if (request && st.steps >= request_at) {
            request = 0;
            int r = snapc_request_checkpoint(s);
            snapc_request_info info;
            if (r == SNAPC_OK && snapc_last_request(s, &info) == 1)
                printf("request checkpoint seq=%d reference=%s\n", info.seq_num, info.reference);
            else
                printf("request checkpoint failed: %s\n", snapc_last_error());
            fflush(stdout);
        }
    }
    printf("result steps=%" PRIu64 " checksum=%016" PRIx64 "\n", st.steps, st.checksum);
    fflush(stdout);
    snapc_stop(s);
    return 0;
}
