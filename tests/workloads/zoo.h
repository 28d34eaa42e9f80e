/*
 * Shared helpers of the C workloads of the dump/restore zoo (the zdtm shape).
 *
 * A workload: zoo_init(argc, argv, ITEMS); set up its state; zoo_ready(); break item
 * zoo_corrupt if asked (ZOO_BREAK); zoo_wait() (or block in its own syscall until SIGTERM);
 * check its state with ZOO_CHECK; return zoo_done().
 *
 * Items. A workload numbers the things it checks 1..ITEMS (an enum in each workload); every
 * ZOO_CHECK names the item it checks, and one item may be checked at several places (by
 * several processes of a tree, for each object of a loop). For each item the workload knows
 * a way to break that item alone, so that its check fails and no other does: the harness
 * runs the workload once per item and requires exactly that item to fail. A break happens
 * after ready where it can; a child that cannot know when its parent is ready breaks its
 * item at its own ready or just before it checks, and an item that is a behaviour seen
 * only while checking (a message sent after SIGTERM) is broken there. A check that the
 * workload has no way to break names ZOO_UNBREAKABLE (and says why): it is no item.
 *
 * Protocol with the harness (tests/zoo_harness.rs):
 *   `<workload> --items`  prints ITEMS and a newline on stdout and exits 0, doing nothing else
 *   ZOO_READY    path of a FIFO; "ready\n" is written there once the state is set up
 *   ZOO_TMP      a private scratch directory for the workload's files (also its cwd)
 *   ZOO_CORRUPT  N in 1..ITEMS: the workload breaks item N after ready (0 or unset: nothing)
 *   ZOO_PAUSED   path of a file the harness writes before it sends SIGTERM: the seconds
 *                (a decimal number) during which crs may have held the workload's timers
 *                back: from the start of `crs dump` to the end of the `crs restore` of its
 *                images (or to the end of `crs dump -R`, for the task left running); "0"
 *                when crs was not involved. A timer fires late by at most this plus
 *                ZOO_TIMER_MARGIN.
 * Verdict: exit 0 and "PASS: <name>" on stderr, or exit 1 with one line
 * "FAIL: <name>: item <N>: ..." per failed check. A failure that is no check of an item
 * (a helper process that died, a system call that failed) prints "FAIL: <name>: ..."
 * without an item and also exits 1: the harness accepts it in no mode. Exit 2: the
 * workload could not set itself up.
 */
#ifndef ZOO_H
#define ZOO_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ZOO_UNUSED __attribute__((unused))

static volatile sig_atomic_t zoo_term;
static int zoo_failures;
static int zoo_items;   /* how many items the workload checks */
static int zoo_corrupt; /* the item to break (ZOO_CORRUPT), 0 for none */
static const char *zoo_tmp; /* set by zoo_init */
static const char *zoo_name = "workload";

/*
 * The item of a check the workload has no way to break by itself after ready (each use
 * says why): it is checked in every run, but the corrupted runs cannot show it failing.
 */
#define ZOO_UNBREAKABLE 0

/* Whether this run breaks `item`. */
#define ZOO_BREAK(item) (zoo_corrupt == (item))

/* Setup errors: the workload cannot even start; exit 2 so it is not mistaken for a verdict. */
static ZOO_UNUSED void zoo_die(const char *what)
{
	fprintf(stderr, "ERROR: %s: %s: %s\n", zoo_name, what, strerror(errno));
	exit(2);
}

/* A failed check of `item` (1..zoo_items), or with item 0 a failure that is no check. One
 * write(2) per line, so that the threads and processes of a workload do not mix lines. */
static ZOO_UNUSED __attribute__((format(printf, 2, 3))) void zoo_fail(int item,
								      const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (item < 0 || item > zoo_items) {
		fprintf(stderr, "ERROR: %s: a check names item %d, not in 1..%d\n", zoo_name, item,
			zoo_items);
		exit(2);
	}
	if (item)
		n = snprintf(line, sizeof(line), "FAIL: %s: item %d: ", zoo_name, item);
	else
		n = snprintf(line, sizeof(line), "FAIL: %s: ", zoo_name);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(2, line, (size_t)n) != n)
		exit(2);
	__atomic_fetch_add(&zoo_failures, 1, __ATOMIC_RELAXED);
}

#define ZOO_CHECK(item, cond, ...)                                             \
	do {                                                                   \
		if (!(cond))                                                   \
			zoo_fail((item), __VA_ARGS__);                         \
	} while (0)

static void zoo_term_handler(int sig)
{
	(void)sig;
	zoo_term = 1;
}

