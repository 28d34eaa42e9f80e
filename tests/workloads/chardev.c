/* Character devices at fixed fd numbers: /dev/null, /dev/zero, /dev/full, /dev/urandom,
 * each with its access mode. Two items per device: it is that device (its number, and it
 * behaves so: /dev/null takes writes, /dev/zero reads zeros, /dev/full refuses writes
 * with ENOSPC, /dev/urandom reads), and its fd has the status flags it was opened with. */
#include "zoo.h"
#include <sys/sysmacros.h>

static const struct {
	const char *path;
	int fd, flags, major, minor;
	const char *other; /* another device with the same flags: breaks the identity */
} devs[] = {
	{"/dev/null", 10, O_WRONLY, 1, 3, "/dev/zero"},
	{"/dev/zero", 11, O_RDONLY, 1, 5, "/dev/full"},
	{"/dev/full", 12, O_RDWR, 1, 7, "/dev/zero"},
	{"/dev/urandom", 13, O_RDONLY | O_NONBLOCK, 1, 9, "/dev/random"},
};

#define N (sizeof(devs) / sizeof(devs[0]))
/* Items: device i is 2i+1, its flags 2i+2. */
#define IDENTITY(i) (2 * (int)(i) + 1)
#define FLAGS(i) (2 * (int)(i) + 2)
#define ITEMS (2 * (int)N)

/* Whether device i, at its fd, behaves as that device. */
static int behaves(size_t i)
{
	unsigned char buf[256];
	int fd = devs[i].fd;

	memset(buf, 1, sizeof(buf));
	switch (i) {
	case 0:
		return write(fd, buf, sizeof(buf)) == sizeof(buf);
	case 1:
		return read(fd, buf, sizeof(buf)) == sizeof(buf) && buf[0] == 0 && buf[255] == 0;
	case 2:
		return write(fd, buf, 1) == -1 && errno == ENOSPC;
	default:
		return read(fd, buf, 16) == 16;
	}
}

int main(int argc, char **argv)
{
	struct stat st;
	size_t i;
	int fd, fl;

	zoo_init(argc, argv, ITEMS);
	for (i = 0; i < N; i++) {
		fd = open(devs[i].path, devs[i].flags);
		if (fd < 0 || dup2(fd, devs[i].fd) < 0)
			zoo_die(devs[i].path);
		close(fd);
	}

	zoo_ready();
	for (i = 0; i < N; i++) {
		if (ZOO_BREAK(IDENTITY(i))) {
			fd = open(devs[i].other, devs[i].flags);
			if (fd < 0 || dup2(fd, devs[i].fd) < 0)
				zoo_die(devs[i].other);
			close(fd);
		}
		if (ZOO_BREAK(FLAGS(i)))
			fcntl(devs[i].fd, F_SETFL, fcntl(devs[i].fd, F_GETFL) ^ O_NONBLOCK);
	}
	zoo_wait();

	for (i = 0; i < N; i++) {
		fd = devs[i].fd;
		ZOO_CHECK(IDENTITY(i),
			  fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) &&
				  major(st.st_rdev) == (unsigned)devs[i].major &&
				  minor(st.st_rdev) == (unsigned)devs[i].minor && behaves(i),
			  "fd %d is not %s", fd, devs[i].path);
		fl = fcntl(fd, F_GETFL);
		ZOO_CHECK(FLAGS(i), fl >= 0 && (fl & (O_ACCMODE | O_NONBLOCK)) == devs[i].flags,
			  "fd %d flags %#x, want %#x", fd, fl, devs[i].flags);
	}
	return zoo_done();
}
