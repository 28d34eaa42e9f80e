/* File leases (F_SETLEASE), dumped and restored with --file-locks. Every file is empty (the
 * harness copies the work directory without opening empty files, which would break a
 * write lease).
 *
 * P holds: a read lease on "rd" (read-only fd) and a write lease on "wr" (write-only fd),
 * both with F_SETSIG SIG_BREAK, so a break tells P which fd it is about (si_fd); two
 * leases it has been told are being broken and has not given up: a read lease on "brk"
 * broken by a writer (to no lease), and a write lease on "dng" broken by a reader (to a
 * read lease); and a write lease on "sh" through a description its child C inherited.
 *
 * After SIGTERM, P checks it was told of exactly the two breaks of before ready (a restore
 * that breaks "brk" and "dng" again must not tell it twice) and what F_GETLEASE shows it;
 * C checks that its inherited description has the write lease; then a probe (a new
 * process) reads the leases of P's descriptions in /proc/P/fdinfo and opens the files
 * non-blocking: it must be refused where a lease is, and P must be told of the breaks it
 * starts.
 *
 * Not /proc/locks: it lists every lock of the machine a page per read(), and locks other
 * processes take or drop between two pages shift its lines, so one lease can be shown twice
 * or not at all. A description's fdinfo is one short read. */
#include "zoo.h"
#include <sys/wait.h>

enum {
	RD_LEASE = 1,  /* "rd": F_GETLEASE read; fdinfo: active read lease; a writer refused */
	RD_NOTIFY,     /* the refused writer's open tells P with SIG_BREAK, si_fd of "rd" */
	WR_LEASE,      /* "wr": F_GETLEASE write; fdinfo: active write lease; a reader
			  refused, and P told */
	BRK_UNLCK,     /* "brk": fdinfo: lease being broken to UNLCK; F_GETLEASE unlock;
			  a writer refused */
	BRK_DOWNGRADE, /* "dng": fdinfo: lease being broken to READ; F_GETLEASE read; a
			  reader refused */
	NO_GHOST,      /* at SIGTERM P has been told of two breaks, "brk" and "dng", once each */
	SHARED,        /* "sh": C's F_GETLEASE write; fdinfo of P's fd: active write lease of P or C */
	ITEMS = SHARED
};

#define FD_RD 20
#define FD_WR 21
#define FD_BRK 22
#define FD_DNG 23
#define FD_SH 24
#define NFD 32
#define SIG_BREAK (SIGRTMIN + 1)

static volatile sig_atomic_t told[NFD]; /* SIG_BREAK notifications by si_fd */
static volatile sig_atomic_t other;     /* other signals, or SIG_BREAK for another fd */

static void on_break(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	if (sig == SIG_BREAK && si->si_fd >= 0 && si->si_fd < NFD)
		told[si->si_fd]++;
	else
		other++;
}

/* What fdinfo shows of the leases of one description. */
struct seen {
	int found;      /* LEASE lines */
	char mode[16];  /* ACTIVE, BREAKING */
	char type[16];  /* READ, WRITE, UNLCK */
	int pid;
};

struct report {
	struct seen rd, wr, brk, dng, sh;
	int rd_open;  /* errno of open(O_WRONLY|O_NONBLOCK) of "rd", 0 if granted */
	int wr_open;  /* errno of open(O_RDONLY|O_NONBLOCK) of "wr" */
	int brk_open; /* errno of open(O_WRONLY|O_NONBLOCK) of "brk" */
	int dng_open; /* errno of open(O_RDONLY|O_NONBLOCK) of "dng" */
};

static const char *p_rd, *p_wr, *p_brk, *p_dng, *p_sh;

/* The `lock:` lines of /proc/`pid`/fdinfo/`fd` (a lease belongs to its description). */
static void seen_of(pid_t pid, int fd, struct seen *s)
{
	char path[64], info[4096], cls[16], mode[16], type[16];
	const char *line;
	int owner;

	memset(s, 0, sizeof(*s));
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)pid, fd);
	if (zoo_read_file(path, info, sizeof(info)) < 0)
		_exit(2);
	for (line = info; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		if (sscanf(line, "lock: %*d: %15s %15s %15s %d", cls, mode, type, &owner) != 4 ||
		    strcmp(cls, "LEASE"))
			continue;
		s->found++;
		snprintf(s->mode, sizeof(s->mode), "%s", mode);
		snprintf(s->type, sizeof(s->type), "%s", type);
		s->pid = owner;
	}
}

