/*
 * A tree that forks, exits and execs as fast as it can (tests/it/concurrency.rs; not in the
 * zoo list: a dump of it may be refused). The root P runs, each in a thread of its own, in
 * a loop until SIGTERM:
 *   fork_exit    fork a child that _exit(42)s at once; reap it, check 42
 *   fork_exec    fork a child that execs this program as a leaf (which forks and reaps a
 *                grandchild, then exits 43); reap it, check 43
 *   spawn        the same with posix_spawn (a vfork-style child sharing P's memory until
 *                it execs, as std::process::Command and most runtimes start programs)
 *   threads      create and join a thread
 * and one child M re-execs itself from a second thread, over and over (an exec that
 * replaces a multi-threaded process, so the leader's pid changes hands), writing one byte
 * per generation to a pipe P reads.
 *
 * ready once every loop went round and M wrote its first byte. After SIGTERM, P checks
 * that the tree still runs: every loop and M make progress after the signal (within
 * STORM_PROGRESS_S). Then it stops the loops, kills M (which must die of that SIGKILL, not
 * exit with an error) and exits with the verdict: 0, or 1 with a FAIL line per broken
 * check. With ZOO_CORRUPT=1, P closes M's pipe after ready (M then dies of SIGPIPE): the
 * checks must fail.
 */
#include "zoo.h"

#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#define STORM_PROGRESS_S 120
#define LOOPS 4

/* The items checked (see zoo.h). */
enum { M_RUNS = 1, LOOPS_RUN, ITEMS = LOOPS_RUN };

extern char **environ;

static char self_exe[4096];
static atomic_int stop_loops;
static atomic_ulong counts[LOOPS];
static const char *loop_names[LOOPS] = { "fork_exit", "fork_exec", "spawn", "threads" };

