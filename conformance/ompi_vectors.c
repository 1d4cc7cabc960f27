/*
 * ompi_vectors: reference byte vectors for the snapc coordination messages
 * (docs/PROTOCOL.md section 5), encoded by Open MPI's own DSS library.
 *
 * Every message is packed into a fresh opal_buffer_t with one opal_dss.pack
 * call per payload field, exactly as Open MPI's snapc/full component does, so
 * the bytes printed here are what a real Open MPI peer sends or expects.
 *
 * Output, one line per vector, tab-separated:
 *     <name> <channel> <lowercase hex> <json description of the packed values>
 *
 * Usage:
 *     ompi_vectors                      fixed, hand-picked vectors
 *     ompi_vectors --random SEED COUNT  COUNT pseudo-random vectors
 *
 * The random mode is deterministic for a given SEED, so a failing round trip
 * can be reproduced from the seed alone.
 */

#include "opal_config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "opal/constants.h"
#include "opal/dss/dss.h"
#include "opal/runtime/opal.h"
#include "opal/util/error.h"

/* ---- protocol constants (docs/PROTOCOL.md section 2) ------------------------- */

enum { CMD_JOB_STATE = 1, CMD_JOB_STATE_QUICK = 2, CMD_ORTED_STATE = 3,
       CMD_ORTED_STATE_QUICK = 4, CMD_REQUEST_OP = 8 };
enum { CMD_LOCAL_UPDATE = 4, CMD_LOCAL_FINISH = 5 };

enum { OP_NONE, OP_INIT, OP_FIN, OP_FIN_ACK, OP_CHECKPOINT, OP_RESTART,
       OP_MIGRATE, OP_QUIESCE_START, OP_QUIESCE_CHECKPOINT, OP_QUIESCE_END,
       OP_COUNT };
static const char *const op_event_names[OP_COUNT] = {
    "NONE", "INIT", "FIN", "FIN_ACK", "CHECKPOINT", "RESTART", "MIGRATE",
    "QUIESCE_START", "QUIESCE_CHECKPOINT", "QUIESCE_END",
};

enum { ST_ERROR, ST_NONE, ST_REQUEST, ST_PENDING, ST_RUNNING, ST_INC_PREPED,
       ST_STOPPED, ST_FINISHED_LOCAL, ST_MIGRATING, ST_ESTABLISHED,
       ST_RECOVERED, ST_NO_CKPT, ST_NO_RESTART, ST_COUNT };
static const char *const state_names[ST_COUNT] = {
    "ERROR", "NONE", "REQUEST", "PENDING", "RUNNING", "INC_PREPED", "STOPPED",
    "FINISHED_LOCAL", "MIGRATING", "ESTABLISHED", "RECOVERED", "NO_CKPT",
    "NO_RESTART",
};
#define STATE_NOTIFY_BASE 131072

enum { CR_NONE, CR_CHECKPOINT, CR_RESTART_PRE, CR_RESTART, CR_CONTINUE,
       CR_TERM, CR_RUNNING, CR_ERROR, CR_COUNT };
static const char *const cr_names[CR_COUNT] = {
    "NONE", "CHECKPOINT", "RESTART_PRE", "RESTART", "CONTINUE", "TERM",
    "RUNNING", "ERROR",
};

/* Longest host name the protocol allows: 256 bytes including the NUL. */
#define MAX_HOST_LEN 255

/* ---- errors ------------------------------------------------------------- */

static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("ompi_vectors: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (NULL == p) {
        die("out of memory");
    }
    return p;
}

/* ---- a growable string for the json column ------------------------------ */

struct text {
    char *p;
    size_t len, cap;
};

static void text_reserve(struct text *t, size_t extra)
{
    if (t->len + extra + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (t->len + extra + 1 > cap) {
            cap *= 2;
        }
        t->p = xrealloc(t->p, cap);
        t->cap = cap;
    }
}

