/*
 * Pty helpers of the zoo workloads (include after zoo.h).
 *
 * A restore must get a pty back at its index, and the kernel always hands out the lowest
 * free one: a pty at a low index is likely to be taken again, between the dump and the
 * restore, by whatever opens a pty next on the machine. zoo_openpt() takes one a little
 * higher instead (16..27, by pid: below CRIU's reach of 31 indices above the lowest free
 * one), holding the lower ones it is handed meanwhile and closing them afterwards.
 */
#ifndef ZOO_PTY_H
#define ZOO_PTY_H

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <termios.h>

/* Opens a pty master (O_RDWR | O_NOCTTY) at an index of 16 or more, unlocked, at the
 * lowest free fd; its index in *index. */
static ZOO_UNUSED int zoo_openpt(int *index)
{
	int held[64], n = 0, want = 16 + getpid() % 12, fd, i, unlock = 0;

	for (;;) {
		fd = open("/dev/ptmx", O_RDWR | O_NOCTTY);
		if (fd < 0 || ioctl(fd, TIOCGPTN, index) < 0)
			zoo_die("open /dev/ptmx");
		if (*index >= want || n == (int)(sizeof(held) / sizeof(held[0])))
			break;
		held[n++] = fd;
	}
	for (i = 0; i < n; i++)
		close(held[i]);
	if (ioctl(fd, TIOCSPTLCK, &unlock) < 0)
		zoo_die("unlock the pty");
	/* Down to the lowest free fd: out of the way of the fixed fds workloads use. */
	i = fcntl(fd, F_DUPFD, 3);
	if (i < 0)
		zoo_die("F_DUPFD");
	close(fd);
	return i;
}

/* Opens the slave of pty `index` with `flags`. */
static ZOO_UNUSED int zoo_open_slave(int index, int flags)
{
	char path[32];
	int fd;

	snprintf(path, sizeof(path), "/dev/pts/%d", index);
	fd = open(path, flags);
	if (fd < 0)
		zoo_die(path);
	return fd;
}

/* Moves `fd` to `to` (closing `fd`); returns `to`. */
static ZOO_UNUSED int zoo_move_fd(int fd, int to)
{
	if (fd == to)
		return to;
	if (dup2(fd, to) != to)
		zoo_die("dup2");
	close(fd);
	return to;
}

/* Reads what `fd` has to give within `ms` milliseconds of quiet into buf (at most cap):
 * each read waits up to `ms` for more. Returns the bytes read. */
static ZOO_UNUSED size_t zoo_read_for(int fd, char *buf, size_t cap, int ms)
{
	size_t got = 0;

	while (got < cap) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, ms) <= 0 || !(p.revents & POLLIN))
			break;
		n = read(fd, buf + got, cap - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* Waits until FIONREAD on `fd` reaches `want` (a pty end's queue filled by the kernel's
 * worker), at most 5 s. */
static ZOO_UNUSED void zoo_wait_queued(int fd, int want)
{
	int have = -1;

	for (int i = 0; i < 5000; i++) {
		if (ioctl(fd, FIONREAD, &have) == 0 && have >= want)
			return;
		usleep(1000);
	}
	fprintf(stderr, "ERROR: %s: %d bytes queued, want %d\n", zoo_name, have, want);
	exit(2);
}

#endif
