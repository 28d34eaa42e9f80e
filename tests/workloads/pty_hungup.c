/*
 * pty_hungup: pty slaves whose master is gone (zdtm pty04). The process opens a pty, two
 * slave descriptions (the second non-blocking), gives the slave an owner, makes it its
 * controlling terminal, then closes the master: the slaves are hung up (writes fail
 * with EIO, settings cannot be read), /dev/pts/N is deleted, and the session has no
 * controlling terminal any more. After a restore both descriptions are there again,
 * hung up, on the same deleted /dev/pts/N with its owner, and the session still has no
 * terminal.
 */
#include "zoo.h"
#include "zoo_pty.h"

enum {
	FIRST = 1, /* fd 30: the hung-up, deleted slave */
	SECOND,    /* fd 31: the same, non-blocking */
	OWNER,     /* the slave's owner */
	NO_CTTY,   /* the session has no controlling terminal */
	ITEMS = NO_CTTY
};

#define SLAVE1 30
#define SLAVE2 31

/* Whether `fd` is a hung-up description of the deleted slave of pty `index`. */
static int hung_slave(int fd, int index, char *why, size_t cap)
{
	char path[64], link[128], want[64];
	struct termios t;
	struct stat st;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	snprintf(want, sizeof(want), "/dev/pts/%d (deleted)", index);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (fstat(fd, &st) || major(st.st_rdev) != 136 || (int)minor(st.st_rdev) != index) {
		snprintf(why, cap, "not pty slave %d (%s)", index, link);
		return 0;
	}
	if (strcmp(link, want)) {
		snprintf(why, cap, "its path is %s, want %s", link, want);
		return 0;
	}
	if (write(fd, "x", 1) != -1 || errno != EIO) {
		snprintf(why, cap, "a write did not fail with EIO: %s", strerror(errno));
		return 0;
	}
	if (tcgetattr(fd, &t) != -1 || errno != EIO) {
		snprintf(why, cap, "tcgetattr did not fail with EIO: %s", strerror(errno));
		return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	char why[256], stat[1024], *p;
	unsigned int tty_nr = 1;
	int index, master, fl;
	struct stat st;

	zoo_init(argc, argv, ITEMS);
	signal(SIGHUP, SIG_IGN);
	master = zoo_openpt(&index);
	zoo_move_fd(zoo_open_slave(index, O_RDWR | O_NOCTTY), SLAVE1);
	zoo_move_fd(zoo_open_slave(index, O_RDWR | O_NOCTTY | O_NONBLOCK), SLAVE2);
	if (fchown(SLAVE1, 13333, 44444))
		zoo_die("fchown of the slave");
	if (ioctl(SLAVE1, TIOCSCTTY, 0) < 0)
		zoo_die("TIOCSCTTY");
	close(master);

	zoo_ready();
	if (ZOO_BREAK(FIRST))
		zoo_move_fd(open("/dev/null", O_RDWR), SLAVE1);
	if (ZOO_BREAK(SECOND))
		fcntl(SLAVE2, F_SETFL, fcntl(SLAVE2, F_GETFL) & ~O_NONBLOCK);
	if (ZOO_BREAK(OWNER))
		fchown(SLAVE2, 13333, 55555);
	if (ZOO_BREAK(NO_CTTY)) {
		/* Another pty, opened without O_NOCTTY by this session leader. */
		int other, other_index;

		other = zoo_openpt(&other_index);
		zoo_open_slave(other_index, O_RDWR);
		(void)other;
	}
	zoo_wait();

	strcpy(why, "hung up");
	ZOO_CHECK(FIRST, hung_slave(SLAVE1, index, why, sizeof(why)), "fd %d: %s", SLAVE1, why);
	fl = fcntl(SLAVE2, F_GETFL);
	strcpy(why, "hung up");
	ZOO_CHECK(SECOND,
		  hung_slave(SLAVE2, index, why, sizeof(why)) && fl >= 0 && (fl & O_NONBLOCK),
		  "fd %d: %s (flags %#x)", SLAVE2, why, fl);
	ZOO_CHECK(OWNER, fstat(SLAVE2, &st) == 0 && st.st_uid == 13333 && st.st_gid == 44444,
		  "the slave is owned by %u:%u, want 13333:44444", st.st_uid, st.st_gid);
	if (zoo_read_file("/proc/self/stat", stat, sizeof(stat)) > 0 &&
	    (p = strrchr(stat, ')')) != NULL)
		sscanf(p + 2, "%*c %*d %*d %*d %u", &tty_nr);
	ZOO_CHECK(NO_CTTY, tty_nr == 0, "controlling terminal %#x, want none", tty_nr);
	return zoo_done();
}
