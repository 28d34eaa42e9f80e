/*
 * Sessions: P (session leader) forks X and S. X forks C, then calls setsid() and forks G
 * and G2: C stays in P's session and group under a parent of another session, G is in
 * X's session and group, G2 leads its own group of X's session. S stays in P's session and
 * group beside X. crs must fork C before X's setsid. After restore every process checks
 * its own ppid, pgid and sid; X checks its children's.
 */
#include "zoo.h"

#include <sys/prctl.h>
#include <sys/wait.h>

/* Each process's item: its parent, group and session, as it and its parent see them. X
 * leads its session: nothing can change its group or session (not an item). */
enum { C_IDS = 1, G_IDS, G2_IDS, S_IDS, ITEMS = S_IDS };

static int ready_w;

static void die_with_parent(pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL))
		zoo_die("PR_SET_PDEATHSIG");
	if (getppid() != parent)
		_exit(2);
}

static void ready_and_wait(void)
{
	if (write(ready_w, "x", 1) != 1)
		zoo_die("write ready");
	close(ready_w);
	zoo_wait();
}

static void check_ids(int item, const char *who, pid_t ppid, pid_t pgid, pid_t sid)
{
	ZOO_CHECK(item, getppid() == ppid && getpgid(0) == pgid && getsid(0) == sid,
		  "%s: ppid %d pgid %d sid %d, want %d %d %d", who, getppid(), getpgid(0), getsid(0),
		  ppid, pgid, sid);
}

static void ended_well(pid_t pid, const char *who)
{
	kill(pid, SIGTERM);
	zoo_reap(pid, who);
}

/* A child that checks (ppid, pgid, sid) after SIGTERM; `own_group`: setpgid(0, 0) first.
 * To break its item, it changes its group (within its session) before it checks. */
static pid_t child(int item, const char *who, pid_t pgid, pid_t sid, int own_group)
{
	pid_t parent = getpid(), pid = fork();

	if (pid < 0)
		zoo_die("fork");
	if (pid == 0) {
		die_with_parent(parent);
		if (own_group && setpgid(0, 0))
			zoo_die("setpgid");
		ready_and_wait();
		if (ZOO_BREAK(item))
			setpgid(0, own_group ? sid : 0);
		check_ids(item, who, parent, own_group ? getpid() : pgid, sid);
		exit(zoo_failures ? 1 : 0);
	}
	if (own_group)
		setpgid(pid, pid);
	return pid;
}

int main(int argc, char **argv)
{
	int ready[2], i;
	pid_t me, x, s;
	char c;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	if (getsid(0) != me)
		zoo_die("not a session leader");
	if (pipe2(ready, O_CLOEXEC))
		zoo_die("pipe2");
	ready_w = ready[1];

	x = fork();
	if (x < 0)
		zoo_die("fork X");
	if (x == 0) {
		pid_t cpid, g, g2, self = getpid();

		close(ready[0]);
		die_with_parent(me);
		cpid = child(C_IDS, "C", me, me, 0);
		if (setsid() != self)
			zoo_die("setsid X");
		g = child(G_IDS, "G", self, self, 0);
		g2 = child(G2_IDS, "G2", 0, self, 1);
		ready_and_wait();
		check_ids(ZOO_UNBREAKABLE, "X", me, self, self);
		ZOO_CHECK(C_IDS, getsid(cpid) == me && getpgid(cpid) == me, "X: C's sid %d pgid %d",
			  getsid(cpid), getpgid(cpid));
		ZOO_CHECK(G_IDS, getsid(g) == self && getpgid(g) == self, "X: G's sid %d pgid %d",
			  getsid(g), getpgid(g));
		ZOO_CHECK(G2_IDS, getsid(g2) == self && getpgid(g2) == g2, "X: G2's sid %d pgid %d",
			  getsid(g2), getpgid(g2));
		ended_well(cpid, "C");
		ended_well(g, "G");
		ended_well(g2, "G2");
		return zoo_failures ? 1 : 0;
	}
	s = child(S_IDS, "S", me, me, 0);
	close(ready[1]);
	for (i = 0; i < 5; i++)
		if (read(ready[0], &c, 1) != 1)
			zoo_die("a child did not get ready");
	close(ready[0]);

	zoo_ready();
	zoo_wait();

	/* Not items: a session leader's group and session cannot change. */
	ZOO_CHECK(ZOO_UNBREAKABLE, getpgid(0) == me && getsid(0) == me, "P: pgid %d sid %d",
		  getpgid(0), getsid(0));
	ZOO_CHECK(ZOO_UNBREAKABLE, getsid(x) == x && getpgid(x) == x, "X's sid %d pgid %d",
		  getsid(x), getpgid(x));
	ZOO_CHECK(S_IDS, getsid(s) == me && getpgid(s) == me, "S's sid %d pgid %d", getsid(s),
		  getpgid(s));
	ended_well(x, "X");
	ended_well(s, "S");
	return zoo_done();
}
