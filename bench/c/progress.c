/*
 * The cost of libsnapc's safe point from C: snapc_progress() and
 * snapc_pending() with nothing pending, and for scale a call of the
 * library's smallest function (snapc_abi_version). Median of 9 batches of
 * 20,000,000 calls each; prints one "name ns" line per call. Built and run
 * by the bench (bench/src/capi.rs) against an installed libsnapc.
 */
#define _POSIX_C_SOURCE 200809L
#include <snapc.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BATCHES 9
#define CALLS 20000000L

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static volatile int sink;

static double median(double *v) {
    qsort(v, BATCHES, sizeof *v, cmp);
    return v[BATCHES / 2];
}

int main(void) {
    snapc *s = snapc_start(NULL, NULL);
    if (!s) {
        fprintf(stderr, "progress: %s\n", snapc_last_error());
        return 1;
    }
    double progress[BATCHES], pending[BATCHES], floor_[BATCHES];
    for (int b = 0; b < BATCHES; b++) {
        double t = now_ns();
        int acc = 0;
        for (long i = 0; i < CALLS; i++)
            acc += snapc_progress(s);
        progress[b] = (now_ns() - t) / CALLS;
        t = now_ns();
        for (long i = 0; i < CALLS; i++)
            acc += snapc_pending(s);
        pending[b] = (now_ns() - t) / CALLS;
        t = now_ns();
        for (long i = 0; i < CALLS; i++)
            acc += (int)snapc_abi_version();
        floor_[b] = (now_ns() - t) / CALLS;
        sink = acc;
    }
    printf("snapc_progress %.2f\nsnapc_pending %.2f\nsnapc_abi_version %.2f\n", median(progress),
           median(pending), median(floor_));
    snapc_stop(s);
    return 0;
}
