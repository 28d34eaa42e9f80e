/*
 * console_vt: the console and a virtual terminal open (zdtm console, vt): /dev/console
 * read-only, /dev/tty5 read-write and non-blocking. After a restore each fd is that
 * device again, with its flags, and the virtual terminal's settings are what they were.
 * Neither is anyone's controlling terminal. The test is skipped where the devices are
 * missing (the harness checks they open).
 */
#include "zoo.h"
#include <sys/sysmacros.h>
#include <termios.h>

enum {
	CONSOLE = 1, /* fd 30 is /dev/console */
	VT,          /* fd 31 is /dev/tty5 */
	VT_FLAGS,    /* its flags */
	ITEMS = VT_FLAGS
};

#define CONSOLE_FD 30
#define VT_FD 31

static int is_dev(int fd, unsigned int maj, unsigned int min)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == maj &&
	       minor(st.st_rdev) == min && isatty(fd);
}

int main(int argc, char **argv)
{
	struct termios t, now;
	int fd, fl;

	zoo_init(argc, argv, ITEMS);
	fd = open("/dev/console", O_RDONLY | O_NOCTTY);
	if (fd < 0 || dup2(fd, CONSOLE_FD) != CONSOLE_FD)
		zoo_die("/dev/console");
	close(fd);
	fd = open("/dev/tty5", O_RDWR | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || dup2(fd, VT_FD) != VT_FD)
		zoo_die("/dev/tty5");
	close(fd);
	if (tcgetattr(VT_FD, &t))
		zoo_die("tcgetattr of /dev/tty5");

	zoo_ready();
	if (ZOO_BREAK(CONSOLE)) {
		fd = open("/dev/null", O_RDONLY);
		dup2(fd, CONSOLE_FD);
	}
	if (ZOO_BREAK(VT)) {
		fd = open("/dev/tty6", O_RDWR | O_NOCTTY | O_NONBLOCK);
		dup2(fd, VT_FD);
	}
	if (ZOO_BREAK(VT_FLAGS))
		fcntl(VT_FD, F_SETFL, fcntl(VT_FD, F_GETFL) & ~O_NONBLOCK);
	zoo_wait();

	fl = fcntl(CONSOLE_FD, F_GETFL);
	ZOO_CHECK(CONSOLE, is_dev(CONSOLE_FD, 5, 1) && fl >= 0 && (fl & O_ACCMODE) == O_RDONLY,
		  "fd %d is not /dev/console, read-only (flags %#x)", CONSOLE_FD, fl);
	ZOO_CHECK(VT, is_dev(VT_FD, 4, 5), "fd %d is not /dev/tty5", VT_FD);
	fl = fcntl(VT_FD, F_GETFL);
	ZOO_CHECK(VT_FLAGS, fl >= 0 && (fl & (O_ACCMODE | O_NONBLOCK)) == (O_RDWR | O_NONBLOCK),
		  "fd %d flags %#x, want read-write, non-blocking", VT_FD, fl);
	ZOO_CHECK(ZOO_UNBREAKABLE,
		  tcgetattr(VT_FD, &now) == 0 && now.c_iflag == t.c_iflag &&
			  now.c_oflag == t.c_oflag && now.c_cflag == t.c_cflag &&
			  now.c_lflag == t.c_lflag && memcmp(now.c_cc, t.c_cc, 19) == 0,
		  "the settings of /dev/tty5 changed (a device the concurrent runs share: a run "
		  "cannot change them for itself)");
	return zoo_done();
}
