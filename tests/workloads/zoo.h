/*
 * Shared helpers of the C workloads of the dump/restore zoo (the zdtm shape).
 *
 * A workload: zoo_init(); set up its state; zoo_ready(); zoo_wait() (or block in its own
 * syscall until SIGTERM); check its state with ZOO_CHECK; return zoo_done().
 *
 * Environment given by the harness:
 *   ZOO_READY    path of a FIFO; "ready\n" is written there once the state is set up
 *   ZOO_TMP      a private scratch directory for the workload's files
 *   ZOO_CORRUPT  when "1": the workload damages its own state after ready (negative control)
 * Verdict: exit 0 and "PASS" on stderr, or exit 1 with one "FAIL: ..." line per broken check.
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
#include <unistd.h>

#define ZOO_UNUSED __attribute__((unused))

static volatile sig_atomic_t zoo_term;
static int zoo_failures;
static int zoo_corrupt;
static const char *zoo_tmp; /* set by zoo_init */
static const char *zoo_name = "workload";

static ZOO_UNUSED void zoo_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "FAIL: %s: ", zoo_name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	zoo_failures++;
}

/* Setup errors: the workload cannot even start; exit 2 so it is not mistaken for a verdict. */
static ZOO_UNUSED void zoo_die(const char *what)
{
	fprintf(stderr, "ERROR: %s: %s: %s\n", zoo_name, what, strerror(errno));
	exit(2);
}

#define ZOO_CHECK(cond, ...)                                                   \
	do {                                                                   \
		if (!(cond))                                                   \
			zoo_fail(__VA_ARGS__);                                 \
	} while (0)

static void zoo_term_handler(int sig)
{
	(void)sig;
	zoo_term = 1;
}

/* Installs the SIGTERM handler (no SA_RESTART) and blocks SIGTERM until zoo_wait(). */
static ZOO_UNUSED void zoo_init(int argc, char **argv)
{
	struct sigaction sa;
	sigset_t set;
	const char *s;

	(void)argc;
	if (argv && argv[0]) {
		s = strrchr(argv[0], '/');
		zoo_name = s ? s + 1 : argv[0];
	}
	s = getenv("ZOO_TMP");
	zoo_tmp = s && *s ? s : "/tmp";
	s = getenv("ZOO_CORRUPT");
	zoo_corrupt = s && strcmp(s, "1") == 0;
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

static ZOO_UNUSED void zoo_ready(void)
{
	const char *path = getenv("ZOO_READY");
	int fd;

	if (!path || !*path) {
		printf("ready\n");
		fflush(stdout);
		return;
	}
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		zoo_die("open ZOO_READY");
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

#endif