/* The leaf of fork_exec and spawn: one more fork and reap, then exit 43. */
static int leaf(void)
{
	int status;
	pid_t g = fork();

	if (g < 0)
		return 2;
	if (g == 0)
		_exit(0);
	if (waitpid(g, &status, 0) != g || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 3;
	return 43;
}

/* M: report one generation, then exec the next one from a second thread. */
static int mt_exec_fd;
static unsigned long mt_gen;

static void *mt_exec_thread(void *arg)
{
	char fd_s[16], gen_s[32];

	(void)arg;
	snprintf(fd_s, sizeof(fd_s), "%d", mt_exec_fd);
	snprintf(gen_s, sizeof(gen_s), "%lu", mt_gen + 1);
	execl(self_exe, self_exe, "--mt-exec", fd_s, gen_s, (char *)NULL);
	_exit(4);
}

static int mt_exec(int fd, unsigned long gen)
{
	pthread_t t;

	mt_exec_fd = fd;
	mt_gen = gen;
	if (write(fd, "g", 1) != 1)
		return 5;
	if (pthread_create(&t, NULL, mt_exec_thread, NULL))
		return 6;
	/* The exec from the other thread ends this thread. */
	pthread_join(t, NULL);
	return 7;
}

static int reap_expect(pid_t pid, int code, const char *who)
{
	int status;

	if (waitpid(pid, &status, 0) != pid) {
		zoo_fail(0, "%s: waitpid %d: %s", who, pid, strerror(errno));
		return 0;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != code) {
		zoo_fail(0, "%s: child %d ended with status %#x, want exit %d", who, pid, status,
			 code);
		return 0;
	}
	return 1;
}

static void *noop(void *arg)
{
	return arg;
}

static void *loop_thread(void *arg)
{
	long k = (long)arg;
	char *argv[] = { self_exe, "--leaf", NULL };

	while (!atomic_load(&stop_loops)) {
		pid_t pid;
		pthread_t t;

		switch (k) {
		case 0:
			pid = fork();
			if (pid < 0) {
				zoo_fail(0, "fork_exit: fork: %s", strerror(errno));
				return NULL;
			}
			if (pid == 0)
				_exit(42);
			if (!reap_expect(pid, 42, "fork_exit"))
				return NULL;
			break;
		case 1:
			pid = fork();
			if (pid < 0) {
				zoo_fail(0, "fork_exec: fork: %s", strerror(errno));
				return NULL;
			}
			if (pid == 0) {
				execv(self_exe, argv);
				_exit(8);
			}
			if (!reap_expect(pid, 43, "fork_exec"))
				return NULL;
			break;
		case 2:
			if ((errno = posix_spawn(&pid, self_exe, NULL, NULL, argv, environ))) {
				zoo_fail(0, "spawn: posix_spawn: %s", strerror(errno));
				return NULL;
			}
			if (!reap_expect(pid, 43, "spawn"))
				return NULL;
			break;
		default:
			if (pthread_create(&t, NULL, noop, NULL)) {
				zoo_fail(0, "threads: pthread_create failed");
				return NULL;
			}
			pthread_join(t, NULL);
			break;
		}
		atomic_fetch_add(&counts[k], 1);
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(void)
{
	struct timespec ts = { 0, 1000000 };

	nanosleep(&ts, NULL);
}

/* Reads what M wrote so far (non-blocking); waits up to `timeout_s` for at least one byte
 * when `wait`. Returns the number of bytes read, -1 on EOF or error. */
static long drain(int fd, int wait, double timeout_s)
{
	long got = 0;
	double deadline = now_s() + timeout_s;
	char buf[4096];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n > 0) {
			got += n;
			continue;
		}
		if (n == 0)
			return -1;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -1;
		if (!wait || got > 0 || now_s() > deadline)
			return got;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		poll(&p, 1, 100);
	}
}

int main(int argc, char **argv)
{
	pthread_t threads[LOOPS];
	unsigned long before[LOOPS];
	int mpipe[2], status, k;
	double deadline;
	pid_t m;
	ssize_t n;

	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0)
		return 9;
	self_exe[n] = 0;
	if (argc >= 2 && strcmp(argv[1], "--leaf") == 0)
		return leaf();
	if (argc >= 4 && strcmp(argv[1], "--mt-exec") == 0)
		return mt_exec(atoi(argv[2]), strtoul(argv[3], NULL, 10));

	zoo_init(argc, argv, ITEMS);
	if (pipe2(mpipe, O_CLOEXEC))
		zoo_die("pipe2");
	m = fork();
	if (m < 0)
		zoo_die("fork M");
	if (m == 0) {
		char fd_s[16];

		if (prctl(PR_SET_PDEATHSIG, SIGKILL))
			zoo_die("PR_SET_PDEATHSIG");
		close(mpipe[0]);
		/* The write end is M's across its execs. */
		if (fcntl(mpipe[1], F_SETFD, 0))
			zoo_die("fcntl");
		snprintf(fd_s, sizeof(fd_s), "%d", mpipe[1]);
		execl(self_exe, self_exe, "--mt-exec", fd_s, "0", (char *)NULL);
		_exit(10);
	}
	close(mpipe[1]);
	if (fcntl(mpipe[0], F_SETFL, O_NONBLOCK))
		zoo_die("fcntl O_NONBLOCK");

	for (k = 0; k < LOOPS; k++)
		if (pthread_create(&threads[k], NULL, loop_thread, (void *)(long)k))
			zoo_die("pthread_create");

	/* Ready once every loop went round and M wrote a byte. */
	deadline = now_s() + STORM_PROGRESS_S;
	for (k = 0; k < LOOPS; k++)
		while (atomic_load(&counts[k]) == 0 && zoo_failures == 0 && now_s() < deadline)
			nap();
	if (drain(mpipe[0], 1, STORM_PROGRESS_S) <= 0)
		zoo_fail(0, "M wrote nothing before ready");
	for (k = 0; k < LOOPS; k++)
		if (atomic_load(&counts[k]) == 0)
			zoo_fail(0, "%s made no round before ready", loop_names[k]);
	if (zoo_failures)
		return zoo_done();

	zoo_ready();
	if (ZOO_BREAK(M_RUNS))
		close(mpipe[0]); /* M dies of SIGPIPE at its next generation */
	if (ZOO_BREAK(LOOPS_RUN))
		atomic_store(&stop_loops, 1);
	zoo_wait();

	/* Still running after whatever happened between ready and SIGTERM? */
	for (k = 0; k < LOOPS; k++)
		before[k] = atomic_load(&counts[k]);
	if (drain(mpipe[0], 0, 0) < 0)
		zoo_fail(M_RUNS, "M's pipe was closed");
	if (drain(mpipe[0], 1, STORM_PROGRESS_S) <= 0)
		zoo_fail(M_RUNS, "M made no progress after SIGTERM");
	deadline = now_s() + STORM_PROGRESS_S;
	for (k = 0; k < LOOPS; k++)
		while (atomic_load(&counts[k]) == before[k] && now_s() < deadline)
			nap();
	atomic_store(&stop_loops, 1);
	for (k = 0; k < LOOPS; k++) {
		pthread_join(threads[k], NULL);
		ZOO_CHECK(LOOPS_RUN, atomic_load(&counts[k]) > before[k], "%s made no progress after SIGTERM",
			  loop_names[k]);
	}
	if (kill(m, SIGKILL))
		zoo_fail(0, "kill M: %s", strerror(errno));
	if (waitpid(m, &status, 0) != m)
		zoo_fail(0, "waitpid M: %s", strerror(errno));
	else
		/* Unbreakable: M only ends by the SIGKILL just sent, or by a failure
		 * (M_RUNS) the checks above report. */
		ZOO_CHECK(ZOO_UNBREAKABLE, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
			  "M ended with status %#x before it was killed", status);
	return zoo_done();
}
