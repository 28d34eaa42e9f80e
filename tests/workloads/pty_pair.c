/*
 * pty_pair: a pty whose master and slave one process holds (zdtm pty00/pty01/pty03), as a
 * terminal program's backend would: the master, two descriptions of the slave (one
 * non-blocking), the slave as the controlling terminal of the process's session (it leads
 * one: the harness starts it with setsid) and /dev/tty on it. The slave has raw settings
 * with control characters and a speed of its own, a window size, an owner and mode, and
 * bytes are queued both ways: input written
 * at the master and not yet read at the slave, output written at the slave and not yet
 * read at the master (raw mode: CRIU puts these back exactly too).
 */
#include "zoo.h"
#include "zoo_pty.h"

enum {
	TERMIOS = 1, /* the slave's settings */
	WINSIZE,     /* its window size */
	OWNER,       /* owner and mode of /dev/pts/N */
	INPUT,       /* the bytes queued at the slave */
	OUTPUT,      /* the bytes queued at the master, and the pair still connected */
	CTTY,        /* the slave is the controlling terminal, the process's group in front */
	DEVTTY,      /* /dev/tty is open on it and reads what the master writes */
	SLAVE2,      /* the second slave description: its own, non-blocking */
	ITEMS = SLAVE2
};

#define MASTER 30
#define SLAVE1 31
#define SLAVE2_FD 32
#define DEVTTY_FD 33

static const char input[] = "in:0123456789\x01\x7f\r\n\x03tail";
static const char output[] = "out:abc\n\r\x04\xff";

static int same_termios(const struct termios *a, const struct termios *b)
{
	return a->c_iflag == b->c_iflag && a->c_oflag == b->c_oflag && a->c_cflag == b->c_cflag &&
	       a->c_lflag == b->c_lflag && a->c_line == b->c_line &&
	       memcmp(a->c_cc, b->c_cc, 19) == 0 && cfgetispeed(a) == cfgetispeed(b) &&
	       cfgetospeed(a) == cfgetospeed(b);
}

