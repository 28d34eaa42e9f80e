/*
 * Not a workload: the harness runs it before a restore, to wait until every pid given on
 * the command line can be taken again. A process that is gone from /proc may still hold
 * its pid for a while: since Linux 6.15 an exiting thread frees its pid after it has told
 * the parent (outside tasklist_lock), and a thread of low priority (SCHED_IDLE) on a busy
 * machine can take long to get there. No interface shows that state, so each pid is
 * probed: clone3() with set_tid makes a child with that pid (exiting at once, reaped
 * here, which frees the pid again before waitpid returns) or fails with EEXIST while the
 * pid is taken; then it is tried again 10 ms later, for up to 30 s.
 * Exit 0 once every pid could be taken, 1 when one stays taken, 2 on another error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 1 when a child could be made with `pid` (and was reaped), 0 while it is taken. */
static int probe(pid_t pid)
{
	struct clone_args ca;
	long r;

	memset(&ca, 0, sizeof(ca));
	ca.set_tid = (unsigned long)&pid;
	ca.set_tid_size = 1;
	ca.exit_signal = SIGCHLD;
	r = syscall(SYS_clone3, &ca, sizeof(ca));
	if (r == 0)
		_exit(0);
	if (r < 0 && errno == EEXIST)
		return 0;
	if (r < 0) {
		fprintf(stderr, "zoo_pid_free: clone3 with pid %d: %s\n", pid, strerror(errno));
		exit(2);
	}
	if (waitpid((pid_t)r, NULL, 0) != r) {
		fprintf(stderr, "zoo_pid_free: waitpid %ld: %s\n", r, strerror(errno));
		exit(2);
	}
	return 1;
}

int main(int argc, char **argv)
{
	struct timespec tick = {0, 10000000};
	double deadline = now() + 30;
	int i;

	for (i = 1; i < argc; i++) {
		pid_t pid = (pid_t)atoi(argv[i]);

		while (!probe(pid)) {
			if (now() > deadline) {
				fprintf(stderr, "zoo_pid_free: pid %d stays taken\n", pid);
				return 1;
			}
			nanosleep(&tick, NULL);
		}
	}
	return 0;
}