/*
 * Answers `--items`, reads the environment, installs the SIGTERM handler (no SA_RESTART)
 * and blocks SIGTERM until zoo_wait().
 */
static ZOO_UNUSED void zoo_init(int argc, char **argv, int items)
{
	struct sigaction sa;
	sigset_t set;
	const char *s;
	char *end;
	long n;

	if (argv && argv[0]) {
		s = strrchr(argv[0], '/');
		zoo_name = s ? s + 1 : argv[0];
	}
	zoo_items = items;
	if (argc > 1 && strcmp(argv[1], "--items") == 0) {
		printf("%d\n", items);
		exit(0);
	}
	s = getenv("ZOO_TMP");
	zoo_tmp = s && *s ? s : "/tmp";
	s = getenv("ZOO_CORRUPT");
	if (s && *s) {
		errno = 0;
		n = strtol(s, &end, 10);
		if (errno || *end || n < 0 || n > items) {
			fprintf(stderr, "ERROR: %s: ZOO_CORRUPT=%s, want 0..%d\n", zoo_name, s, items);
			exit(2);
		}
		zoo_corrupt = (int)n;
	}
	setvbuf(stderr, NULL, _IONBF, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = zoo_term_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL))
		zoo_die("sigaction(SIGTERM)");
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		zoo_die("sigprocmask");
}

/* For workloads that wait in their own way: SIGTERM is delivered whenever it comes. */
static ZOO_UNUSED void zoo_unblock_term(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_UNBLOCK, &set, NULL))
		zoo_die("sigprocmask");
}

/* The mask to sigsuspend() with: the current one without SIGTERM. */
static ZOO_UNUSED void zoo_wait_mask(sigset_t *mask)
{
	sigprocmask(SIG_SETMASK, NULL, mask);
	sigdelset(mask, SIGTERM);
}

/* The fd to write "ready\n" to (the ZOO_READY fifo, else stdout); see zoo_ready(). */
static ZOO_UNUSED int zoo_ready_fd(void)
{
	const char *path = getenv("ZOO_READY");
	int fd;

	if (!path || !*path)
		return dup(1);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		zoo_die("open ZOO_READY");
	return fd;
}

static ZOO_UNUSED void zoo_ready(void)
{
	int fd = zoo_ready_fd();

	if (write(fd, "ready\n", 6) != 6)
		zoo_die("write ready");
	close(fd);
}

/* Sleeps in sigsuspend() until SIGTERM arrived. */
static ZOO_UNUSED void zoo_wait(void)
{
	sigset_t mask;

	zoo_wait_mask(&mask);
	while (!zoo_term)
		sigsuspend(&mask);
}

static ZOO_UNUSED int zoo_done(void)
{
	if (zoo_failures) {
		fprintf(stderr, "%s: %d check(s) failed\n", zoo_name, zoo_failures);
		return 1;
	}
	fprintf(stderr, "PASS: %s\n", zoo_name);
	return 0;
}

static void zoo_wake_handler(int sig)
{
	(void)sig;
}

/* Makes signal `sig` interrupt pause() and other waits without doing anything else (a
 * handler that returns, no SA_RESTART): the way to wake a thread of the workload. */
static ZOO_UNUSED void zoo_wake_on(int sig)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = zoo_wake_handler;
	if (sigaction(sig, &sa, NULL))
		zoo_die("sigaction of the wake-up signal");
}

/* The write end of the ready pipe in a child of zoo_fork_ready(), until it is ready. */
static int zoo_child_fd = -1;

/*
 * Forks a child that dies with its parent (PR_SET_PDEATHSIG). Returns 0 in the child, which
 * calls zoo_child_ready() once its state is set up; in the parent, returns the child's pid
 * once the child is ready.
 */
static ZOO_UNUSED pid_t zoo_fork_ready(void)
{
	pid_t me = getpid(), kid;
	int p[2];
	char c;

	if (pipe2(p, O_CLOEXEC))
		zoo_die("pipe2");
	kid = fork();
	if (kid < 0)
		zoo_die("fork");
	if (kid == 0) {
		close(p[0]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL))
			zoo_die("PR_SET_PDEATHSIG");
		if (getppid() != me)
			_exit(2);
		zoo_child_fd = p[1];
		return 0;
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1)
		zoo_die("child did not get ready");
	close(p[0]);
	return kid;
}

/* In a child of zoo_fork_ready(): tells the parent it is ready. */
static ZOO_UNUSED void zoo_child_ready(void)
{
	if (write(zoo_child_fd, "x", 1) != 1)
		zoo_die("write ready byte");
	close(zoo_child_fd);
	zoo_child_fd = -1;
}

