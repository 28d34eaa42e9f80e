/*
 * pty_cooked: a pty in its default, cooked settings (canonical input with echo, output
 * with NL -> CR NL), as a shell's terminal is, with input typed at the master and not
 * yet read at the slave: two complete lines, an end-of-file line (^D at the start of a
 * line) and a partial line; the echo of that input and output of the slave queued at the
 * master; the master in packet mode, the slave in exclusive mode, the pty locked. After
 * a restore the slave reads the same lines, the partial line goes on where it stopped,
 * the master reads the same bytes and nothing was echoed twice.
 *
 * CRIU 4.2 cannot do this one: it loses the partial line, echoes the input a second time
 * and keeps packet headers as data.
 */
#include "zoo.h"
#include "zoo_pty.h"

enum {
	PACKET = 1, /* the master is in packet mode */
	EXCLUSIVE,  /* the slave is in exclusive mode */
	LOCKED,     /* the pty is locked */
	LINES,      /* the complete lines and the end-of-file line at the slave */
	OUTPUT,     /* what the master reads: the echo and the slave's output */
	PARTIAL,    /* the partial line, and echo going on once */
	ITEMS = PARTIAL
};

#define MASTER 30
#define SLAVE 31

static const char typed[] = "line one\nline two\n\x04part";
static const char at_master[] = "line one\r\nline two\r\npartout\r\n";

/* One read of `fd` once it is readable (within `ms`); -1 if nothing came. */
static ssize_t read_once(int fd, char *buf, size_t cap, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	if (poll(&p, 1, ms) <= 0)
		return -1;
	return read(fd, buf, cap);
}

int main(int argc, char **argv)
{
	struct termios t, quiet;
	char buf[256];
	int index, one = 1, zero = 0, n;
	ssize_t got;

	zoo_init(argc, argv, ITEMS);
	zoo_move_fd(zoo_openpt(&index), MASTER);
	zoo_move_fd(zoo_open_slave(index, O_RDWR | O_NOCTTY), SLAVE);
	if (ioctl(SLAVE, TIOCEXCL) < 0)
		zoo_die("TIOCEXCL");
	if (write(MASTER, typed, sizeof(typed) - 1) != sizeof(typed) - 1)
		zoo_die("write at the master");
	zoo_wait_queued(MASTER, 24); /* the echo of what was typed */
	if (write(SLAVE, "out\n", 4) != 4)
		zoo_die("write at the slave");
	zoo_wait_queued(MASTER, sizeof(at_master) - 1);
	if (ioctl(MASTER, TIOCPKT, &one) < 0 || ioctl(MASTER, TIOCSPTLCK, &one) < 0)
		zoo_die("TIOCPKT / TIOCSPTLCK");

	zoo_ready();
	if (ZOO_BREAK(PACKET))
		ioctl(MASTER, TIOCPKT, &zero);
	if (ZOO_BREAK(EXCLUSIVE))
		ioctl(SLAVE, TIOCNXCL);
	if (ZOO_BREAK(LOCKED))
		ioctl(MASTER, TIOCSPTLCK, &zero);
	if (ZOO_BREAK(LINES) && read(SLAVE, buf, sizeof(buf)) <= 0)
		zoo_die("read a line at the slave");
	if (ZOO_BREAK(OUTPUT) && read(MASTER, buf, 2) != 2)
		zoo_die("read at the master");
	if (ZOO_BREAK(PARTIAL)) {
		/* One more character in the partial line, typed without echo. */
		if (tcgetattr(SLAVE, &t))
			zoo_die("tcgetattr");
		quiet = t;
		quiet.c_lflag &= ~ECHO;
		if (tcsetattr(SLAVE, TCSANOW, &quiet) || ioctl(SLAVE, TIOCSTI, "X") ||
		    tcsetattr(SLAVE, TCSANOW, &t))
			zoo_die("TIOCSTI");
	}
	zoo_wait();

	n = -1;
	ZOO_CHECK(PACKET, ioctl(MASTER, TIOCGPKT, &n) == 0 && n == 1, "packet mode %d", n);
	n = -1;
	ZOO_CHECK(EXCLUSIVE, ioctl(SLAVE, TIOCGEXCL, &n) == 0 && n == 1, "exclusive mode %d", n);
	n = -1;
	ZOO_CHECK(LOCKED, ioctl(MASTER, TIOCGPTLCK, &n) == 0 && n == 1, "lock state %d", n);

	fcntl(SLAVE, F_SETFL, fcntl(SLAVE, F_GETFL) | O_NONBLOCK);
	got = read(SLAVE, buf, sizeof(buf));
	ZOO_CHECK(LINES, got == 9 && memcmp(buf, "line one\n", 9) == 0,
		  "first line: %zd bytes (%.*s)", got, got > 0 ? (int)got : 0, buf);
	got = read(SLAVE, buf, sizeof(buf));
	ZOO_CHECK(LINES, got == 9 && memcmp(buf, "line two\n", 9) == 0,
		  "second line: %zd bytes (%.*s)", got, got > 0 ? (int)got : 0, buf);
	got = read(SLAVE, buf, sizeof(buf));
	ZOO_CHECK(LINES, got == 0, "end-of-file line: %zd bytes (%.*s)", got,
		  got > 0 ? (int)got : 0, buf);
	got = read(SLAVE, buf, sizeof(buf));
	ZOO_CHECK(LINES, got < 0 && errno == EAGAIN, "a line too many: %zd bytes (%.*s)", got,
		  got > 0 ? (int)got : 0, buf);
	fcntl(SLAVE, F_SETFL, fcntl(SLAVE, F_GETFL) & ~O_NONBLOCK);

	/* In packet mode each read of the master starts with a header byte. */
	n = 0;
	ioctl(MASTER, TIOCGPKT, &n);
	got = read_once(MASTER, buf, sizeof(buf), 1000);
	if (n && got > 0 && buf[0] == TIOCPKT_DATA)
		memmove(buf, buf + 1, (size_t)--got);
	ZOO_CHECK(OUTPUT, got == sizeof(at_master) - 1 && memcmp(buf, at_master, got) == 0,
		  "the master read %zd bytes (%.*s), want the %zu queued", got,
		  got > 0 ? (int)got : 0, buf, sizeof(at_master) - 1);

	if (write(MASTER, "ial\n", 4) != 4)
		zoo_fail(PARTIAL, "write at the master: %s", strerror(errno));
	got = read_once(SLAVE, buf, sizeof(buf), 2000);
	ZOO_CHECK(PARTIAL, got == 8 && memcmp(buf, "partial\n", 8) == 0,
		  "the partial line ended as %zd bytes (%.*s), want partial", got,
		  got > 0 ? (int)got : 0, buf);
	got = read_once(MASTER, buf, sizeof(buf), 2000);
	if (n && got > 0 && buf[0] == TIOCPKT_DATA)
		memmove(buf, buf + 1, (size_t)--got);
	ZOO_CHECK(PARTIAL, got == 5 && memcmp(buf, "ial\r\n", 5) == 0,
		  "echo of the end of the line: %zd bytes (%.*s)", got, got > 0 ? (int)got : 0,
		  buf);
	return zoo_done();
}
