/*
 * The application API as snapc.h documents it, compiled as C and as C++
 * by tests/c_programs.rs (only the installed header and library) and run
 * standalone: NULL checks, a configuration set from code and refused
 * values, one snapc per process, SNAPC_E_NO_COORDINATOR, snapc_pending and
 * snapc_progress_wait around a signal nobody answers, then (after printing
 * "ready pid=<pid>") a real checkpoint by `snapc checkpoint --pid` that
 * snapc_progress_wait wakes for, with a hook that calls back (refused with
 * SNAPC_E_BUSY). Prints "contract ok" and exits 0.
 */
#include <snapc.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "contract.c:%d: %s (last error: %s)\n", __LINE__, #cond, \
                    snapc_last_error());                                                \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static snapc *handle;
static int prepared, saved, reentered = 1;

static int prepare(void *user) {
    CHECK(user == &prepared);
    prepared++;
    /* A hook calling back on its own handle is refused, not undefined. */
    reentered = snapc_progress(handle);
    return 0;
}

static int checkpoint(void *user, const char *dir) {
    (void)user;
    CHECK(dir != NULL && dir[0] == '/');
    saved++;
    return SNAPC_CONTINUE;
}

int main(void) {
    enum snapc_result r = SNAPC_TERM;
    CHECK(r == 1 && SNAPC_CONTINUE == 0 && SNAPC_ERROR == 2);
    CHECK(snapc_abi_version() == SNAPC_ABI_VERSION);

    /* Every pointer is checked. */
    CHECK(snapc_progress(NULL) == SNAPC_E_INVAL);
    CHECK(snapc_pending(NULL) == SNAPC_E_INVAL);
    CHECK(snapc_request_checkpoint(NULL) == SNAPC_E_INVAL);
    CHECK(strlen(snapc_last_error()) > 0);
    snapc_stop(NULL);

    /* Configuration from code: the environment's names, checked as it is. */
    snapc_config *c = snapc_config_from_env(); /* SNAPC_PIPE_DIR, SNAPC_STORE from the test */
    CHECK(c != NULL);
    CHECK(snapc_config_set(c, "SNAPC_TIMEOUT", "-1") == SNAPC_E_INVAL);
    CHECK(strstr(snapc_last_error(), "SNAPC_TIMEOUT") != NULL);
    CHECK(snapc_config_set(c, "SNAPC_NO_SUCH_SETTING", "1") == SNAPC_E_INVAL);
    CHECK(snapc_config_set(c, "SNAPC_TIMEOUT", "0.3") == SNAPC_OK);
    CHECK(snapc_config_set(NULL, "SNAPC_TIMEOUT", "1") == SNAPC_E_INVAL);

    snapc_hooks hooks = {prepare, checkpoint, NULL, NULL};
    handle = snapc_start_with(c, &hooks, &prepared);
    snapc_config_free(c);
    CHECK(handle != NULL);
    CHECK(snapc_start(&hooks, NULL) == NULL); /* one per process */
    CHECK(strlen(snapc_last_error()) > 0);

    CHECK(snapc_progress(handle) == SNAPC_EVENT_NONE);
    CHECK(snapc_pending(handle) == 0);
    CHECK(snapc_request_checkpoint(handle) == SNAPC_E_NO_COORDINATOR);
    CHECK(snapc_is_terminating(handle) == 0);
    snapc_checkpoint_info info;
    CHECK(snapc_last_checkpoint(handle, &info) == 0);

    /* No signal: the wait ends at its deadline. */
    CHECK(snapc_progress_wait(handle, 30) == SNAPC_E_TIMEOUT);
    /* A signal is pending until a progress point takes it; nobody answers
     * it here, so its handshake fails at the 0.3 s open deadline. */
    CHECK(raise(SIGUSR1) == 0);
    CHECK(snapc_pending(handle) == 1);
    CHECK(snapc_pending(handle) == 1);
    CHECK(snapc_progress_wait(handle, 10000) == SNAPC_EVENT_CHECKPOINT_FAILED);
    CHECK(snapc_pending(handle) == 0);
    CHECK(snapc_last_checkpoint(handle, &info) == 1);
    CHECK(!info.ok && info.error.wait == SNAPC_WAIT_OPEN && info.error.failure == SNAPC_FAILURE_DEADLINE);
    CHECK(prepared == 0 && saved == 0);

    /* A real coordinator: the test runs `snapc checkpoint --pid` now. */
    printf("ready pid=%d\n", (int)getpid());
    fflush(stdout);
    int ev = snapc_progress_wait(handle, 60000);
    CHECK(ev == SNAPC_EVENT_CHECKPOINT);
    CHECK(prepared == 1 && saved == 1);
    CHECK(reentered == SNAPC_E_BUSY);
    CHECK(snapc_last_checkpoint(handle, &info) == 1);
    CHECK(info.ok && info.state == SNAPC_CR_CONTINUE && info.handle > 0 && info.names.n == 1);
    CHECK(info.stages.checkpoint_us >= 0 && info.stages.signal_us >= 0);
    printf("checkpoint n=%u handle=%u\n", info.names.n, info.handle);

    snapc_stop(handle);
    printf("contract ok\n");
    return 0;
}