static int try_open(const char *path, int mode)
{
	int fd = open(path, mode | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static void probe(pid_t p, int out)
{
	struct report r;

	memset(&r, 0, sizeof(r));
	seen_of(p, FD_RD, &r.rd);
	seen_of(p, FD_WR, &r.wr);
	seen_of(p, FD_BRK, &r.brk);
	seen_of(p, FD_DNG, &r.dng);
	seen_of(p, FD_SH, &r.sh);
	r.rd_open = try_open(p_rd, O_WRONLY);
	r.wr_open = try_open(p_wr, O_RDONLY);
	r.brk_open = try_open(p_brk, O_WRONLY);
	r.dng_open = try_open(p_dng, O_RDONLY);
	if (write(out, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(2);
	_exit(0);
}

/* Opens `path` with `flags` at fd `at`, with lease `lease` and SIG_BREAK for its breaks. */
static void leased_at(const char *path, int flags, int at, int lease)
{
	int fd = open(path, flags | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		zoo_die("open");
	if (fd != at) {
		if (dup3(fd, at, O_CLOEXEC) != at)
			zoo_die("dup3");
		close(fd);
	}
	if (fcntl(at, F_SETSIG, SIG_BREAK) || fcntl(at, F_SETLEASE, lease))
		zoo_die("F_SETLEASE");
}

/* Starts breaking the lease on `path` by a non-blocking open with `mode`. */
static void start_break(const char *path, int mode)
{
	if (try_open(path, mode) != EWOULDBLOCK) {
		errno = 0;
		zoo_die("the open that breaks a lease was not refused with EWOULDBLOCK");
	}
}

static int is(const struct seen *s, const char *mode, const char *type)
{
	return s->found == 1 && !strcmp(s->mode, mode) && !strcmp(s->type, type);
}

static int child(void)
{
	int l;

	zoo_wait();
	l = fcntl(FD_SH, F_GETLEASE);
	ZOO_CHECK(SHARED, l == F_WRLCK, "C: F_GETLEASE of the inherited fd is %d, want %d", l,
		  F_WRLCK);
	return zoo_done();
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	struct report r;
	int p[2], st, i, l_rd, l_wr, l_brk, l_dng, t_rd, t_wr;
	int told_at_term[NFD], other_at_term;
	pid_t c, kid, me;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_break;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIG_BREAK, &sa, NULL) || sigaction(SIGIO, &sa, NULL) ||
	    sigaction(SIGUSR1, &sa, NULL))
		zoo_die("sigaction");
	p_rd = zoo_path("rd");
	p_wr = zoo_path("wr");
	p_brk = zoo_path("brk");
	p_dng = zoo_path("dng");
	p_sh = zoo_path("sh");
	/* C shares only the description of "sh". */
	leased_at(p_sh, O_WRONLY, FD_SH, F_WRLCK);
	c = fork();
	if (c < 0)
		zoo_die("fork");
	if (c == 0)
		return child();
	leased_at(p_rd, O_RDONLY, FD_RD, F_RDLCK);
	leased_at(p_wr, O_WRONLY, FD_WR, F_WRLCK);
	leased_at(p_brk, O_RDONLY, FD_BRK, F_RDLCK);
	leased_at(p_dng, O_WRONLY, FD_DNG, F_WRLCK);
	start_break(p_brk, O_WRONLY);
	start_break(p_dng, O_RDONLY);
	if (told[FD_BRK] != 1 || told[FD_DNG] != 1 || other) {
		errno = 0;
		zoo_die("the breaks before ready were not told once each");
	}

	zoo_ready();
	if (ZOO_BREAK(RD_LEASE))
		fcntl(FD_RD, F_SETLEASE, F_UNLCK);
	if (ZOO_BREAK(RD_NOTIFY))
		fcntl(FD_RD, F_SETSIG, SIGUSR1);
	if (ZOO_BREAK(WR_LEASE))
		fcntl(FD_WR, F_SETLEASE, F_UNLCK);
	if (ZOO_BREAK(BRK_UNLCK))
		fcntl(FD_BRK, F_SETLEASE, F_UNLCK);
	if (ZOO_BREAK(BRK_DOWNGRADE))
		fcntl(FD_DNG, F_SETLEASE, F_UNLCK);
	if (ZOO_BREAK(NO_GHOST)) {
		/* A new lease on "brk", broken again: a second notice for the fd. */
		close(FD_BRK);
		leased_at(p_brk, O_RDONLY, FD_BRK, F_RDLCK);
		start_break(p_brk, O_WRONLY);
	}
	if (ZOO_BREAK(SHARED))
		fcntl(FD_SH, F_SETLEASE, F_UNLCK);
	zoo_wait();

	for (i = 0; i < NFD; i++)
		told_at_term[i] = told[i];
	other_at_term = other;
	l_rd = fcntl(FD_RD, F_GETLEASE);
	l_wr = fcntl(FD_WR, F_GETLEASE);
	l_brk = fcntl(FD_BRK, F_GETLEASE);
	l_dng = fcntl(FD_DNG, F_GETLEASE);
	if (kill(c, SIGTERM))
		zoo_fail(0, "kill C: %s", strerror(errno));
	zoo_reap(c, "C");

	if (pipe2(p, O_CLOEXEC))
		zoo_die("pipe");
	kid = fork();
	if (kid < 0)
		zoo_die("fork");
	if (kid == 0)
		probe(me, p[1]);
	close(p[1]);
	memset(&r, 0, sizeof(r));
	if (read(p[0], &r, sizeof(r)) != (ssize_t)sizeof(r))
		zoo_die("read the probe's report");
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		zoo_die("the probe failed");
	/* The probe's opens told P before it exited: delivered by now. */
	t_rd = told[FD_RD] - told_at_term[FD_RD];
	t_wr = told[FD_WR] - told_at_term[FD_WR];

	ZOO_CHECK(RD_LEASE,
		  l_rd == F_RDLCK && is(&r.rd, "ACTIVE", "READ") && r.rd.pid == me &&
			  r.rd_open == EWOULDBLOCK,
		  "\"rd\": F_GETLEASE %d (want %d); fdinfo %d lease line(s), %s %s pid %d (want "
		  "ACTIVE READ pid %d); a writer's open: errno %d (want EWOULDBLOCK)",
		  l_rd, F_RDLCK, r.rd.found, r.rd.mode, r.rd.type, r.rd.pid, me, r.rd_open);
	/* (Without a lease, nothing is refused nor told: that is RD_LEASE.) */
	ZOO_CHECK(RD_NOTIFY, r.rd_open != EWOULDBLOCK || t_rd == 1,
		  "the writer's refused open of \"rd\" told P %d time(s) with SIG_BREAK for fd "
		  "%d, want 1",
		  t_rd, FD_RD);
	ZOO_CHECK(WR_LEASE,
		  l_wr == F_WRLCK && is(&r.wr, "ACTIVE", "WRITE") && r.wr.pid == me &&
			  r.wr_open == EWOULDBLOCK && t_wr == 1,
		  "\"wr\": F_GETLEASE %d (want %d); fdinfo %d lease line(s), %s %s pid %d (want "
		  "ACTIVE WRITE pid %d); a reader's open: errno %d (want EWOULDBLOCK); told %d "
		  "time(s) (want 1)",
		  l_wr, F_WRLCK, r.wr.found, r.wr.mode, r.wr.type, r.wr.pid, me, r.wr_open, t_wr);
	ZOO_CHECK(BRK_UNLCK,
		  l_brk == F_UNLCK && is(&r.brk, "BREAKING", "UNLCK") && r.brk.pid == me &&
			  r.brk_open == EWOULDBLOCK,
		  "\"brk\": F_GETLEASE %d (want %d); fdinfo %d lease line(s), %s %s pid %d (want "
		  "BREAKING UNLCK pid %d); a writer's open: errno %d (want EWOULDBLOCK)",
		  l_brk, F_UNLCK, r.brk.found, r.brk.mode, r.brk.type, r.brk.pid, me, r.brk_open);
	ZOO_CHECK(BRK_DOWNGRADE,
		  l_dng == F_RDLCK && is(&r.dng, "BREAKING", "READ") && r.dng.pid == me &&
			  r.dng_open == EWOULDBLOCK,
		  "\"dng\": F_GETLEASE %d (want %d); fdinfo %d lease line(s), %s %s pid %d (want "
		  "BREAKING READ pid %d); a reader's open: errno %d (want EWOULDBLOCK)",
		  l_dng, F_RDLCK, r.dng.found, r.dng.mode, r.dng.type, r.dng.pid, me, r.dng_open);
	ZOO_CHECK(NO_GHOST,
		  told_at_term[FD_BRK] == 1 && told_at_term[FD_DNG] == 1 &&
			  told_at_term[FD_RD] == 0 && told_at_term[FD_WR] == 0 && other_at_term == 0,
		  "at SIGTERM P was told %d/%d/%d/%d time(s) of breaks on brk/dng/rd/wr (want "
		  "1/1/0/0) and got %d other signal(s) (want 0)",
		  told_at_term[FD_BRK], told_at_term[FD_DNG], told_at_term[FD_RD],
		  told_at_term[FD_WR], other_at_term);
	ZOO_CHECK(SHARED, is(&r.sh, "ACTIVE", "WRITE") && (r.sh.pid == me || r.sh.pid == c),
		  "\"sh\": fdinfo %d lease line(s), %s %s pid %d (want ACTIVE WRITE pid %d or %d)",
		  r.sh.found, r.sh.mode, r.sh.type, r.sh.pid, me, c);
	return zoo_done();
}
