/*
 * Children without a single fd: P forks four children, each closes every fd it has but
 * the write end of a pipe, writes one byte to it, closes it too, and waits. P reads the
 * four bytes and then EOF (so every child has closed everything) before it is ready.
 * After restore P checks that each child's /proc/PID/fd is still empty: the restore's
 * own fds (a report pipe a task holds until it parks) must not survive into it. One item;
 * to break it, one child keeps its stdin (from the start: a child has no way to learn
 * when P is ready, and P checks before it signals the children).
 */
#include "zoo.h"

#include <dirent.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define KIDS 4

enum { NO_FDS = 1, ITEMS = NO_FDS };

/* Names of the fds in /proc/PID/fd, "" when there are none. */
static void fds_of(pid_t pid, char *out, size_t len)
{
	char path[64];
	struct dirent *de;
	DIR *d;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d) {
		snprintf(out, len, "(cannot open %s)", path);
		return;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		strncat(out, de->d_name, len - strlen(out) - 2);
		strncat(out, " ", len - strlen(out) - 1);
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	pid_t kids[KIDS], me;
	int p[2], i, got = 0;
	char c, fds[256];

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	if (pipe(p))
		zoo_die("pipe");
	for (i = 0; i < KIDS; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			zoo_die("fork");
		if (kids[i] == 0) {
			int keep = ZOO_BREAK(NO_FDS) && i == 0;

			if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != me)
				_exit(2);
			/* Everything but the pipe's write end (and stdin when corrupting). */
			if (syscall(SYS_close_range, keep ? 1 : 0, p[1] - 1, 0) ||
			    syscall(SYS_close_range, p[1] + 1, ~0U, 0))
				_exit(3);
			if (write(p[1], "x", 1) != 1)
				_exit(4);
			close(p[1]);
			zoo_wait();
			_exit(0);
		}
	}
	close(p[1]);
	while (read(p[0], &c, 1) == 1)
		got++;
	close(p[0]);
	if (got != KIDS)
		zoo_die("a child did not get ready");

	zoo_ready();
	zoo_wait();

	for (i = 0; i < KIDS; i++) {
		fds_of(kids[i], fds, sizeof(fds));
		ZOO_CHECK(NO_FDS, fds[0] == '\0', "child %d has fds: %s", kids[i], fds);
		kill(kids[i], SIGTERM);
		zoo_reap(kids[i], "a child");
	}
	return zoo_done();
}
