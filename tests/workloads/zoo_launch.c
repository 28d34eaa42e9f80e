/*
 * Not a workload: the harness starts every workload through it. It makes the process the
 * leader of a new session (std::process::Command cannot), closes every fd but 0, 1 and 2
 * (whatever the test runner's environment leaked, e.g. a jobserver pipe, must not become
 * part of the dumped state), then execs argv[1..] in place, so the workload keeps this pid.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: zoo_launch PROGRAM [ARGS...]\n");
		return 2;
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