/*
 * Waits for the child `pid` (a part of the workload that checks its own items) and adds
 * its verdict: exit 0 passes, exit 1 failed checks the child has reported itself, anything
 * else is a failure that is no check. Returns 1 when the child passed.
 */
static ZOO_UNUSED int zoo_reap(pid_t pid, const char *who)
{
	int status;

	if (waitpid(pid, &status, 0) != pid) {
		zoo_fail(0, "waitpid %s (%d): %s", who, pid, strerror(errno));
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 1) {
		fprintf(stderr, "%s: %s (%d) failed its checks\n", zoo_name, who, pid);
		__atomic_fetch_add(&zoo_failures, 1, __ATOMIC_RELAXED);
		return 0;
	}
	zoo_fail(0, "%s (%d) ended with status %#x", who, pid, status);
	return 0;
}

/*
 * Timers. A timer due `due` seconds after some start must not fire before it, and must
 * fire by due + zoo_paused() + ZOO_TIMER_MARGIN. crs (as CRIU) saves a timer's remaining
 * time and arms it with that time again at restore: a restored timer is late by the time
 * between the dump reading it and the restore arming it, which the pause contains (it
 * also counts crs's start and the work before and after, so it errs on the long side),
 * and by nothing more than the time the kernel takes to deliver the expiry and get the
 * task to run, which the margin bounds. Measured on the loaded 2-core VM (load average
 * 9-12, six busy loops besides, corrupted runs eight at a time), 174 timers fired at most
 * 11.7 ms late beyond the pause (median 0, 99th percentile 7.4 ms): 250 ms is twenty times
 * that, and a timer restored a quarter of a second late fails. Each workload logs its
 * timers as "timing:" lines.
 */
#define ZOO_TIMER_MARGIN 0.25

static ZOO_UNUSED double zoo_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The pause the harness reports in $ZOO_PAUSED (read when asked: it is written before
 * SIGTERM); 0 when the variable is unset (the workload run by hand). */
static ZOO_UNUSED double zoo_paused(void)
{
	const char *path = getenv("ZOO_PAUSED");
	char buf[64], *end;
	double v;
	int fd;
	ssize_t n;

	if (!path || !*path)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		zoo_die("open ZOO_PAUSED");
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		zoo_die("read ZOO_PAUSED");
	buf[n] = 0;
	v = strtod(buf, &end);
	if (end == buf || v < 0) {
		fprintf(stderr, "ERROR: %s: ZOO_PAUSED holds %s\n", zoo_name, buf);
		exit(2);
	}
	return v;
}

/* How late, beyond the pause, a timer due `due` s after start fired `fired` s after start
 * (negative: early); logged as a "timing:" line. */
static ZOO_UNUSED double zoo_lateness(const char *what, double due, double fired)
{
	double paused = zoo_paused(), late = fired - due - paused;

	fprintf(stderr, "timing: %s: %s due at %.3f s, fired at %.3f s, pause %.3f s: late %.1f ms\n",
		zoo_name, what, due, fired, paused, late * 1e3);
	return late;
}

/* xorshift64*: deterministic fill patterns. */
static ZOO_UNUSED uint64_t zoo_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static ZOO_UNUSED void zoo_fill(void *buf, size_t len, uint64_t seed)
{
	unsigned char *p = buf;
	uint64_t s = seed | 1, v;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		v = zoo_rand(&s);
		memcpy(p + i, &v, 8);
	}
	for (; i < len; i++)
		p[i] = (unsigned char)zoo_rand(&s);
}

/* FNV-1a over 8-byte words (fast enough for 64 MiB). */
static ZOO_UNUSED uint64_t zoo_hash(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t h = 0xcbf29ce484222325ULL, w;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ULL;
	}
	for (; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/* A path inside ZOO_TMP (static buffer per call site is enough for the workloads). */
static ZOO_UNUSED char *zoo_path(const char *name)
{
	char *p;

	if (!zoo_tmp) {
		fprintf(stderr, "ERROR: %s: zoo_path(%s) before zoo_init\n", zoo_name, name);
		exit(2);
	}
	if (asprintf(&p, "%s/%s", zoo_tmp, name) < 0)
		zoo_die("asprintf");
	return p;
}

/* Reads the whole of a small file (NUL-terminated); returns its length or -1. */
static ZOO_UNUSED ssize_t zoo_read_file(const char *path, char *buf, size_t cap)
{
	size_t got = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while (got + 1 < cap && (n = read(fd, buf + got, cap - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = 0;
	return (ssize_t)got;
}

/* An int socket option of `s`, -1 when it cannot be read. */
static ZOO_UNUSED int zoo_sockopt(int s, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(s, level, name, &v, &len))
		return -1;
	return v;
}

#endif
