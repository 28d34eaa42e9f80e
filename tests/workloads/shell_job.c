/*
 * shell_job: a job of an interactive terminal session (started by `tty_session -f`), the
 * state `crs dump --shell-job` / `crs restore --shell-job` carry.
 *
 * Its fds 0, 1, 2 are the pty slave that is its controlling terminal; it is not the
 * session leader. Like a job started by a shell with job control it puts itself in its own
 * process group and makes that group the terminal's foreground group. It keeps a 64 KiB
 * checksummed buffer and a counter, and every 20 ms writes "tick <n>" to the terminal and
 * appends "n=<n> sid=<sid>" to the log (argv[1]).
 *
 * On SIGTERM it checks, on the terminal it has now (after a restore: the restoring
 * terminal): fds 0-2 are one terminal, it is the controlling terminal (/dev/tty opens and
 * is the same tty), the job still leads its own process group, that group is the
 * terminal's foreground group, it is not a session leader, its session is the terminal's,
 * the buffer is intact and the counter went on. It writes "verdict PASS n=<n>" or
 * "verdict FAIL <what>" lines to the terminal and exits 0 or 1.
 */
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
#include <sys/sysmacros.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)

static volatile sig_atomic_t term;
static int failures;

static void on_term(int sig)
{
	(void)sig;
	term = 1;
}

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char line[256];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(1, line, n) != n) {
		/* the terminal is gone: nothing else to tell */
	}
}

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			say("verdict FAIL " __VA_ARGS__);                    \
			failures++;                                          \
		}                                                            \
	} while (0)

static int same_file(int a, int b)
{
	struct stat sa, sb;

	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_rdev == sb.st_rdev &&
	       sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

/* Whether tty_nr of /proc/self/stat (the controlling terminal) is the device on fd 0. */
static int ctty_is_fd0(void)
{
	char stat[1024];
	struct stat st;
	unsigned int nr;
	int fd = open("/proc/self/stat", O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, stat, sizeof(stat) - 1);

	if (fd >= 0)
		close(fd);
	if (n <= 0 || fstat(0, &st))
		return 0;
	stat[n] = 0;
	char *p = strrchr(stat, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %u", &nr) != 1)
		return 0;
	unsigned int major = (nr >> 8) & 0xfff, minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
	return major == major(st.st_rdev) && minor == minor(st.st_rdev);
}

int main(int argc, char **argv)
{
	static uint8_t buf[BUF_SIZE];
	uint64_t x = 0x5eed0042ull, want;
	unsigned long n = 0, start_n;
	struct sigaction sa;

	if (argc != 2) {
		fprintf(stderr, "usage: %s LOGFILE\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < BUF_SIZE; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		buf[i] = (uint8_t)((x * 0x2545f4914f6cdd1dull) >> 56);
	}
	want = fnv1a64(buf, BUF_SIZE);

	if (setpgid(0, 0)) {
		perror("shell_job: setpgid");
		return 2;
	}
	signal(SIGTTOU, SIG_IGN);
	if (tcsetpgrp(0, getpgrp())) {
		perror("shell_job: tcsetpgrp");
		return 2;
	}
	signal(SIGTTOU, SIG_DFL);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);

	start_n = n;
	struct timespec pace = {0, 20 * 1000 * 1000};
	while (!term) {
		n++;
		say("tick %lu", n);
		FILE *log = fopen(argv[1], "a");
		if (log) {
			fprintf(log, "n=%lu pid=%d pgid=%d sid=%d\n", n, getpid(), getpgrp(),
				getsid(0));
			fclose(log);
		}
		/* pacing of the workload's own output, not synchronisation */
		nanosleep(&pace, NULL);
	}

	CHECK(n > start_n, "counter did not move");
	CHECK(fnv1a64(buf, BUF_SIZE) == want, "buffer checksum changed");
	CHECK(isatty(0) && isatty(1) && isatty(2), "fds 0-2 are not terminals");
	CHECK(same_file(0, 1) && same_file(0, 2), "fds 0-2 are not one terminal");
	int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
	CHECK(tty >= 0, "no controlling terminal (/dev/tty: %s)", strerror(errno));
	if (tty >= 0)
		close(tty);
	CHECK(ctty_is_fd0(), "the controlling terminal is not the one on fd 0");
	CHECK(getpgrp() == getpid(), "not leading its process group (pgid %d)", getpgrp());
	CHECK(tcgetpgrp(0) == getpgrp(), "not in the foreground (fg group %d, own %d)",
	      tcgetpgrp(0), getpgrp());
	CHECK(getsid(0) != getpid(), "became a session leader");
	CHECK(tcgetsid(0) == getsid(0), "terminal session %d, own session %d", tcgetsid(0),
	      getsid(0));
	if (failures)
		return 1;
	say("verdict PASS n=%lu", n);
	return 0;
}
