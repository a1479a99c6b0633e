/* slmprof-spawn: start a command for `slmprof stat` so that its peak RSS is its own.
 *
 *     slmprof-spawn GATE_FD REPORT_FD CMD [ARGS...]
 *
 * The kernel keeps a process's peak RSS across exec: a command forked from the Python process
 * that measures it (or spawned with vfork, which shares that process's memory) starts with
 * Python's tens of MiB as its high-water mark. This small program is exec'd first, and the
 * command is forked from it instead, so the command starts from this program's few hundred KiB,
 * as it would under /usr/bin/time.
 *
 * The command is held before its exec until a byte (or end of file) arrives on GATE_FD, so the
 * caller can attach counters to it first. On REPORT_FD this writes, one line each:
 *     pid PID                          the command's process, held at the gate
 *     exit STATUS MAXRSS_KB            its raw wait status and its own peak RSS (ru_maxrss)
 *  or error ERRNO                      the exec failed (ENOENT, EACCES, ...)
 * and then exits 0 (1 with a message on stderr if it cannot do its job). Ctrl-C is the
 * command's to take: this program ignores SIGINT and SIGQUIT while it waits, so it always
 * reports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int parse_fd(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    return (*s && !*end && v >= 0 && v < 1 << 20) ? (int)v : -1;
}

static int write_all(int fd, const char *buf, size_t n) {
    while (n) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static int report(int fd, const char *fmt, long a, long b) {
    char line[96];
    int n = snprintf(line, sizeof line, fmt, a, b);
    return n > 0 && (size_t)n < sizeof line ? write_all(fd, line, (size_t)n) : -1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: slmprof-spawn GATE_FD REPORT_FD CMD [ARGS...]\n");
        return 1;
    }
    const int gate = parse_fd(argv[1]), out = parse_fd(argv[2]);
    if (gate < 0 || out < 0) {
        fprintf(stderr, "slmprof-spawn: bad file descriptor argument\n");
        return 1;
    }
    int err_pipe[2]; /* the command's exec error, if any; closed by a successful exec */
    if (pipe2(err_pipe, O_CLOEXEC) != 0) {
        perror("slmprof-spawn: pipe");
        return 1;
    }
    struct sigaction ignore = {.sa_handler = SIG_IGN}, old_quit;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGINT, &ignore, NULL);
    sigaction(SIGQUIT, &ignore, &old_quit);

    const pid_t pid = fork();
    if (pid < 0) {
        perror("slmprof-spawn: fork");
        return 1;
    }
    if (pid == 0) { /* the command: wait at the gate, then exec; Ctrl-C ends it by default */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGINT, &dfl, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        close(out);
        close(err_pipe[0]);
        char byte;
        while (read(gate, &byte, 1) < 0 && errno == EINTR) {}
        close(gate);
        execvp(argv[3], argv + 3);
        int e = errno;
        while (write(err_pipe[1], &e, sizeof e) < 0 && errno == EINTR) {}
        _exit(127);
    }
    close(gate);
    close(err_pipe[1]);
    if (report(out, "pid %ld\n", (long)pid, 0) != 0) {
        kill(pid, SIGKILL); /* nobody can open the gate or read the result */
        waitpid(pid, NULL, 0);
        return 1;
    }
    int exec_errno = 0;
    ssize_t got;
    while ((got = read(err_pipe[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {}
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("slmprof-spawn: wait4");
            return 1;
        }
    }
    if (got == (ssize_t)sizeof exec_errno)
        return report(out, "error %ld\n", (long)exec_errno, 0) == 0 ? 0 : 1;
    return report(out, "exit %ld %ld\n", (long)status, (long)ru.ru_maxrss) == 0 ? 0 : 1;
}
