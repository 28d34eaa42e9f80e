/*
 * The init (pid 1) of a pid namespace of its own (started by `zoo_launch --pid-ns`).
 *
 * P, the init, forks A, which forks B into a process group of B's own; forks Z, which
 * exits with 7 and stays unreaped; and starts a thread T. Each records its pid or tid as
 * the namespace numbers them. After SIGTERM: P checks it is still pid 1 in a namespace
 * other than the host's; T is alive (tgkill) and its tid is the one it had; B's group is
 * its own pid; Z is reaped with its code; A is told to end (SIGTERM to its recorded pid),
 * checks its own and its parent's pid, tells B to end and passes on B's verdict.
 */
#include "zoo.h"

#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

enum {
	A_CHILD = 1, /* A answers at its pid inside and ends passing */
	B_GROUP,     /* B leads a group of its own */
	T_THREAD,    /* T is alive, with its tid */
	Z_ZOMBIE,    /* Z's exit code, reaped after the restore */
	ITEMS = Z_ZOMBIE
};

static volatile pid_t t_tid;
static volatile int t_stop;

static void *thread_main(void *arg)
{
	(void)arg;
	t_tid = (pid_t)syscall(SYS_gettid);
	if (ZOO_BREAK(T_THREAD))
		return NULL; /* T is gone after ready */
	while (!t_stop)
		pause();
	ZOO_CHECK(ZOO_UNBREAKABLE /* a thread keeps its tid */, syscall(SYS_gettid) == t_tid,
		  "T's tid changed from %d to %ld", (int)t_tid, (long)syscall(SYS_gettid));
	return NULL;
}

/* The inode of /proc/PID/ns/pid (0 if unreadable). */
static ino_t pid_ns(const char *pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%s/ns/pid", pid);
	return stat(path, &st) ? 0 : st.st_ino;
}

/* B: leads its own group; waits for SIGTERM. */
static int run_b(pid_t a)
{
	zoo_wait();
	ZOO_CHECK(ZOO_UNBREAKABLE /* a process keeps its parent */, getppid() == a,
		  "B's parent is %d, not A (%d)", (int)getppid(), (int)a);
	return zoo_failures ? 1 : 0;
}

/* A: forks B into a group of its own, reports B's pid on `fd`; waits for SIGTERM. */
static int run_a(int fd)
{
	pid_t me = getpid(), b;
	int st;

	b = fork();
	if (b < 0)
		zoo_die("fork B");
	/* B cannot know when P is ready: it breaks its item by staying in A's group. */
	if (b == 0) {
		close(fd);
		if (!ZOO_BREAK(B_GROUP) && setpgid(0, 0))
			zoo_die("setpgid B");
		return run_b(me);
	}
	if (!ZOO_BREAK(B_GROUP) && setpgid(b, b) && errno != EACCES)
		zoo_die("setpgid of B");
	if (write(fd, &b, sizeof(b)) != sizeof(b))
		zoo_die("report B");
	close(fd);
	zoo_wait();
	ZOO_CHECK(ZOO_UNBREAKABLE /* a process keeps its pid */, getpid() == me,
		  "A's pid is %d, not %d", (int)getpid(), (int)me);
	ZOO_CHECK(ZOO_UNBREAKABLE /* A's parent is the init */, getppid() == 1,
		  "A's parent is %d", (int)getppid());
	if (kill(b, SIGTERM))
		zoo_fail(0, "SIGTERM to B (%d): %s", (int)b, strerror(errno));
	if (waitpid(b, &st, 0) != b || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		zoo_fail(0, "B (%d) ended with %#x", (int)b, st);
	return zoo_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	pthread_t t;
	pid_t a, b, z;
	int fds[2], st;

	zoo_init(argc, argv, ITEMS);
	if (getpid() != 1)
		zoo_die("not the init of a pid namespace (run by zoo_launch --pid-ns)");
	if (pipe2(fds, O_CLOEXEC))
		zoo_die("pipe2");
	a = fork();
	if (a < 0)
		zoo_die("fork A");
	if (a == 0) {
		close(fds[0]);
		return run_a(fds[1]);
	}
	close(fds[1]);
	if (read(fds[0], &b, sizeof(b)) != sizeof(b))
		zoo_die("B's pid from A");
	close(fds[0]);
	z = fork();
	if (z < 0)
		zoo_die("fork Z");
	if (z == 0)
		_exit(7);
	/* Z is a zombie once it has exited: wait for that without reaping it. */
	{
		siginfo_t si;

		if (waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT))
			zoo_die("waitid Z");
	}
	zoo_wake_on(SIGURG);
	if (pthread_create(&t, NULL, thread_main, NULL))
		zoo_die("pthread_create");
	while (!t_tid)
		sched_yield();

	zoo_ready();
	if (ZOO_BREAK(A_CHILD)) {
		kill(a, SIGKILL);
		waitpid(a, NULL, 0);
	}
	if (ZOO_BREAK(Z_ZOMBIE))
		waitpid(z, NULL, 0);
	zoo_wait();

	ZOO_CHECK(ZOO_UNBREAKABLE /* the init keeps pid 1 */, getpid() == 1, "P is pid %d",
		  (int)getpid());
	ZOO_CHECK(ZOO_UNBREAKABLE /* nothing leaves a pid namespace */,
		  pid_ns("self") != pid_ns("1") || pid_ns("1") == 0,
		  "P is in the host's pid namespace");
	ZOO_CHECK(T_THREAD, syscall(SYS_tgkill, 1, t_tid, 0) == 0, "T (%d) is gone", (int)t_tid);
	ZOO_CHECK(B_GROUP, getpgid(b) == b, "B (%d) is in group %d", (int)b, (int)getpgid(b));
	st = 0;
	ZOO_CHECK(Z_ZOMBIE, waitpid(z, &st, 0) == z && WIFEXITED(st) && WEXITSTATUS(st) == 7,
		  "Z (%d): status %#x", (int)z, st);
	if (kill(a, SIGTERM) || waitpid(a, &st, 0) != a) {
		zoo_fail(A_CHILD, "A (%d) does not answer: %s", (int)a, strerror(errno));
	} else {
		ZOO_CHECK(A_CHILD, WIFEXITED(st) && WEXITSTATUS(st) == 0, "A ended with %#x", st);
	}
	t_stop = 1;
	pthread_kill(t, SIGURG);
	pthread_join(t, NULL);
	return zoo_done();
}
