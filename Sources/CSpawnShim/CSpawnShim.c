#define _GNU_SOURCE
#include "CSpawnShim.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

int cspawn_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int cspawn_start(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                 int in_fd, int out_fd, int err_fd) {
    // dup2 onto 0, 1 and 2 in that order would overwrite a source that is itself 0, 1 or 2 (a
    // server started with a standard stream closed gets such numbers from pipe2); move those up.
    int sources[3] = { in_fd, out_fd, err_fd };
    int moved[3] = { -1, -1, -1 };
    int result = 0;
    for (int i = 0; i < 3; i++) {
        if (sources[i] <= 2) {
            moved[i] = fcntl(sources[i], F_DUPFD_CLOEXEC, 3);
            if (moved[i] == -1) { result = errno; goto out; }
            sources[i] = moved[i];
        }
    }

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    if ((result = posix_spawn_file_actions_init(&actions)) != 0) goto out;
    if ((result = posix_spawnattr_init(&attributes)) != 0) {
        posix_spawn_file_actions_destroy(&actions);
        goto out;
    }
    for (int target = 0; target < 3 && result == 0; target++) {
        result = posix_spawn_file_actions_adddup2(&actions, sources[target], target);
    }
    // The pipes are close-on-exec already; this also closes whatever the embedding program opened
    // without O_CLOEXEC (sockets, log files), so a script never holds a client connection open.
    if (result == 0) result = posix_spawn_file_actions_addclosefrom_np(&actions, 3);

    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    if (result == 0) result = posix_spawnattr_setsigmask(&attributes, &empty);
    if (result == 0) result = posix_spawnattr_setsigdefault(&attributes, &all);
    if (result == 0) result = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (result == 0) result = posix_spawn(pid, path, &actions, &attributes, argv, envp);

    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
out:
    for (int i = 0; i < 3; i++) {
        if (moved[i] != -1) close(moved[i]);
    }
    return result;
}
