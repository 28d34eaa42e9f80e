/*
 * A process group whose leader is gone: P (session leader) forks L, which makes its own
 * group; M1 and M2 join L's group; M1 forks G (in L's group too); then L exits and P reaps
 * it. After restore (where crs needs a helper with L's pid to make the group) every
 * process must still be in group L of session P, L's pid must be free (the helper reaped,
 * no zombie left), and P must have no child to reap but M1 and M2.
 */
#include "zoo.h"

#include <sys/prctl.h>
#include <sys/wait.h>

enum {
	M1_IDS = 1, /* M1 in group L of session P (as M1 and P see it) */
	M2_IDS,     /* the same for M2 */
	G_IDS,      /* the same for G (as G and M1 see it) */
	NO_ZOMBIE,  /* P has no child to reap but the members */
	ITEMS = NO_ZOMBIE
};

static pid_t me, leader;
static int lpipe[2]; /* L exits when its write end is closed everywhere */

static void check_ids(int item, const char *who)
{
	ZOO_CHECK(item, getpgid(0) == leader && getsid(0) == me, "%s: pgid %d sid %d, want %d %d",
		  who, getpgid(0), getsid(0), leader, me);
}

static void die_with_parent(pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL))
		zoo_die("PR_SET_PDEATHSIG");
	if (getppid() != parent)
		_exit(2);
}

/* A member: joins L's group, reports ready on `ready_fd`, waits for SIGTERM, checks. */
static int member(int ready_fd, int with_child, int item, const char *who)
{
	pid_t g = -1, self = getpid();

	close(lpipe[1]);
	die_with_parent(me);
	if (setpgid(0, leader))
		zoo_die("setpgid member");
	if (with_child) {
		g = fork();
		if (g < 0)
			zoo_die("fork G");
		if (g == 0) {
			die_with_parent(self);
			if (write(ready_fd, "g", 1) != 1)
				zoo_die("write ready");
			close(ready_fd);
			zoo_wait();
			/* G breaks its item itself (after M1 looked at it). */
			if (ZOO_BREAK(G_IDS))
				setpgid(0, 0);
			check_ids(G_IDS, "G");
			return zoo_failures ? 1 : 0;
		}
	}
	if (write(ready_fd, "m", 1) != 1)
		zoo_die("write ready");
	close(ready_fd);
	zoo_wait();
	check_ids(item, who);
	if (g > 0) {
		ZOO_CHECK(G_IDS, getpgid(g) == leader, "%s: G's pgid %d", who, getpgid(g));
		kill(g, SIGTERM);
		zoo_reap(g, "G");
	}
	return zoo_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	int ready[2], status = 0, i;
	pid_t m1, m2, w, z;
	siginfo_t si;
	char c;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	if (getsid(0) != me)
		zoo_die("not a session leader");
	if (pipe2(ready, O_CLOEXEC) || pipe2(lpipe, O_CLOEXEC))
		zoo_die("pipe2");

	leader = fork();
	if (leader < 0)
		zoo_die("fork L");
	if (leader == 0) {
		/* Makes its group, then waits until P lets it exit. */
		close(lpipe[1]);
		if (setpgid(0, 0))
			zoo_die("setpgid L");
		if (read(lpipe[0], &c, 1) < 0)
			zoo_die("read L");
		_exit(0);
	}
	close(lpipe[0]);
	setpgid(leader, leader);

	m1 = fork();
	if (m1 < 0)
		zoo_die("fork M1");
	if (m1 == 0) {
		close(ready[0]);
		return member(ready[1], 1, M1_IDS, "M1");
	}
	m2 = fork();
	if (m2 < 0)
		zoo_die("fork M2");
	if (m2 == 0) {
		close(ready[0]);
		return member(ready[1], 0, M2_IDS, "M2");
	}
	close(ready[1]);
	for (i = 0; i < 3; i++)
		if (read(ready[0], &c, 1) != 1)
			zoo_die("a member did not get ready");
	close(ready[0]);
	/* Every member joined: the leader goes. */
	close(lpipe[1]);
	if (waitpid(leader, &status, 0) != leader)
		zoo_die("waitpid L");

	zoo_ready();
	if (ZOO_BREAK(M1_IDS))
		setpgid(m1, me);
	if (ZOO_BREAK(M2_IDS))
		setpgid(m2, me);
	if (ZOO_BREAK(NO_ZOMBIE)) {
		z = fork();
		if (z == 0)
			_exit(0);
		if (z < 0 || waitid(P_PID, z, &si, WEXITED | WNOWAIT))
			zoo_die("make a zombie");
	}
	zoo_wait();

	/* Not an item: a session leader's group and session cannot change. */
	ZOO_CHECK(ZOO_UNBREAKABLE, getpgid(0) == me && getsid(0) == me, "P: pgid %d sid %d",
		  getpgid(0), getsid(0));
	ZOO_CHECK(M1_IDS, getpgid(m1) == leader, "M1's pgid is %d, want %d", getpgid(m1), leader);
	ZOO_CHECK(M2_IDS, getpgid(m2) == leader, "M2's pgid is %d, want %d", getpgid(m2), leader);
	/* Not an item: no process can take the pid while it names a live group. */
	ZOO_CHECK(ZOO_UNBREAKABLE, kill(leader, 0) == -1 && errno == ESRCH,
		  "pid %d (the gone leader) exists", leader);
	w = waitpid(-1, &status, WNOHANG);
	ZOO_CHECK(NO_ZOMBIE, w == 0, "P has a child %d to reap (status %#x) before the members end",
		  w, status);
	for (i = 0; i < 2; i++) {
		pid_t m = i ? m2 : m1;

		kill(m, SIGTERM);
		zoo_reap(m, i ? "M2" : "M1");
	}
	return zoo_done();
}
