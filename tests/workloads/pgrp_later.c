/*
 * A process group led by a younger sibling: P (session leader) forks A, then B; B makes
 * its own group; A joins B's group and forks A1 (in B's group too). crs restores children
 * in pid order unless a group needs otherwise: B's subtree must be created before A's.
 * Every process checks its pgid and sid after restore; P checks theirs too.
 */
#include "zoo.h"

#include <sys/prctl.h>
#include <sys/wait.h>

/* Each process's item: its group and session, as it sees them and as its parent does. */
enum { A_IDS = 1, A1_IDS, B_IDS, ITEMS = B_IDS };

static pid_t me;

static void die_with_parent(pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL))
		zoo_die("PR_SET_PDEATHSIG");
	if (getppid() != parent)
		_exit(2);
}

static void check_ids(int item, const char *who, pid_t pgid)
{
	ZOO_CHECK(item, getpgid(0) == pgid && getsid(0) == me, "%s: pgid %d sid %d, want %d %d",
		  who, getpgid(0), getsid(0), pgid, me);
}

static void ready_and_wait(int fd)
{
	if (write(fd, "x", 1) != 1)
		zoo_die("write ready");
	close(fd);
	zoo_wait();
}

static void ended_well(pid_t pid, const char *who)
{
	kill(pid, SIGTERM);
	zoo_reap(pid, who);
}

int main(int argc, char **argv)
{
	int ready[2], go[2], i;
	pid_t a, b;
	char c;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	if (getsid(0) != me)
		zoo_die("not a session leader");
	if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC))
		zoo_die("pipe2");

	a = fork();
	if (a < 0)
		zoo_die("fork A");
	if (a == 0) {
		pid_t a1, self = getpid();

		close(ready[0]);
		close(go[1]);
		die_with_parent(me);
		if (read(go[0], &b, sizeof(b)) != sizeof(b))
			zoo_die("read B's pid");
		close(go[0]);
		if (setpgid(0, b))
			zoo_die("setpgid A");
		a1 = fork();
		if (a1 < 0)
			zoo_die("fork A1");
		if (a1 == 0) {
			die_with_parent(self);
			ready_and_wait(ready[1]);
			/* A1 breaks its item itself (after A looked at it). */
			if (ZOO_BREAK(A1_IDS))
				setpgid(0, 0);
			check_ids(A1_IDS, "A1", b);
			return zoo_failures ? 1 : 0;
		}
		ready_and_wait(ready[1]);
		check_ids(A_IDS, "A", b);
		ZOO_CHECK(A1_IDS, getpgid(a1) == b, "A: A1's pgid %d", getpgid(a1));
		ended_well(a1, "A1");
		return zoo_failures ? 1 : 0;
	}
	close(go[0]);

	b = fork();
	if (b < 0)
		zoo_die("fork B");
	if (b == 0) {
		close(ready[0]);
		close(go[1]);
		die_with_parent(me);
		if (setpgid(0, 0))
			zoo_die("setpgid B");
		ready_and_wait(ready[1]);
		check_ids(B_IDS, "B", getpid());
		return zoo_failures ? 1 : 0;
	}
	if (setpgid(b, b))
		zoo_die("setpgid(B, B)");
	if (write(go[1], &b, sizeof(b)) != sizeof(b))
		zoo_die("write B's pid");
	close(go[1]);
	close(ready[1]);
	for (i = 0; i < 3; i++)
		if (read(ready[0], &c, 1) != 1)
			zoo_die("a child did not get ready");
	close(ready[0]);

	zoo_ready();
	if (ZOO_BREAK(A_IDS))
		setpgid(a, a);
	if (ZOO_BREAK(B_IDS))
		setpgid(b, me); /* B's group lives on with A and A1 */
	zoo_wait();

	/* Not an item: a session leader's group and session cannot change. */
	ZOO_CHECK(ZOO_UNBREAKABLE, getpgid(0) == me && getsid(0) == me, "P: pgid %d sid %d",
		  getpgid(0), getsid(0));
	ZOO_CHECK(A_IDS, getpgid(a) == b, "A's pgid is %d, want %d", getpgid(a), b);
	ZOO_CHECK(B_IDS, getpgid(b) == b, "B's pgid is %d, want %d", getpgid(b), b);
	ended_well(a, "A");
	ended_well(b, "B");
	return zoo_done();
}
