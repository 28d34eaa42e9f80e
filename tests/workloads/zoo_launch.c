/*
 * Not a workload: the harness starts every workload through it. It makes the process the
 * leader of a new session (std::process::Command cannot), closes every fd but 0, 1 and 2
 * (whatever the test runner's environment leaked, e.g. a jobserver pipe, must not become
 * part of the dumped state), then execs argv[1..] in place, so the workload keeps this pid.
 *
 * `zoo_launch --pid-ns PROGRAM [ARGS...]`: the workload is the init (pid 1) of a new pid
 * namespace instead. zoo_launch unshares one, forks the init (which does the above), writes
 * the init's pid (as the caller sees it) to the file $ZOO_INIT_PID and exits 0; the init is
 * then the child of the nearest subreaper (the harness).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <signal.h>
#include <stdlib.h>
#include <sched.h>
#include <fcntl.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: zoo_launch [--pid-ns] PROGRAM [ARGS...]\n");
		return 2;
	}
	if (strcmp(argv[1], "--pid-ns") == 0) {
		const char *path = getenv("ZOO_INIT_PID");
		char line[32];
		pid_t init;
		int fd, n;

		if (argc < 3 || !path) {
			fprintf(stderr, "zoo_launch: --pid-ns needs a program and $ZOO_INIT_PID\n");
			return 2;
		}
		if (unshare(CLONE_NEWPID)) {
			fprintf(stderr, "zoo_launch: unshare(CLONE_NEWPID): %s\n", strerror(errno));
			return 2;
		}
		init = fork();
		if (init < 0) {
			fprintf(stderr, "zoo_launch: fork: %s\n", strerror(errno));
			return 2;
		}
		if (init > 0) {
			n = snprintf(line, sizeof(line), "%d\n", (int)init);
			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fd < 0 || write(fd, line, (size_t)n) != n || close(fd)) {
				fprintf(stderr, "zoo_launch: writing %s: %s\n", path, strerror(errno));
				kill(init, SIGKILL);
				return 2;
			}
			return 0;
		}
		argv++;
	}
	if (setsid() < 0) {
		fprintf(stderr, "zoo_launch: setsid: %s\n", strerror(errno));
		return 2;
	}
	if (syscall(SYS_close_range, 3, ~0u, 0) != 0) {
		for (int fd = 3; fd < 65536; fd++)
			close(fd);
	}
	execv(argv[1], argv + 1);
	fprintf(stderr, "zoo_launch: exec %s: %s\n", argv[1], strerror(errno));
	return 127;
}
