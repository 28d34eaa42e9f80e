/* Character devices at fixed fd numbers: /dev/null, /dev/zero, /dev/full, /dev/urandom,
 * each with its access mode. */
#include "zoo.h"
#include <sys/sysmacros.h>

static const struct {
	const char *path;
	int fd, flags, major, minor;
} devs[] = {
	{"/dev/null", 10, O_WRONLY, 1, 3},
	{"/dev/zero", 11, O_RDONLY, 1, 5},
	{"/dev/full", 12, O_RDWR, 1, 7},
	{"/dev/urandom", 13, O_RDONLY | O_NONBLOCK, 1, 9},
};

#define N (sizeof(devs) / sizeof(devs[0]))

int main(int argc, char **argv)
{
	unsigned char buf[256];
	struct stat st;
	size_t i;
	int fd, fl;

	zoo_init(argc, argv);
	for (i = 0; i < N; i++) {
		fd = open(devs[i].path, devs[i].flags);
		if (fd < 0 || dup2(fd, devs[i].fd) < 0)
			zoo_die(devs[i].path);
		close(fd);
	}

	zoo_ready();
	if (zoo_corrupt) {
		fd = open("/dev/null", O_RDONLY);
		dup2(fd, 11);
		close(fd);
	}
	zoo_wait();

	for (i = 0; i < N; i++) {
		fd = devs[i].fd;
		ZOO_CHECK(fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) &&
				  major(st.st_rdev) == (unsigned)devs[i].major &&
				  minor(st.st_rdev) == (unsigned)devs[i].minor,
			  "fd %d is not %s", fd, devs[i].path);
		fl = fcntl(fd, F_GETFL);
		ZOO_CHECK(fl >= 0 && (fl & (O_ACCMODE | O_NONBLOCK)) == devs[i].flags,
			  "fd %d flags %#x, want %#x", fd, fl, devs[i].flags);
	}
	memset(buf, 1, sizeof(buf));
	ZOO_CHECK(read(11, buf, sizeof(buf)) == sizeof(buf) && buf[0] == 0 && buf[255] == 0,
		  "/dev/zero does not read zeros");
	ZOO_CHECK(write(12, buf, 1) == -1 && errno == ENOSPC, "/dev/full accepts writes");
	ZOO_CHECK(write(10, buf, sizeof(buf)) == sizeof(buf), "/dev/null refuses writes");
	ZOO_CHECK(read(13, buf, 16) == 16, "/dev/urandom does not read");
	return zoo_done();
}