static void text_printf(struct text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        die("vsnprintf failed");
    }
    text_reserve(t, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* A JSON string literal, or null for a NULL pointer (the DSS NULL string). */
static void text_json_string(struct text *t, const char *s)
{
    if (NULL == s) {
        text_printf(t, "null");
        return;
    }
    text_printf(t, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if ('"' == *c || '\\' == *c) {
            text_printf(t, "\\%c", *c);
        } else if (*c < 0x20 || 0x7f == *c) {
            text_printf(t, "\\u%04x", *c);
        } else {
            text_printf(t, "%c", *c);
        }
    }
    text_printf(t, "\"");
}

static const char *json_bool(bool b)
{
    return b ? "true" : "false";
}

/* ---- one vector: a DSS buffer plus its json description ----------------- */

struct vec {
    const char *name;
    opal_buffer_t *buf;
    struct text json;
};

static void vec_begin(struct vec *v, const char *name)
{
    v->name = name;
    v->buf = OBJ_NEW(opal_buffer_t);
    if (NULL == v->buf) {
        die("%s: OBJ_NEW(opal_buffer_t) failed", name);
    }
    v->json.len = 0;
    text_reserve(&v->json, 0);
    v->json.p[0] = '\0';
}

static void vec_end(struct vec *v, const char *channel)
{
    uint8_t *bytes = NULL;
    int32_t len = 0;
    int rc = opal_dss.unload(v->buf, (void **)&bytes, &len);
    if (OPAL_SUCCESS != rc || len <= 0 || NULL == bytes) {
        die("%s: opal_dss.unload failed: %s", v->name, opal_strerror(rc));
    }
    printf("%s\t%s\t", v->name, channel);
    for (int32_t i = 0; i < len; i++) {
        printf("%02x", bytes[i]);
    }
    printf("\t%s\n", v->json.p);
    free(bytes); /* unload hands the payload's ownership to us */
    OBJ_RELEASE(v->buf);
}

/* One opal_dss.pack call per field, as Open MPI does: the call boundaries
 * decide where the count prefixes (and type bytes) land. */
static void pack(struct vec *v, const void *src, opal_data_type_t type,
                 const char *field)
{
    int rc = opal_dss.pack(v->buf, src, 1, type);
    if (OPAL_SUCCESS != rc) {
        die("%s: opal_dss.pack(%s) failed: %s", v->name, field,
            opal_strerror(rc));
    }
}

static void pack_u8(struct vec *v, uint8_t x, const char *f)      { pack(v, &x, OPAL_UINT8, f); }
static void pack_int(struct vec *v, int x, const char *f)         { pack(v, &x, OPAL_INT, f); }
static void pack_u32(struct vec *v, uint32_t x, const char *f)    { pack(v, &x, OPAL_UINT32, f); }
static void pack_bool(struct vec *v, bool x, const char *f)       { pack(v, &x, OPAL_BOOL, f); }
static void pack_size(struct vec *v, size_t x, const char *f)     { pack(v, &x, OPAL_SIZE, f); }
static void pack_pid(struct vec *v, pid_t x, const char *f)       { pack(v, &x, OPAL_PID, f); }
static void pack_jobid(struct vec *v, opal_jobid_t x, const char *f) { pack(v, &x, OPAL_JOBID, f); }
static void pack_name(struct vec *v, opal_process_name_t x, const char *f) { pack(v, &x, OPAL_NAME, f); }
static void pack_string(struct vec *v, const char *s, const char *f)
{
    /* DSS takes an array of char*; a NULL entry packs the NULL string. */
    char *p = (char *)s;
    pack(v, &p, OPAL_STRING, f);
}

/* ---- the messages ------------------------------------------------------- */

struct migrate_entry {
    int vpid;
    const char *host; /* NULL: no host preference */
    int vpid_pref;
    bool off_node;
};

struct request_op {
    opal_jobid_t jobid;
    int op_event;
    int seq_num;        /* RESTART only */
    const char *handle; /* RESTART only */
    int n_entries;      /* MIGRATE only */
    const struct migrate_entry *entries;
};

struct orted_state {
    bool quick;
    int state;
    bool notify; /* pack 131072 + state */
};

struct op_response {
    int op_event;
    int op_state; /* CHECKPOINT and MIGRATE only */
};

struct job_state {
    bool quick;
    opal_jobid_t jobid;
    int state;
    /* long form only: */
    uint32_t handle;
    bool term, stop, inc_prep_only, inc_recover_only, migrating;
    size_t n_procs; /* only when migrating */
    const opal_process_name_t *procs;
};

struct local_update {
    opal_process_name_t name;
    pid_t pid;
    bool has_debug; /* only sent when checkpoint debugging is on */
    bool debug;
};

static void emit_request_op(const char *name, const struct request_op *m)
{
    struct vec v = { .json = { 0 } };
    vec_begin(&v, name);
    pack_u8(&v, CMD_REQUEST_OP, "command");
    pack_jobid(&v, m->jobid, "jobid");
    pack_int(&v, m->op_event, "op_event");
    text_printf(&v.json, "{\"message\":\"REQUEST_OP\",\"jobid\":%" PRIu32
                ",\"op_event\":\"%s\"", m->jobid, op_event_names[m->op_event]);
    if (OP_RESTART == m->op_event) {
        pack_int(&v, m->seq_num, "seq_num");
        pack_string(&v, m->handle, "handle");
        text_printf(&v.json, ",\"seq_num\":%d,\"handle\":", m->seq_num);
        text_json_string(&v.json, m->handle);
    } else if (OP_MIGRATE == m->op_event) {
        pack_int(&v, m->n_entries, "n_entries");
        text_printf(&v.json, ",\"entries\":[");
        for (int i = 0; i < m->n_entries; i++) {
            const struct migrate_entry *e = &m->entries[i];
            pack_int(&v, e->vpid, "vpid");
            pack_string(&v, e->host, "host");
            pack_int(&v, e->vpid_pref, "vpid_pref");
            pack_int(&v, e->off_node ? 1 : 0, "off_node");
            text_printf(&v.json, "%s{\"vpid\":%d,\"host\":", i ? "," : "",
                        e->vpid);
            text_json_string(&v.json, e->host);
            text_printf(&v.json, ",\"vpid_pref\":%d,\"off_node\":%s}",
                        e->vpid_pref, json_bool(e->off_node));
        }
        text_printf(&v.json, "]");
    }
    text_printf(&v.json, "}");
    vec_end(&v, "to-gc");
    free(v.json.p);
}

static void emit_orted_state(const char *name, const struct orted_state *m)
{
    struct vec v = { .json = { 0 } };
    vec_begin(&v, name);
    pack_u8(&v, m->quick ? CMD_ORTED_STATE_QUICK : CMD_ORTED_STATE, "command");
    pack_int(&v, m->notify ? STATE_NOTIFY_BASE + m->state : m->state, "state");
    text_printf(&v.json,
                "{\"message\":\"ORTED_STATE\",\"quick\":%s,\"state\":\"%s\"%s}",
                json_bool(m->quick), state_names[m->state],
                m->notify ? ",\"notify\":true" : "");
    vec_end(&v, "to-gc");
    free(v.json.p);
}

static void emit_op_response(const char *name, const struct op_response *m)
{
    struct vec v = { .json = { 0 } };
    vec_begin(&v, name);
    pack_u8(&v, CMD_REQUEST_OP, "command");
    pack_int(&v, m->op_event, "op_event");
    text_printf(&v.json, "{\"message\":\"OP_RESPONSE\",\"op_event\":\"%s\"",
                op_event_names[m->op_event]);
    if (OP_CHECKPOINT == m->op_event || OP_MIGRATE == m->op_event) {
        pack_int(&v, m->op_state, "op_state");
        text_printf(&v.json, ",\"op_state\":%d", m->op_state);
    }
    text_printf(&v.json, "}");
    vec_end(&v, "from-gc");
    free(v.json.p);
}

static void emit_fin_ack(const char *name)
{
    struct vec v = { .json = { 0 } };
    vec_begin(&v, name);
    pack_u8(&v, CMD_REQUEST_OP, "command");
    pack_int(&v, OP_FIN_ACK, "op_event");
    text_printf(&v.json, "{\"message\":\"FIN_ACK\"}");
    vec_end(&v, "from-gc");
    free(v.json.p);
}

static void emit_job_state(const char *name, const struct job_state *m)
{
    struct vec v = { .json = { 0 } };
    vec_begin(&v, name);
    pack_u8(&v, m->quick ? CMD_JOB_STATE_QUICK : CMD_JOB_STATE, "command");
    pack_jobid(&v, m->jobid, "jobid");
    pack_int(&v, m->state, "state");
    text_printf(&v.json, "{\"message\":\"JOB_STATE\",\"quick\":%s,\"jobid\":%"
                PRIu32 ",\"state\":\"%s\"", json_bool(m->quick), m->jobid,
                state_names[m->state]);
    if (!m->quick) {
        pack_u32(&v, m->handle, "handle");
        pack_bool(&v, m->term, "term");
        pack_bool(&v, m->stop, "stop");
        pack_bool(&v, m->inc_prep_only, "inc_prep_only");
        pack_bool(&v, m->inc_recover_only, "inc_recover_only");
        pack_bool(&v, m->migrating, "migrating");
        text_printf(&v.json, ",\"handle\":%" PRIu32 ",\"term\":%s,\"stop\":%s,"
                    "\"inc_prep_only\":%s,\"inc_recover_only\":%s,"
                    "\"migrating\":%s", m->handle, json_bool(m->term),
                    json_bool(m->stop), json_bool(m->inc_prep_only),
                    json_bool(m->inc_recover_only), json_bool(m->migrating));
        if (m->migrating) {
            pack_size(&v, m->n_procs, "n_procs");
            text_printf(&v.json, ",\"procs\":[");
            for (size_t i = 0; i < m->n_procs; i++) {
                pack_name(&v, m->procs[i], "proc");
                text_printf(&v.json, "%s{\"jobid\":%" PRIu32 ",\"vpid\":%"
                            PRIu32 "}", i ? "," : "", m->procs[i].jobid,
                            m->procs[i].vpid);
            }
            text_printf(&v.json, "]");
        }
    }
    text_printf(&v.json, "}");
    vec_end(&v, "from-gc");
    free(v.json.p);
}

static void emit_local_finish(const char *name, int cr_state)
{
    struct vec v = { .json = { 0 } };
    vec_begin(&v, name);
    pack_u8(&v, CMD_LOCAL_FINISH, "command");
    pack_int(&v, cr_state, "cr_state");
    text_printf(&v.json, "{\"message\":\"LOCAL_FINISH\",\"cr_state\":\"%s\"}",
                cr_names[cr_state]);
    vec_end(&v, "to-daemon");
    free(v.json.p);
}

static void emit_local_update(const char *name, const struct local_update *m)
{
    struct vec v = { .json = { 0 } };
    vec_begin(&v, name);
    pack_u8(&v, CMD_LOCAL_UPDATE, "command");
    pack_name(&v, m->name, "name");
    pack_pid(&v, m->pid, "pid");
    text_printf(&v.json, "{\"message\":\"LOCAL_UPDATE\",\"name\":{\"jobid\":%"
                PRIu32 ",\"vpid\":%" PRIu32 "},\"pid\":%d", m->name.jobid,
                m->name.vpid, (int)m->pid);
    if (m->has_debug) {
        pack_bool(&v, m->debug, "debug");
        text_printf(&v.json, ",\"debug\":%s", json_bool(m->debug));
    }
    text_printf(&v.json, "}");
    vec_end(&v, "to-daemon");
    free(v.json.p);
}

/* ---- fixed vectors ------------------------------------------------------ */

#define NAME(j, v) ((opal_process_name_t){ .jobid = (j), .vpid = (v) })

/* Build "<prefix>-<lowercase name with '_' as '-'>" in a static buffer. */
static const char *vec_name(const char *prefix, const char *upper)
{
    static char buf[96];
    int n = snprintf(buf, sizeof buf, "%s-", prefix);
    for (const char *c = upper; *c && n < (int)sizeof buf - 1; c++, n++) {
        buf[n] = '_' == *c ? '-' : (char)(*c | 0x20);
    }
    buf[n] = '\0';
    return buf;
}

static void emit_fixed(void)
{
    /* The protocol's longest host name, and an equally long handle. */
    char long_host[MAX_HOST_LEN + 1];
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (int i = 0; i < MAX_HOST_LEN; i++) {
        long_host[i] = alnum[i % (sizeof alnum - 1)];
    }
    long_host[MAX_HOST_LEN] = '\0';

    const opal_jobid_t job = 0x12340001;

    /* REQUEST_OP: every op_event, then RESTART and MIGRATE payloads. */
    emit_request_op("request-op-init-spec-example",
                    &(struct request_op){ .jobid = job, .op_event = OP_INIT });
    for (int op = 0; op < OP_COUNT; op++) {
        if (OP_INIT == op || OP_RESTART == op || OP_MIGRATE == op) {
            continue; /* covered separately below */
        }
        emit_request_op(vec_name("request-op", op_event_names[op]),
                        &(struct request_op){ .jobid = job, .op_event = op });
    }
    emit_request_op("request-op-init-jobid-0",
                    &(struct request_op){ .jobid = 0, .op_event = OP_INIT });
    emit_request_op("request-op-checkpoint-jobid-max",
                    &(struct request_op){ .jobid = UINT32_MAX,
                                          .op_event = OP_CHECKPOINT });

    emit_request_op("request-op-restart",
                    &(struct request_op){ .jobid = job, .op_event = OP_RESTART,
                                          .seq_num = 3,
                                          .handle = "ompi_global_snapshot_4242.ckpt" });
    emit_request_op("request-op-restart-seq-0-null-handle",
                    &(struct request_op){ .jobid = job, .op_event = OP_RESTART,
                                          .seq_num = 0, .handle = NULL });
    emit_request_op("request-op-restart-seq-minus-1-empty-handle",
                    &(struct request_op){ .jobid = job, .op_event = OP_RESTART,
                                          .seq_num = -1, .handle = "" });
    emit_request_op("request-op-restart-seq-min",
                    &(struct request_op){ .jobid = 1, .op_event = OP_RESTART,
                                          .seq_num = INT32_MIN, .handle = "x" });
    emit_request_op("request-op-restart-seq-max-escaped-handle",
                    &(struct request_op){ .jobid = UINT32_MAX,
                                          .op_event = OP_RESTART,
                                          .seq_num = INT32_MAX,
                                          .handle = "/tmp/a \"quoted\" \\dir/~snap" });
    emit_request_op("request-op-restart-long-handle",
                    &(struct request_op){ .jobid = job, .op_event = OP_RESTART,
                                          .seq_num = 17, .handle = long_host });

    emit_request_op("request-op-migrate-empty",
                    &(struct request_op){ .jobid = job, .op_event = OP_MIGRATE,
                                          .n_entries = 0, .entries = NULL });
    {
        const struct migrate_entry one[] = {
            { .vpid = 0, .host = "node01", .vpid_pref = -1, .off_node = false },
        };
        emit_request_op("request-op-migrate-one",
                        &(struct request_op){ .jobid = job, .op_event = OP_MIGRATE,
                                              .n_entries = 1, .entries = one });
    }
    {
        const struct migrate_entry five[] = {
            { .vpid = 0, .host = NULL, .vpid_pref = -1, .off_node = true },
            { .vpid = 1, .host = "", .vpid_pref = 0, .off_node = false },
            { .vpid = INT32_MAX, .host = long_host, .vpid_pref = INT32_MIN,
              .off_node = false },
            { .vpid = INT32_MIN, .host = "node-b.example.org",
              .vpid_pref = INT32_MAX, .off_node = true },
            { .vpid = -1, .host = "n7", .vpid_pref = 3, .off_node = false },
        };
        emit_request_op("request-op-migrate-five",
                        &(struct request_op){ .jobid = job, .op_event = OP_MIGRATE,
                                              .n_entries = 5, .entries = five });
    }
    {
        const struct migrate_entry e[] = {
            { .vpid = 2, .host = long_host, .vpid_pref = 2, .off_node = true },
        };
        emit_request_op("request-op-migrate-host-255",
                        &(struct request_op){ .jobid = job, .op_event = OP_MIGRATE,
                                              .n_entries = 1, .entries = e });
    }
    {
        const struct migrate_entry e[] = {
            { .vpid = -1, .host = NULL, .vpid_pref = 0, .off_node = true },
        };
        emit_request_op("request-op-migrate-null-host-off-node",
                        &(struct request_op){ .jobid = 0, .op_event = OP_MIGRATE,
                                              .n_entries = 1, .entries = e });
    }
    {
        const struct migrate_entry e[] = {
            { .vpid = INT32_MAX, .host = "", .vpid_pref = INT32_MIN,
              .off_node = false },
            { .vpid = 0, .host = "node01", .vpid_pref = 0, .off_node = false },
        };
        emit_request_op("request-op-migrate-extremes",
                        &(struct request_op){ .jobid = UINT32_MAX,
                                              .op_event = OP_MIGRATE,
                                              .n_entries = 2, .entries = e });
    }

    /* ORTED_STATE: every state in the normal form, a few quick and notify. */
    for (int s = 0; s < ST_COUNT; s++) {
        emit_orted_state(vec_name("orted-state", state_names[s]),
                         &(struct orted_state){ .state = s });
    }
    emit_orted_state("orted-state-quick-finished-local",
                     &(struct orted_state){ .quick = true, .state = ST_FINISHED_LOCAL });
    emit_orted_state("orted-state-quick-error",
                     &(struct orted_state){ .quick = true, .state = ST_ERROR });
    emit_orted_state("orted-state-quick-running",
                     &(struct orted_state){ .quick = true, .state = ST_RUNNING });
    emit_orted_state("orted-state-notify-running",
                     &(struct orted_state){ .state = ST_RUNNING, .notify = true });
    emit_orted_state("orted-state-notify-error",
                     &(struct orted_state){ .state = ST_ERROR, .notify = true });
    emit_orted_state("orted-state-quick-notify-no-restart",
                     &(struct orted_state){ .quick = true, .state = ST_NO_RESTART,
                                            .notify = true });

    /* OP_RESPONSE: op_state only travels for CHECKPOINT and MIGRATE. */
    static const struct { const char *name; int op; int op_state; } responses[] = {
        { "op-response-checkpoint-done", OP_CHECKPOINT, 0 },
        { "op-response-checkpoint-failed", OP_CHECKPOINT, -1 },
        { "op-response-checkpoint-state-min", OP_CHECKPOINT, INT32_MIN },
        { "op-response-checkpoint-state-max", OP_CHECKPOINT, INT32_MAX },
        { "op-response-migrate-done", OP_MIGRATE, 0 },
        { "op-response-migrate-failed", OP_MIGRATE, -1 },
        { "op-response-migrate-state-7", OP_MIGRATE, 7 },
        { "op-response-none", OP_NONE, 0 },
        { "op-response-init", OP_INIT, 0 },
        { "op-response-fin", OP_FIN, 0 },
        { "op-response-restart", OP_RESTART, 0 },
        { "op-response-quiesce-start", OP_QUIESCE_START, 0 },
        { "op-response-quiesce-checkpoint", OP_QUIESCE_CHECKPOINT, 0 },
        { "op-response-quiesce-end", OP_QUIESCE_END, 0 },
    };
    for (size_t i = 0; i < sizeof responses / sizeof responses[0]; i++) {
        emit_op_response(responses[i].name,
                         &(struct op_response){ .op_event = responses[i].op,
                                                .op_state = responses[i].op_state });
    }

    emit_fin_ack("fin-ack");

    /* JOB_STATE: quick form, then the long form's options and proc lists. */
    emit_job_state("job-state-quick-pending",
                   &(struct job_state){ .quick = true, .jobid = job,
                                        .state = ST_PENDING });
    emit_job_state("job-state-quick-running",
                   &(struct job_state){ .quick = true, .jobid = job,
                                        .state = ST_RUNNING });
    emit_job_state("job-state-quick-error-jobid-0",
                   &(struct job_state){ .quick = true, .jobid = 0,
                                        .state = ST_ERROR });
    emit_job_state("job-state-quick-no-ckpt-jobid-max",
                   &(struct job_state){ .quick = true, .jobid = UINT32_MAX,
                                        .state = ST_NO_CKPT });
    emit_job_state("job-state-long-request-plain",
                   &(struct job_state){ .jobid = job, .state = ST_REQUEST,
                                        .handle = 7 });
    emit_job_state("job-state-long-handle-0-term",
                   &(struct job_state){ .jobid = job, .state = ST_REQUEST,
                                        .handle = 0, .term = true });
    emit_job_state("job-state-long-stop",
                   &(struct job_state){ .jobid = job, .state = ST_REQUEST,
                                        .handle = 1, .stop = true });
    emit_job_state("job-state-long-inc-prep-only",
                   &(struct job_state){ .jobid = job, .state = ST_INC_PREPED,
                                        .handle = 2, .inc_prep_only = true });
    emit_job_state("job-state-long-inc-recover-only",
                   &(struct job_state){ .jobid = job, .state = ST_RECOVERED,
                                        .handle = 3, .inc_recover_only = true });
    emit_job_state("job-state-long-all-options-handle-max",
                   &(struct job_state){ .jobid = UINT32_MAX, .state = ST_STOPPED,
                                        .handle = UINT32_MAX, .term = true,
                                        .stop = true, .inc_prep_only = true,
                                        .inc_recover_only = true });
    emit_job_state("job-state-long-migrating-no-procs",
                   &(struct job_state){ .jobid = job, .state = ST_MIGRATING,
                                        .handle = 9, .migrating = true,
                                        .n_procs = 0, .procs = NULL });
    {
        const opal_process_name_t one[] = { NAME(job, 0) };
        emit_job_state("job-state-long-migrating-one-proc",
                       &(struct job_state){ .jobid = job, .state = ST_MIGRATING,
                                            .handle = 10, .migrating = true,
                                            .n_procs = 1, .procs = one });
    }
    {
        const opal_process_name_t five[] = {
            NAME(job, 0), NAME(job, 1), NAME(job, 0x7fffffff),
            NAME(UINT32_MAX, UINT32_MAX), NAME(0, 0),
        };
        emit_job_state("job-state-long-migrating-five-procs",
                       &(struct job_state){ .jobid = job, .state = ST_ESTABLISHED,
                                            .handle = 0xdeadbeef, .stop = true,
                                            .migrating = true, .n_procs = 5,
                                            .procs = five });
    }

    /* LOCAL_FINISH: every cr_state; CONTINUE is the spec's worked example. */
    for (int cr = 0; cr < CR_COUNT; cr++) {
        emit_local_finish(vec_name("local-finish", cr_names[cr]), cr);
    }

    /* LOCAL_UPDATE: with and without the checkpoint-debugging bool. */
    emit_local_update("local-update-plain",
                      &(struct local_update){ .name = NAME(job, 0), .pid = 4242 });
    emit_local_update("local-update-pid-1-name-zero",
                      &(struct local_update){ .name = NAME(0, 0), .pid = 1 });
    emit_local_update("local-update-pid-max-name-max",
                      &(struct local_update){ .name = NAME(UINT32_MAX, UINT32_MAX),
                                              .pid = INT32_MAX });
    emit_local_update("local-update-debug-true",
                      &(struct local_update){ .name = NAME(job, 3), .pid = 31337,
                                              .has_debug = true, .debug = true });
    emit_local_update("local-update-debug-false",
                      &(struct local_update){ .name = NAME(job, 4), .pid = 31338,
                                              .has_debug = true, .debug = false });
    emit_local_update("local-update-pid-max-debug-true",
                      &(struct local_update){ .name = NAME(UINT32_MAX, 0),
                                              .pid = INT32_MAX,
                                              .has_debug = true, .debug = true });
}

/* ---- random vectors ----------------------------------------------------- */

/* splitmix64: tiny, well-distributed, and identical on every platform. */
static uint64_t rng_state;

static uint64_t rnd64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rnd_below(uint32_t n) /* n > 0; the bias is irrelevant here */
{
    return (uint32_t)(rnd64() % n);
}

static bool rnd_bool(void)
{
    return rnd64() & 1;
}

/* Full-range values, with the edges picked often enough to matter. */
static uint32_t rnd_u32(void)
{
    static const uint32_t edges[] = { 0, 1, UINT32_MAX, UINT32_MAX - 1, 0x80000000u };
    if (0 == rnd_below(8)) {
        return edges[rnd_below(sizeof edges / sizeof edges[0])];
    }
    return (uint32_t)rnd64();
}

static int rnd_int(void)
{
    static const int edges[] = { 0, 1, -1, INT32_MIN, INT32_MAX };
    if (0 == rnd_below(8)) {
        return edges[rnd_below(sizeof edges / sizeof edges[0])];
    }
    return (int)(int32_t)(uint32_t)rnd64();
}

/* A printable-ASCII string of up to max_len chars into buf, or NULL now and
 * then. Quotes and backslashes are included on purpose (escaped in json). */
static const char *rnd_string(char *buf, int max_len)
{
    if (0 == rnd_below(8)) {
        return NULL;
    }
    int len;
    switch (rnd_below(4)) {
    case 0:  len = max_len; break;               /* the longest allowed */
    case 1:  len = (int)rnd_below(4); break;     /* empty and tiny */
    default: len = (int)rnd_below((uint32_t)max_len + 1); break;
    }
    for (int i = 0; i < len; i++) {
        buf[i] = (char)(0x20 + rnd_below(0x7f - 0x20));
    }
    buf[len] = '\0';
    return buf;
}

#define MAX_RANDOM_LIST 8
#define MAX_RANDOM_HANDLE 64

static void emit_random(const char *name)
{
    char handle[MAX_RANDOM_HANDLE + 1];
    char hosts[MAX_RANDOM_LIST][MAX_HOST_LEN + 1];
    struct migrate_entry entries[MAX_RANDOM_LIST];
    opal_process_name_t procs[MAX_RANDOM_LIST];

    /* Kinds weighted by how much payload they carry (FIN_ACK is constant).
     * Order: REQUEST_OP, ORTED_STATE, OP_RESPONSE, FIN_ACK, JOB_STATE,
     * LOCAL_FINISH, LOCAL_UPDATE, matching the cases below. */
    static const uint8_t kind_weights[] = { 6, 2, 2, 1, 5, 2, 3 };
    uint32_t total = 0, kind = 0;
    for (size_t i = 0; i < sizeof kind_weights; i++) {
        total += kind_weights[i];
    }
    uint32_t pick = rnd_below(total);
    while (pick >= kind_weights[kind]) {
        pick -= kind_weights[kind++];
    }

    switch (kind) {
    case 0: {
        struct request_op m = { .jobid = rnd_u32(),
                                .op_event = (int)rnd_below(OP_COUNT) };
        /* Weight RESTART and MIGRATE up: they carry the interesting payloads. */
        if (rnd_bool()) {
            m.op_event = rnd_bool() ? OP_RESTART : OP_MIGRATE;
        }
        if (OP_RESTART == m.op_event) {
            m.seq_num = rnd_int();
            m.handle = rnd_string(handle, MAX_RANDOM_HANDLE);
        } else if (OP_MIGRATE == m.op_event) {
            m.n_entries = (int)rnd_below(MAX_RANDOM_LIST + 1);
            for (int i = 0; i < m.n_entries; i++) {
                entries[i] = (struct migrate_entry){
                    .vpid = rnd_int(),
                    .host = rnd_string(hosts[i], MAX_HOST_LEN),
                    .vpid_pref = rnd_int(),
                    .off_node = rnd_bool(),
                };
            }
            m.entries = entries;
        }
        emit_request_op(name, &m);
        break;
    }
    case 1:
        emit_orted_state(name, &(struct orted_state){
            .quick = rnd_bool(), .state = (int)rnd_below(ST_COUNT),
            .notify = 0 == rnd_below(4) });
        break;
    case 2: {
        int op;
        do {
            op = (int)rnd_below(OP_COUNT);
        } while (OP_FIN_ACK == op); /* that one is the FIN_ACK message */
        emit_op_response(name, &(struct op_response){ .op_event = op,
                                                      .op_state = rnd_int() });
        break;
    }
    case 3:
        emit_fin_ack(name);
        break;
    case 4: {
        struct job_state m = { .quick = rnd_bool(), .jobid = rnd_u32(),
                               .state = (int)rnd_below(ST_COUNT) };
        if (!m.quick) {
            m.handle = rnd_u32();
            m.term = rnd_bool();
            m.stop = rnd_bool();
            m.inc_prep_only = rnd_bool();
            m.inc_recover_only = rnd_bool();
            m.migrating = rnd_bool();
            if (m.migrating) {
                m.n_procs = rnd_below(MAX_RANDOM_LIST + 1);
                for (size_t i = 0; i < m.n_procs; i++) {
                    procs[i] = NAME(rnd_u32(), rnd_u32());
                }
                m.procs = procs;
            }
        }
        emit_job_state(name, &m);
        break;
    }
    case 5:
        emit_local_finish(name, (int)rnd_below(CR_COUNT));
        break;
    default: {
        /* Real pids are positive; keep them in 1..INT32_MAX. */
        struct local_update m = {
            .name = NAME(rnd_u32(), rnd_u32()),
            .pid = (pid_t)(1 + rnd_below(INT32_MAX)),
            .has_debug = rnd_bool(),
            .debug = rnd_bool(),
        };
        emit_local_update(name, &m);
        break;
    }
    }
}

/* ---- main --------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: ompi_vectors [--random SEED COUNT]\n");
    exit(2);
}

static unsigned long long parse_number(const char *s, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || '-' == s[0]) {
        fprintf(stderr, "ompi_vectors: bad %s: %s\n", what, s);
        usage();
    }
    return v;
}

int main(int argc, char **argv)
{
    bool random_mode = false;
    unsigned long long seed = 0, count = 0;

    if (4 == argc && 0 == strcmp(argv[1], "--random")) {
        random_mode = true;
        seed = parse_number(argv[2], "SEED");
        count = parse_number(argv[3], "COUNT");
    } else if (1 != argc) {
        usage();
    }

    int rc = opal_init_util(&argc, &argv);
    if (OPAL_SUCCESS != rc) {
        die("opal_init_util failed: %s", opal_strerror(rc));
    }

    if (random_mode) {
        rng_state = seed;
        char name[32];
        for (unsigned long long i = 0; i < count; i++) {
            snprintf(name, sizeof name, "random-%llu", i);
            emit_random(name);
        }
    } else {
        emit_fixed();
    }

    if (fflush(stdout) || ferror(stdout)) {
        die("writing stdout failed");
    }
    rc = opal_finalize_util();
    if (OPAL_SUCCESS != rc) {
        die("opal_finalize_util failed: %s", opal_strerror(rc));
    }
    return 0;
}