/* /proc/self/stat's tty_nr, as a dev_t. */
static dev_t own_tty_nr(void)
{
	char stat[1024], *p;
	unsigned int nr = 0;

	if (zoo_read_file("/proc/self/stat", stat, sizeof(stat)) <= 0)
		return 0;
	p = strrchr(stat, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %u", &nr) != 1)
		return 0;
	return makedev((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00));
}

int main(int argc, char **argv)
{
	struct termios t, now;
	struct winsize w = {.ws_row = 41, .ws_col = 123, .ws_xpixel = 640, .ws_ypixel = 480}, wn;
	struct stat st;
	char buf[256];
	int index, n;
	unsigned int tty_dev;
	size_t got;

	zoo_init(argc, argv, ITEMS);
	signal(SIGHUP, SIG_IGN);
	zoo_move_fd(zoo_openpt(&index), MASTER);
	zoo_move_fd(zoo_open_slave(index, O_RDWR | O_NOCTTY), SLAVE1);
	zoo_move_fd(zoo_open_slave(index, O_RDWR | O_NOCTTY | O_NONBLOCK), SLAVE2_FD);
	if (ioctl(SLAVE1, TIOCSCTTY, 0) < 0)
		zoo_die("TIOCSCTTY");
	n = open("/dev/tty", O_RDWR);
	if (n < 0)
		zoo_die("open /dev/tty");
	zoo_move_fd(n, DEVTTY_FD);

	memset(&t, 0, sizeof(t));
	t.c_iflag = IGNPAR | IXANY;
	t.c_oflag = 0;
	t.c_cflag = CS8 | CREAD | CLOCAL;
	t.c_lflag = IEXTEN;
	for (int i = 0; i < NCCS; i++)
		t.c_cc[i] = (cc_t)(0x40 + i);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	cfsetispeed(&t, B19200);
	cfsetospeed(&t, B19200);
	if (tcsetattr(SLAVE1, TCSANOW, &t) || tcgetattr(SLAVE1, &t))
		zoo_die("tcsetattr");
	if (ioctl(SLAVE1, TIOCSWINSZ, &w) < 0)
		zoo_die("TIOCSWINSZ");
	if (fchown(SLAVE1, 13333, 44444) || fchmod(SLAVE1, 0620))
		zoo_die("fchown/fchmod of the slave");
	if (write(MASTER, input, sizeof(input) - 1) != sizeof(input) - 1)
		zoo_die("write at the master");
	if (write(SLAVE1, output, sizeof(output) - 1) != sizeof(output) - 1)
		zoo_die("write at the slave");
	zoo_wait_queued(SLAVE1, sizeof(input) - 1);
	zoo_wait_queued(MASTER, sizeof(output) - 1);

	zoo_ready();
	if (ZOO_BREAK(TERMIOS)) {
		now = t;
		now.c_cc[VERASE] ^= 1;
		tcsetattr(SLAVE1, TCSANOW, &now);
	}
	if (ZOO_BREAK(WINSIZE)) {
		wn = w;
		wn.ws_col++;
		ioctl(SLAVE1, TIOCSWINSZ, &wn);
	}
	if (ZOO_BREAK(OWNER))
		fchmod(SLAVE1, 0600);
	if (ZOO_BREAK(INPUT) && read(SLAVE2_FD, buf, 1) != 1)
		zoo_die("read one byte at the slave");
	if (ZOO_BREAK(OUTPUT) && read(MASTER, buf, 1) != 1)
		zoo_die("read one byte at the master");
	if (ZOO_BREAK(CTTY))
		ioctl(SLAVE1, TIOCNOTTY, 0);
	if (ZOO_BREAK(DEVTTY)) {
		n = open("/dev/null", O_RDWR);
		zoo_move_fd(n, DEVTTY_FD);
	}
	if (ZOO_BREAK(SLAVE2))
		fcntl(SLAVE2_FD, F_SETFL, fcntl(SLAVE2_FD, F_GETFL) & ~O_NONBLOCK);
	zoo_wait();

	ZOO_CHECK(ZOO_UNBREAKABLE,
		  ioctl(MASTER, TIOCGPTN, &n) == 0 && n == index && fstat(SLAVE1, &st) == 0 &&
			  major(st.st_rdev) == 136 && (int)minor(st.st_rdev) == index,
		  "not pty %d any more (a pty keeps its index for life: another index is another "
		  "pty, which every other item would notice)",
		  index);
	ZOO_CHECK(TERMIOS, tcgetattr(SLAVE1, &now) == 0 && same_termios(&now, &t),
		  "settings iflag %#x oflag %#x cflag %#x lflag %#x erase %#x, want %#x %#x %#x %#x "
		  "%#x",
		  now.c_iflag, now.c_oflag, now.c_cflag, now.c_lflag, now.c_cc[VERASE], t.c_iflag,
		  t.c_oflag, t.c_cflag, t.c_lflag, t.c_cc[VERASE]);
	ZOO_CHECK(WINSIZE,
		  ioctl(MASTER, TIOCGWINSZ, &wn) == 0 && wn.ws_row == w.ws_row &&
			  wn.ws_col == w.ws_col && wn.ws_xpixel == w.ws_xpixel &&
			  wn.ws_ypixel == w.ws_ypixel,
		  "window %ux%u (%ux%u px), want %ux%u (%ux%u px)", wn.ws_row, wn.ws_col,
		  wn.ws_xpixel, wn.ws_ypixel, w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel);
	ZOO_CHECK(OWNER,
		  fstat(SLAVE1, &st) == 0 && st.st_uid == 13333 && st.st_gid == 44444 &&
			  (st.st_mode & 07777) == 0620,
		  "slave owned by %u:%u mode %o, want 13333:44444 620", st.st_uid, st.st_gid,
		  st.st_mode & 07777);

	got = zoo_read_for(SLAVE2_FD, buf, sizeof(buf), 200);
	ZOO_CHECK(INPUT, got == sizeof(input) - 1 && memcmp(buf, input, got) == 0,
		  "the slave read %zu bytes, want the %zu queued", got, sizeof(input) - 1);
	got = zoo_read_for(MASTER, buf, sizeof(buf), 200);
	ZOO_CHECK(OUTPUT, got == sizeof(output) - 1 && memcmp(buf, output, got) == 0,
		  "the master read %zu bytes, want the %zu queued", got, sizeof(output) - 1);
	if (write(SLAVE1, "pong", 4) != 4)
		zoo_fail(OUTPUT, "write at the slave: %s", strerror(errno));
	got = zoo_read_for(MASTER, buf, 4, 2000);
	ZOO_CHECK(OUTPUT, got == 4 && memcmp(buf, "pong", 4) == 0,
		  "the master read %zu bytes after the slave wrote pong", got);

	fstat(SLAVE1, &st);
	ZOO_CHECK(CTTY,
		  own_tty_nr() == st.st_rdev && tcgetsid(SLAVE1) == getpid() &&
			  tcgetpgrp(SLAVE1) == getpgrp(),
		  "controlling terminal %#lx session %d foreground %d, want %#lx %d %d",
		  (unsigned long)own_tty_nr(), tcgetsid(SLAVE1), tcgetpgrp(SLAVE1),
		  (unsigned long)st.st_rdev, getpid(), getpgrp());

	tty_dev = 0;
	n = ioctl(DEVTTY_FD, TIOCGDEV, &tty_dev);
	ZOO_CHECK(DEVTTY,
		  n == 0 && makedev((tty_dev >> 8) & 0xfff, (tty_dev & 0xff) |
							       ((tty_dev >> 12) & 0xfff00)) ==
				    st.st_rdev,
		  "fd %d is on terminal %#x, want the slave", DEVTTY_FD, tty_dev);
	if (write(MASTER, "ping", 4) != 4)
		zoo_fail(DEVTTY, "write at the master: %s", strerror(errno));
	got = n == 0 ? zoo_read_for(DEVTTY_FD, buf, 4, 2000) : 0;
	ZOO_CHECK(DEVTTY, got == 4 && memcmp(buf, "ping", 4) == 0,
		  "/dev/tty read %zu bytes after the master wrote ping", got);

	n = fcntl(SLAVE2_FD, F_GETFL);
	ZOO_CHECK(SLAVE2,
		  n >= 0 && (n & O_NONBLOCK) && !(fcntl(SLAVE1, F_GETFL) & O_NONBLOCK) &&
			  (n & O_ACCMODE) == O_RDWR,
		  "second slave flags %#x, first %#x", n, fcntl(SLAVE1, F_GETFL));
	return zoo_done();
}
