/*
 * pty_session: a terminal session inside the tree (zdtm tty00/tty03, and what a terminal
 * emulator or sshd runs). The root holds a pty master; its child C leads a new session
 * whose controlling terminal is the slave (C holds it); C's child G leads its own
 * process group, which is the terminal's foreground group, and has /dev/tty open. After
 * a restore the terminal is still the session's (C's and G's tty_nr), G's group is in
 * front, G reads through /dev/tty what the root writes at the master, and what C writes
 * at the slave reaches the root.
 *
 * CRIU 4.2 cannot do this one: it gives a session its terminal back only after the
 * leader's children exist, so G has none (and it refuses /dev/tty in a process that
 * holds no pty).
 */
#include "zoo.h"
#include "zoo_pty.h"

enum {
	FOREGROUND = 1, /* G's group is the terminal's foreground group */
	MEMBER,         /* G has the terminal as controlling terminal too */
	DEVTTY,         /* G reads what the master writes through /dev/tty */
	SLAVE_WRITE,    /* what C writes at the slave reaches the master */
	ITEMS = SLAVE_WRITE
};

#define MASTER 30
#define TO_C 31
#define TO_G 32
#define C_IN 33
#define G_IN 34
#define READY 35
#define G_READY 36
#define SLAVE 40
#define DEVTTY_FD 41

/* tty_nr and tpgid of `pid` (/proc/PID/stat); 0 on failure. */
static int tty_of(pid_t pid, dev_t *tty, pid_t *tpgid)
{
	char path[64], stat[1024], *p;
	unsigned int nr;
	int fg;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (zoo_read_file(path, stat, sizeof(stat)) <= 0)
		return 0;
	p = strrchr(stat, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %u %d", &nr, &fg) != 2)
		return 0;
	*tty = makedev((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00));
	*tpgid = fg;
	return 1;
}

/* Waits for one byte on `fd` (a command of the root). */
static void wait_command(int fd)
{
	char c;

	while (read(fd, &c, 1) < 0 && errno == EINTR)
		;
}

static int run_g(void)
{
	char buf[64];
	size_t got;
	int fd;

	if (setpgid(0, 0))
		zoo_die("setpgid");
	fd = open("/dev/tty", O_RDWR);
	if (fd < 0)
		zoo_die("open /dev/tty");
	zoo_move_fd(fd, DEVTTY_FD);
	if (ZOO_BREAK(MEMBER))
		ioctl(DEVTTY_FD, TIOCNOTTY);
	if (ZOO_BREAK(DEVTTY))
		zoo_move_fd(open("/dev/null", O_RDWR), DEVTTY_FD);
	if (write(G_READY, "g", 1) != 1)
		zoo_die("report ready");
	wait_command(G_IN);
	/* In front before reading (whatever FOREGROUND found). */
	signal(SIGTTOU, SIG_IGN);
	tcsetpgrp(DEVTTY_FD, getpgrp());
	got = zoo_read_for(DEVTTY_FD, buf, 5, 2000);
	ZOO_CHECK(DEVTTY, got == 5 && memcmp(buf, "to-g\n", 5) == 0,
		  "G read %zu bytes through /dev/tty (%.*s), want to-g", got, (int)got, buf);
	return zoo_done();
}

static int run_c(int index)
{
	int g_ready[2];
	pid_t g;
	char go;

	if (setsid() < 0)
		zoo_die("setsid");
	if (pipe(g_ready))
		zoo_die("pipe");
	zoo_move_fd(g_ready[1], G_READY);
	/* Without O_NOCTTY: the session's controlling terminal. */
	zoo_move_fd(zoo_open_slave(index, O_RDWR), SLAVE);
	g = fork();
	if (g < 0)
		zoo_die("fork");
	if (g == 0) {
		close(g_ready[0]);
		exit(run_g());
	}
	close(G_READY);
	if (read(g_ready[0], &go, 1) != 1)
		zoo_die("G did not get ready");
	close(g_ready[0]);
	setpgid(g, g);
	if (!ZOO_BREAK(FOREGROUND) && tcsetpgrp(SLAVE, g))
		zoo_die("tcsetpgrp");
	if (ZOO_BREAK(SLAVE_WRITE))
		zoo_move_fd(open("/dev/null", O_RDWR), SLAVE);
	if (write(READY, &g, sizeof(g)) != sizeof(g))
		zoo_die("report ready");
	wait_command(C_IN);
	if (write(SLAVE, "from-c\n", 7) != 7)
		zoo_fail(SLAVE_WRITE, "write at the slave: %s", strerror(errno));
	zoo_reap(g, "G");
	return zoo_done();
}

int main(int argc, char **argv)
{
	int index, to_c[2], to_g[2], ready[2], n;
	pid_t c, g, sid = 0, fg = 0, tpgid;
	dev_t slave, tty;
	char buf[64];
	ssize_t got;

	zoo_init(argc, argv, ITEMS);
	zoo_move_fd(zoo_openpt(&index), MASTER);
	slave = makedev(136, index);
	if (pipe(to_c) || pipe(to_g) || pipe(ready))
		zoo_die("pipe");
	zoo_move_fd(to_c[1], TO_C);
	zoo_move_fd(to_g[1], TO_G);
	zoo_move_fd(to_c[0], C_IN);
	zoo_move_fd(to_g[0], G_IN);
	zoo_move_fd(ready[1], READY);
	c = fork();
	if (c < 0)
		zoo_die("fork");
	if (c == 0) {
		close(MASTER);
		close(ready[0]);
		exit(run_c(index));
	}
	close(READY);
	close(C_IN);
	close(G_IN);
	if (read(ready[0], &g, sizeof(g)) != sizeof(g))
		zoo_die("the session did not get ready");
	close(ready[0]);

	zoo_ready();
	zoo_wait();

	ZOO_CHECK(ZOO_UNBREAKABLE,
		  ioctl(MASTER, TIOCGSID, &sid) == 0 && sid == c && tty_of(c, &tty, &tpgid) &&
			  tty == slave,
		  "the terminal's session is %d, want C (%d), with it as controlling terminal "
		  "(only a session leader can give its terminal up, which takes it from the whole "
		  "session)",
		  sid, c);
	ZOO_CHECK(FOREGROUND, ioctl(MASTER, TIOCGPGRP, &fg) == 0 && fg == g,
		  "foreground group %d, want G's (%d)", fg, g);
	n = tty_of(g, &tty, &tpgid);
	ZOO_CHECK(MEMBER, n && tty == slave && tpgid == fg,
		  "G's controlling terminal %#lx with foreground %d, want %#lx and %d",
		  (unsigned long)tty, tpgid, (unsigned long)slave, fg);

	if (write(TO_C, "x", 1) != 1)
		zoo_fail(0, "command C: %s", strerror(errno));
	got = (ssize_t)zoo_read_for(MASTER, buf, 8, 2000);
	ZOO_CHECK(SLAVE_WRITE, got == 8 && memcmp(buf, "from-c\r\n", 8) == 0,
		  "the master read %zd bytes (%.*s), want from-c", got, (int)got, buf);
	if (write(MASTER, "to-g\n", 5) != 5 || write(TO_G, "x", 1) != 1)
		zoo_fail(0, "writing to G: %s", strerror(errno));
	zoo_reap(c, "the session leader C");
	return zoo_done();
}
