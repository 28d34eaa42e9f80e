/*
 * tty_session: starts a program in a new session whose controlling terminal is the tty on
 * stdin, like a terminal emulator or sshd starting a shell. Used by the shell-job test.
 *
 *   tty_session CMD ARGS...     setsid(), stdin's tty becomes the controlling terminal,
 *                               then exec CMD: CMD leads the session (crs restore -j).
 *   tty_session -f CMD ARGS...  the same, then CMD runs in a forked child, a job of the
 *                               session and not its leader (the shell-job workload);
 *                               tty_session waits and exits with the child's status
 *                               (128 + signal when it was killed).
 *
 * Not a zoo workload: it sets up no state of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int fork_job = argc > 1 && strcmp(argv[1], "-f") == 0;
	char **cmd = argv + 1 + fork_job;

	if (!*cmd) {
		fprintf(stderr, "usage: %s [-f] CMD ARGS...\n", argv[0]);
		return 2;
	}
	if (setsid() < 0) {
		perror("tty_session: setsid");
		return 2;
	}
	if (ioctl(0, TIOCSCTTY, 0) < 0) {
		perror("tty_session: TIOCSCTTY on stdin");
		return 2;
	}
	if (!fork_job) {
		execvp(cmd[0], cmd);
		fprintf(stderr, "tty_session: exec %s: %s\n", cmd[0], strerror(errno));
		return 127;
	}
	pid_t child = fork();
	if (child < 0) {
		perror("tty_session: fork");
		return 2;
	}
	if (child == 0) {
		execvp(cmd[0], cmd);
		fprintf(stderr, "tty_session: exec %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	int status;
	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR) {
			perror("tty_session: waitpid");
			return 2;
		}
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}
