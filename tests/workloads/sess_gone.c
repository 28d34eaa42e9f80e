/*
 * A session whose leader is gone: P (session leader, child subreaper) forks L; L calls
 * setsid() and forks M (in L's session and group) and M2 (its own group of L's session),
 * then exits: M and M2 come back to P, which reaps L. crs restores this with a helper that
 * takes L's pid, calls setsid() and forks M and M2, then exits. After restore M and M2
 * check their ppid (P), pgid and sid; P checks that L's pid is free, that it has no child
 * to reap but M and M2, and that it is still a subreaper.
 */
#include "zoo.h"

#include <sys/prctl.h>
#include <sys/wait.h>

static pid_t me, leader;
static int ready[2], go[2];

static void member(int own_group)
{
	char c;

	if (own_group && setpgid(0, 0))
		zoo_die("setpgid M2");
	/* EOF once P reaped L: P is the parent then. */
	if (read(go[0], &c, 1) != 0)
		zoo_die("read go");
	close(go[0]);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL))
		zoo_die("PR_SET_PDEATHSIG");
	if (getppid() != me)
		_exit(2);
	if (write(ready[1], "x", 1) != 1)
		zoo_die("write ready");
	close(ready[1]);
	zoo_wait();
	ZOO_CHECK(getppid() == me, "ppid %d, want %d", getppid(), me);
	ZOO_CHECK(getsid(0) == leader, "sid %d, want %d", getsid(0), leader);
	ZOO_CHECK(getpgid(0) == (own_group ? getpid() : leader), "pgid %d", getpgid(0));
	exit(zoo_failures ? 1 : 0);
}

int main(int argc, char **argv)
{
	pid_t m[2], w;
	int status, i, sub = 0;
	char c;

	zoo_init(argc, argv);
	me = getpid();
	if (getsid(0) != me)
		zoo_die("not a session leader");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1))
		zoo_die("PR_SET_CHILD_SUBREAPER");
	if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC))
		zoo_die("pipe2");

	leader = fork();
	if (leader < 0)
		zoo_die("fork L");
	if (leader == 0) {
		leader = getpid();
		close(go[1]);
		close(ready[0]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL))
			zoo_die("PR_SET_PDEATHSIG");
		if (setsid() != getpid())
			zoo_die("setsid L");
		for (i = 0; i < 2; i++) {
			pid_t pid = fork();

			if (pid < 0)
				zoo_die("fork M");
			if (pid == 0)
				member(i);
			if (write(ready[1], &pid, sizeof(pid)) != sizeof(pid))
				zoo_die("write M's pid");
		}
		_exit(0);
	}
	close(go[0]);
	for (i = 0; i < 2; i++)
		if (read(ready[0], &m[i], sizeof(m[i])) != sizeof(m[i]))
			zoo_die("read M's pid");
	if (waitpid(leader, &status, 0) != leader)
		zoo_die("waitpid L");
	close(go[1]);
	close(ready[1]);
	for (i = 0; i < 2; i++)
		if (read(ready[0], &c, 1) != 1)
			zoo_die("a member did not get ready");
	close(ready[0]);

	zoo_ready();
	if (zoo_corrupt)
		prctl(PR_SET_CHILD_SUBREAPER, 0);
	zoo_wait();

	ZOO_CHECK(getpgid(0) == me && getsid(0) == me, "P: pgid %d sid %d", getpgid(0),
		  getsid(0));
	if (prctl(PR_GET_CHILD_SUBREAPER, &sub) || !sub)
		zoo_fail("P is no longer a child subreaper");
	for (i = 0; i < 2; i++)
		ZOO_CHECK(getsid(m[i]) == leader, "M%d's sid is %d, want %d", i, getsid(m[i]),
			  leader);
	ZOO_CHECK(kill(leader, 0) == -1 && errno == ESRCH, "pid %d (the gone leader) exists",
		  leader);
	w = waitpid(-1, &status, WNOHANG);
	ZOO_CHECK(w == 0, "P has a child %d to reap (status %#x) before the members end", w,
		  status);
	for (i = 0; i < 2; i++) {
		kill(m[i], SIGTERM);
		if (waitpid(m[i], &status, 0) != m[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			zoo_fail("M%d (%d) ended with %#x", i, m[i], status);
	}
	return zoo_done();
}
