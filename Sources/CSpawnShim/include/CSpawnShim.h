// Process creation for NBDScriptBackends: posix_spawn with the child's standard streams on three
// given descriptors, every other descriptor closed, an empty signal mask and default signal
// dispositions. Written in C because the glibc extensions it needs (pipe2, closefrom in a spawn's
// file actions) are declared only under _GNU_SOURCE, which Swift's Glibc module does not define.
#ifndef CSPAWNSHIM_H
#define CSPAWNSHIM_H

#include <sys/types.h>

/// Creates a pipe whose two ends are close-on-exec, so that no other child started at the same
/// time inherits them. Returns 0, or -1 with errno set.
int cspawn_pipe(int fds[2]);

/// Starts `path` with `argv` and `envp` (both NULL-terminated), its standard input, output and
/// error on `in_fd`, `out_fd` and `err_fd`; descriptors 3 and up are closed in the child, every
/// signal is unblocked and has its default action (a server ignores SIGPIPE; a shell script's
/// `dd` must not inherit that). Returns 0 and stores the process id in `pid`, or an errno value
/// (ENOEXEC when `path` is not an executable format, such as a script without `#!`).
int cspawn_start(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                 int in_fd, int out_fd, int err_fd);

#endif
