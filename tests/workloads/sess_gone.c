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

enum {
	M_IDS = 1, /* M: parent P, session L, group L (as M sees it; its session as P does) */
	M2_IDS,    /* M2: parent P, session L, a group of its own */
	SUBREAPER, /* P is still a child subreaper */
	NO_ZOMBIE, /* P has no child to reap but M and M2 */
	ITEMS = NO_ZOMBIE
};

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
	/* A member breaks its item itself: it changes its group within L's session. */
	if (ZOO_BREAK(own_group ? M2_IDS : M_IDS))
		setpgid(0, own_group ? leader : 0);
	ZOO_CHECK(own_group ? M2_IDS : M_IDS,
		  getppid() == me && getsid(0) == leader &&
			  getpgid(0) == (own_group ? getpid() : leader),
		  "ppid %d sid %d pgid %d, want %d %d %d", getppid(), getsid(0), getpgid(0), me,
		  leader, own_group ? getpid() : leader);
	exit(zoo_failures ? 1 : 0);
}

int main(int argc, char **argv)
{
	pid_t m[2], w;
	int status = 0, i, sub = 0;
	siginfo_t si;
	char c;

	zoo_init(argc, argv, ITEMS);
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
	if (ZOO_BREAK(SUBREAPER))
		prctl(PR_SET_CHILD_SUBREAPER, 0);
	if (ZOO_BREAK(NO_ZOMBIE)) {
		w = fork();
		if (w == 0)
			_exit(0);
		if (w < 0 || waitid(P_PID, w, &si, WEXITED | WNOWAIT))
			zoo_die("make a zombie");
	}
	zoo_wait();

	/* Not an item: a session leader's group and session cannot change. */
	ZOO_CHECK(ZOO_UNBREAKABLE, getpgid(0) == me && getsid(0) == me, "P: pgid %d sid %d",
		  getpgid(0), getsid(0));
	ZOO_CHECK(SUBREAPER, prctl(PR_GET_CHILD_SUBREAPER, &sub) == 0 && sub,
		  "P is no longer a child subreaper");
	for (i = 0; i < 2; i++)
		ZOO_CHECK(i ? M2_IDS : M_IDS, getsid(m[i]) == leader, "M%d's sid is %d, want %d", i,
			  getsid(m[i]), leader);
	/* Not an item: no process can take the pid while it names a live session. */
	ZOO_CHECK(ZOO_UNBREAKABLE, kill(leader, 0) == -1 && errno == ESRCH,
		  "pid %d (the gone leader) exists", leader);
	w = waitpid(-1, &status, WNOHANG);
	ZOO_CHECK(NO_ZOMBIE, w == 0, "P has a child %d to reap (status %#x) before the members end",
		  w, status);
	/* M2 first: to break its item it joins M's group, which must still exist. */
	for (i = 1; i >= 0; i--) {
		kill(m[i], SIGTERM);
		zoo_reap(m[i], i ? "M2" : "M");
	}
	return zoo_done();
}
