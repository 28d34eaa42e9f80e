/*
 * A process tree: the parent P (session leader, started by the harness) with three children:
 *   A  leader of its own process group (setpgid(0, 0)),
 *   B  in P's group, with a child G of its own (also in P's group),
 *   Z  exits with code 7 at once and stays a zombie until P reaps it after SIGTERM.
 * Every live process holds a counter and a 1 MiB buffer with a known checksum. After
 * SIGTERM, P signals A and B, B signals G; each checks its memory, getppid(), getpgid()
 * and getsid() and exits 0 (1 on a broken check); B checks G's status, P checks Z's exit
 * code 7 and the others' 0, and exits with the verdict.
 */
#include "zoo.h"

#include <sys/prctl.h>
#include <sys/wait.h>

#define BUF_LEN (1 << 20)

/* Per process: its ids (parent, group, session: as it sees them, and its group as its
 * parent sees it), its counter, its memory. P's ids cannot change (it leads its session
 * and its parent is whoever ran or restored it): not an item. */
enum {
	P_COUNTER = 1,
	P_MEMORY,
	A_IDS,
	A_COUNTER,
	A_MEMORY,
	B_IDS,
	B_COUNTER,
	B_MEMORY,
	G_IDS,
	G_COUNTER,
	G_MEMORY,
	ITEMS = G_MEMORY
};

/* The items of a process: ids, counter, memory. */
struct items {
	int ids, counter, memory;
};

static const struct items p_items = {ZOO_UNBREAKABLE, P_COUNTER, P_MEMORY};
static const struct items a_items = {A_IDS, A_COUNTER, A_MEMORY};
static const struct items b_items = {B_IDS, B_COUNTER, B_MEMORY};
static const struct items g_items = {G_IDS, G_COUNTER, G_MEMORY};

struct state {
	pid_t ppid, pgid, sid;
	uint64_t counter;
	uint64_t sum;
	unsigned char *buf;
};

static void state_init(struct state *st, uint64_t seed)
{
	uint64_t i;

	st->ppid = getppid();
	st->pgid = getpgid(0);
	st->sid = getsid(0);
	st->buf = malloc(BUF_LEN);
	if (!st->buf)
		zoo_die("malloc");
	zoo_fill(st->buf, BUF_LEN, seed);
	st->sum = zoo_hash(st->buf, BUF_LEN);
	st->counter = 0;
	for (i = 0; i < 1000 + seed; i++)
		st->counter++;
}

static void state_check(struct state *st, uint64_t seed, const char *who,
			const struct items *it)
{
	/* P's parent is the harness, then crs restore, then the harness again. */
	ZOO_CHECK(it->ids,
		  (seed == 0 || getppid() == st->ppid) && getpgid(0) == st->pgid &&
			  getsid(0) == st->sid,
		  "%s: ppid %d pgid %d sid %d, was %d %d %d", who, getppid(), getpgid(0), getsid(0),
		  st->ppid, st->pgid, st->sid);
	ZOO_CHECK(it->counter, st->counter == 1000 + seed, "%s: counter %llu", who,
		  (unsigned long long)st->counter);
	ZOO_CHECK(it->memory, zoo_hash(st->buf, BUF_LEN) == st->sum, "%s: memory checksum changed",
		  who);
}

/* Damages the state as asked (a child: once it is ready, before P is). */
static void state_break(struct state *st, const struct items *it)
{
	if (ZOO_BREAK(it->counter))
		st->counter++;
	if (ZOO_BREAK(it->memory))
		st->buf[12345] ^= 0x5a;
}

/* Reports readiness on `ready_fd` (one byte), damages the state if asked, waits for
 * SIGTERM. */
static void child_ready_and_wait(struct state *st, int ready_fd, const struct items *it)
{
	if (write(ready_fd, "x", 1) != 1)
		zoo_die("write ready byte");
	close(ready_fd);
	state_break(st, it);
	zoo_wait();
}

static void die_with_parent(pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL))
		zoo_die("PR_SET_PDEATHSIG");
	if (getppid() != parent)
		_exit(2);
}

/* Waits for `pid`; true when it exited with `code`. */
static int exited_with(pid_t pid, int code, const char *who)
{
	int status;

	if (waitpid(pid, &status, 0) != pid) {
		zoo_fail(0, "waitpid %s (%d): %s", who, pid, strerror(errno));
		return 0;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != code) {
		zoo_fail(0, "%s (%d) ended with status %#x, want exit %d", who, pid, status, code);
		return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	struct state st;
	int ready[2];
	pid_t me, a, b, z;
	siginfo_t si;
	char c;
	int i;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	if (getsid(0) != me)
		zoo_die("not a session leader");
	if (pipe2(ready, O_CLOEXEC))
		zoo_die("pipe2");

	a = fork();
	if (a < 0)
		zoo_die("fork A");
	if (a == 0) {
		close(ready[0]);
		die_with_parent(me);
		if (setpgid(0, 0))
			zoo_die("setpgid A");
		state_init(&st, 1);
		child_ready_and_wait(&st, ready[1], &a_items);
		state_check(&st, 1, "A", &a_items);
		return zoo_failures ? 1 : 0;
	}
	/* Also from here, so A's group exists before anything below looks at it. */
	setpgid(a, a);

	b = fork();
	if (b < 0)
		zoo_die("fork B");
	if (b == 0) {
		pid_t g, bpid = getpid();

		close(ready[0]);
		die_with_parent(me);
		state_init(&st, 2);
		g = fork();
		if (g < 0)
			zoo_die("fork G");
		if (g == 0) {
			die_with_parent(bpid);
			state_init(&st, 3);
			child_ready_and_wait(&st, ready[1], &g_items);
			/* G breaks its ids itself (its parent does not look at them). */
			if (ZOO_BREAK(G_IDS))
				setpgid(0, 0);
			state_check(&st, 3, "G", &g_items);
			return zoo_failures ? 1 : 0;
		}
		child_ready_and_wait(&st, ready[1], &b_items);
		state_check(&st, 2, "B", &b_items);
		if (kill(g, SIGTERM))
			zoo_fail(0, "B: kill G: %s", strerror(errno));
		zoo_reap(g, "G");
		return zoo_failures ? 1 : 0;
	}

	z = fork();
	if (z < 0)
		zoo_die("fork Z");
	if (z == 0)
		_exit(7);

	close(ready[1]);
	for (i = 0; i < 3; i++)
		if (read(ready[0], &c, 1) != 1)
			zoo_die("a child did not get ready");
	close(ready[0]);
	/* Z must be a zombie (exited, not reaped) before ready. */
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, z, &si, WEXITED | WNOWAIT))
		zoo_die("waitid Z");
	state_init(&st, 0);

	zoo_ready();
	state_break(&st, &p_items);
	if (ZOO_BREAK(A_IDS))
		setpgid(a, me);
	if (ZOO_BREAK(B_IDS))
		setpgid(b, b);
	zoo_wait();

	state_check(&st, 0, "P", &p_items);
	ZOO_CHECK(A_IDS, getpgid(a) == a, "A's pgid is %d, want %d", getpgid(a), a);
	ZOO_CHECK(B_IDS, getpgid(b) == me, "B's pgid is %d, want %d", getpgid(b), me);
	if (kill(a, SIGTERM))
		zoo_fail(0, "kill A: %s", strerror(errno));
	if (kill(b, SIGTERM))
		zoo_fail(0, "kill B: %s", strerror(errno));
	/* Not an item: an exit code cannot change. */
	exited_with(z, 7, "Z");
	zoo_reap(a, "A");
	zoo_reap(b, "B");
	return zoo_done();
}
