/*
 * ompi_bench: the cost of Open MPI's own DSS encoder (libopen-pal) on the
 * snapc coordination messages, the reference snapc-bench compares against.
 *
 * For each message: "pack" is what a sender does (construct a buffer, one
 * opal_dss.pack call per field, unload the bytes, release them); "unpack" is
 * what a receiver does (construct a buffer, load a copy of the bytes, one
 * opal_dss.unpack call per field, free what unpack allocated). Each is timed
 * over batches with CLOCK_MONOTONIC, in nanoseconds per message.
 *
 *     ompi_bench [ITERATIONS]   the median of 9 batches of each message:
 *                               <message>\t<pack ns>\t<unpack ns>\t<bytes>
 *     ompi_bench --serve        the message names, one a line, then an empty
 *                               line; then for each input line "<index>
 *                               <iterations>" one batch of that message:
 *                               <pack ns>\t<unpack ns>\t<bytes>
 *
 * snapc-bench uses --serve to time its own batches and these in turn, so
 * that both see the same machine. The messages and field values are the
 * same as in bench/src/codec.rs.
 */

#include "opal_config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opal/constants.h"
#include "opal/dss/dss.h"
#include "opal/runtime/opal.h"

#define CHECK(call)                                                        \
    do {                                                                   \
        int rc_ = (call);                                                  \
        if (OPAL_SUCCESS != rc_) {                                         \
            fprintf(stderr, "ompi_bench: %s failed (%d)\n", #call, rc_);   \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

enum kind { REQ_INIT, REQ_RESTART, REQ_MIGRATE2, OP_RESP_CKPT, FIN_ACK,
            JOB_QUICK, JOB_LONG5, ORTED_QUICK, LOCAL_FINISH, LOCAL_UPDATE,
            KINDS };
static const char *const names[KINDS] = {
    "REQUEST_OP(INIT)", "REQUEST_OP(RESTART)", "REQUEST_OP(MIGRATE, 2 entries)",
    "OP_RESPONSE(CHECKPOINT)", "FIN_ACK", "JOB_STATE(quick)",
    "JOB_STATE(long, 5 procs)", "ORTED_STATE(quick)", "LOCAL_FINISH",
    "LOCAL_UPDATE",
};

static const char *const handle = "snapc_global_snapshot_7_3";
static const char *const hosts[2] = { "node-017", "node-042" };

static void pack1(opal_buffer_t *b, const void *src, opal_data_type_t t)
{
    CHECK(opal_dss.pack(b, src, 1, t));
}

static void pack_msg(opal_buffer_t *b, enum kind k)
{
    uint8_t cmd;
    opal_jobid_t jobid = 0x12340001;
    int i;
    bool f = false, t = true;
    switch (k) {
    case REQ_INIT: case REQ_RESTART: case REQ_MIGRATE2:
        cmd = 8; pack1(b, &cmd, OPAL_UINT8);
        pack1(b, &jobid, OPAL_JOBID);
        i = REQ_INIT == k ? 1 : REQ_RESTART == k ? 5 : 6;
        pack1(b, &i, OPAL_INT);
        if (REQ_RESTART == k) {
            i = 3; pack1(b, &i, OPAL_INT);
            char *h = (char *)handle; pack1(b, &h, OPAL_STRING);
        } else if (REQ_MIGRATE2 == k) {
            i = 2; pack1(b, &i, OPAL_INT);
            for (int e = 0; e < 2; e++) {
                int vpid = e, pref = 1 - e, off = e;
                char *h = (char *)hosts[e];
                pack1(b, &vpid, OPAL_INT);
                pack1(b, &h, OPAL_STRING);
                pack1(b, &pref, OPAL_INT);
                pack1(b, &off, OPAL_INT);
            }
        }
        break;
    case OP_RESP_CKPT: case FIN_ACK:
        cmd = 8; pack1(b, &cmd, OPAL_UINT8);
        i = OP_RESP_CKPT == k ? 4 : 3; pack1(b, &i, OPAL_INT);
        if (OP_RESP_CKPT == k) { i = 0; pack1(b, &i, OPAL_INT); }
        break;
    case JOB_QUICK: case JOB_LONG5:
        cmd = JOB_QUICK == k ? 2 : 1; pack1(b, &cmd, OPAL_UINT8);
        pack1(b, &jobid, OPAL_JOBID);
        i = 4; pack1(b, &i, OPAL_INT);
        if (JOB_LONG5 == k) {
            uint32_t h = 7; pack1(b, &h, OPAL_UINT32);
            pack1(b, &t, OPAL_BOOL); pack1(b, &f, OPAL_BOOL);
            pack1(b, &f, OPAL_BOOL); pack1(b, &f, OPAL_BOOL);
            pack1(b, &t, OPAL_BOOL);
            size_t n = 5; pack1(b, &n, OPAL_SIZE);
            for (uint32_t p = 0; p < 5; p++) {
                opal_process_name_t name = { .jobid = jobid, .vpid = p };
                pack1(b, &name, OPAL_NAME);
            }
        }
        break;
    case ORTED_QUICK:
        cmd = 4; pack1(b, &cmd, OPAL_UINT8);
        i = 7; pack1(b, &i, OPAL_INT);
        break;
    case LOCAL_FINISH:
        cmd = 5; pack1(b, &cmd, OPAL_UINT8);
        i = 4; pack1(b, &i, OPAL_INT);
        break;
    case LOCAL_UPDATE: {
        cmd = 4; pack1(b, &cmd, OPAL_UINT8);
        opal_process_name_t name = { .jobid = jobid, .vpid = 3 };
        pack1(b, &name, OPAL_NAME);
        pid_t pid = 4242; pack1(b, &pid, OPAL_PID);
        break;
    }
    default:
        break;
    }
}

static void unpack1(opal_buffer_t *b, void *dst, opal_data_type_t t)
{
    int32_t n = 1;
    CHECK(opal_dss.unpack(b, dst, &n, t));
}

/* Unpacks every field, as the receiver of `k` would; returns a value that
 * depends on the fields so the work cannot be skipped. */
static long unpack_msg(opal_buffer_t *b, enum kind k)
{
    uint8_t cmd; opal_jobid_t jobid; int i, ev; bool bl; char *s = NULL;
    long acc = 0;
    unpack1(b, &cmd, OPAL_UINT8); acc += cmd;
    switch (k) {
    case REQ_INIT: case REQ_RESTART: case REQ_MIGRATE2:
        unpack1(b, &jobid, OPAL_JOBID); unpack1(b, &ev, OPAL_INT); acc += ev;
        if (REQ_RESTART == k) {
            unpack1(b, &i, OPAL_INT); unpack1(b, &s, OPAL_STRING);
            acc += i + (long)strlen(s); free(s);
        } else if (REQ_MIGRATE2 == k) {
            int n; unpack1(b, &n, OPAL_INT);
            for (int e = 0; e < n; e++) {
                unpack1(b, &i, OPAL_INT); unpack1(b, &s, OPAL_STRING);
                acc += i + (long)strlen(s); free(s);
                unpack1(b, &i, OPAL_INT); unpack1(b, &i, OPAL_INT); acc += i;
            }
        }
        break;
    case OP_RESP_CKPT: case FIN_ACK:
        unpack1(b, &ev, OPAL_INT); acc += ev;
        if (OP_RESP_CKPT == k) { unpack1(b, &i, OPAL_INT); acc += i; }
        break;
    case JOB_QUICK: case JOB_LONG5:
        unpack1(b, &jobid, OPAL_JOBID); unpack1(b, &i, OPAL_INT); acc += i;
        if (JOB_LONG5 == k) {
            uint32_t h; unpack1(b, &h, OPAL_UINT32); acc += h;
            for (int o = 0; o < 5; o++) { unpack1(b, &bl, OPAL_BOOL); acc += bl; }
            size_t n; unpack1(b, &n, OPAL_SIZE);
            for (size_t p = 0; p < n; p++) {
                opal_process_name_t name; unpack1(b, &name, OPAL_NAME); acc += name.vpid;
            }
        }
        break;
    case ORTED_QUICK: case LOCAL_FINISH:
        unpack1(b, &i, OPAL_INT); acc += i;
        break;
    case LOCAL_UPDATE: {
        opal_process_name_t name; pid_t pid;
        unpack1(b, &name, OPAL_NAME); unpack1(b, &pid, OPAL_PID);
        acc += name.vpid + pid;
        break;
    }
    default:
        break;
    }
    return acc;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define BATCHES 9

static volatile long sink = 0;

/* The encoded bytes of `k`, once, for the unpack side and the size column. */
static uint8_t *reference(enum kind k, int32_t *len)
{
    opal_buffer_t ref;
    OBJ_CONSTRUCT(&ref, opal_buffer_t);
    pack_msg(&ref, k);
    uint8_t *bytes = NULL;
    CHECK(opal_dss.unload(&ref, (void **)&bytes, len));
    OBJ_DESTRUCT(&ref);
    return bytes;
}

/* One batch of `iters` packs then one of `iters` unpacks of `k`. */
static void batch(enum kind k, const uint8_t *bytes, int32_t len, long iters,
                  double *pack_ns, double *unpack_ns)
{
    double t0 = now_ns();
    for (long it = 0; it < iters; it++) {
        opal_buffer_t b;
        OBJ_CONSTRUCT(&b, opal_buffer_t);
        pack_msg(&b, k);
        uint8_t *out = NULL;
        int32_t n = 0;
        CHECK(opal_dss.unload(&b, (void **)&out, &n));
        sink += out[n - 1];
        free(out);
        OBJ_DESTRUCT(&b);
    }
    double t1 = now_ns();
    for (long it = 0; it < iters; it++) {
        opal_buffer_t b;
        OBJ_CONSTRUCT(&b, opal_buffer_t);
        uint8_t *copy = malloc((size_t)len);
        memcpy(copy, bytes, (size_t)len);
        CHECK(opal_dss.load(&b, copy, len)); /* the buffer owns copy */
        sink += unpack_msg(&b, k);
        OBJ_DESTRUCT(&b);
    }
    double t2 = now_ns();
    *pack_ns = (t1 - t0) / (double)iters;
    *unpack_ns = (t2 - t1) / (double)iters;
}

static int serve(void)
{
    uint8_t *bytes[KINDS];
    int32_t lens[KINDS];
    for (int k = 0; k < KINDS; k++) {
        bytes[k] = reference((enum kind)k, &lens[k]);
        printf("%s\n", names[k]);
    }
    printf("\n");
    fflush(stdout);
    int k;
    long iters;
    while (2 == scanf("%d %ld", &k, &iters)) {
        if (k < 0 || k >= KINDS || iters <= 0) {
            fprintf(stderr, "ompi_bench: bad request %d %ld\n", k, iters);
            return 2;
        }
        double pack_ns, unpack_ns;
        batch((enum kind)k, bytes[k], lens[k], iters, &pack_ns, &unpack_ns);
        printf("%.2f\t%.2f\t%d\n", pack_ns, unpack_ns, lens[k]);
        fflush(stdout);
    }
    for (k = 0; k < KINDS; k++) {
        free(bytes[k]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int serving = argc > 1 && 0 == strcmp(argv[1], "--serve");
    long iters = argc > 1 && !serving ? atol(argv[1]) : 20000;
    if (iters <= 0) {
        fprintf(stderr, "usage: ompi_bench [ITERATIONS_PER_BATCH | --serve]\n");
        return 2;
    }
    CHECK(opal_init_util(&argc, &argv));
    if (serving) {
        int rc = serve();
        opal_finalize_util();
        return rc;
    }
    for (int k = 0; k < KINDS; k++) {
        int32_t len = 0;
        uint8_t *bytes = reference((enum kind)k, &len);
        double pack_ns[BATCHES], unpack_ns[BATCHES];
        for (int r = 0; r < BATCHES; r++) {
            batch((enum kind)k, bytes, len, iters, &pack_ns[r], &unpack_ns[r]);
        }
        qsort(pack_ns, BATCHES, sizeof(double), cmp_double);
        qsort(unpack_ns, BATCHES, sizeof(double), cmp_double);
        printf("%s\t%.1f\t%.1f\t%d\n", names[k], pack_ns[BATCHES / 2],
               unpack_ns[BATCHES / 2], len);
        free(bytes);
    }
    opal_finalize_util();
    return 0 == sink ? 1 : 0;
}
