/* OFD locks (F_OFD_SETLK, owned by the open file description) and a flock, held across
 * processes, dumped and restored with --file-locks.
 *
 * P holds, through one description of "ofd": a write lock on bytes 100..149 and a read
 * lock on 300..309. Through two descriptions A and B of "ofd-two": A reads 0..99 and
 * writes 200..209, B reads 50..149 (overlapping A's read) and writes 210..219. Through a
 * description of "ofd-shared" that its child C inherited: a write lock on the whole file;
 * through one of "fl-shared", also C's: flock(LOCK_EX).
 *
 * After SIGTERM a probe (a new process, fresh descriptions of each file) reports what it
 * is refused and granted and what F_OFD_GETLK shows it; P checks A and B against each
 * other; then C checks that the inherited descriptions are its own: F_OFD_GETLK through
 * it sees no conflict with the whole-file lock, and flock(LOCK_EX|LOCK_NB) is granted. */
#include "zoo.h"
#include <sys/file.h>
#include <sys/wait.h>

enum {
	OFD_WRITE_HELD = 1, /* probe: a read lock inside 100..149 is refused */
	OFD_RANGE,          /* probe: F_OFD_GETLK over 0..199 shows a lock of 100+50, pid -1 */
	OFD_OUTSIDE_FREE,   /* probe: a write lock on byte 200 is granted */
	OFD_READ_SHARED,    /* probe: at 305 a read lock is granted, a write lock refused */
	INHERITED_HELD,     /* probe: a read lock anywhere on "ofd-shared" is refused */
	INHERITED_SHARED,   /* C: F_OFD_GETLK through the inherited fd sees no conflict */
	TWO_A_HELD,         /* probe: a write lock at 20 (A's read only) is refused */
	TWO_B_HELD,         /* probe: a write lock at 120 (B's read only) is refused */
	TWO_DISTINCT,       /* P: A sees B's write lock at 210, B sees A's read lock at 60 */
	FLOCK_HELD,         /* probe: flock(LOCK_SH|LOCK_NB) on "fl-shared" is refused */
	FLOCK_SHARED,       /* C: flock(LOCK_EX|LOCK_NB) through the inherited fd is granted */
	ITEMS = FLOCK_SHARED
};

#define FD_ONE 20
#define FD_A 21
#define FD_B 22
#define FD_SHARED 23
#define FD_FLOCK 24

struct report {
	int write_held;    /* errno of F_OFD_SETLK read at 120 of "ofd" */
	struct flock got;  /* F_OFD_GETLK (write) over 0..199 of "ofd" */
	int outside;       /* errno of F_OFD_SETLK write at 200 */
	int read_at_305;   /* errno of F_OFD_SETLK read at 305 */
	int write_at_305;  /* errno of F_OFD_SETLK write at 305 (after the read is dropped) */
	int shared;        /* errno of F_OFD_SETLK read at 0 of "ofd-shared" */
	int two_a;         /* errno of F_OFD_SETLK write at 20 of "ofd-two" */
	int two_b;         /* errno of F_OFD_SETLK write at 120 of "ofd-two" */
	int flock_sh;      /* errno of flock(LOCK_SH|LOCK_NB) of "fl-shared" */
};

static const char *p_one, *p_two, *p_shared, *p_flock;

static int ofd(int fd, int cmd, short type, off_t start, off_t len, struct flock *out)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	int r = fcntl(fd, cmd, &fl);

	if (out)
		*out = fl;
	return r ? errno : 0;
}

static int setlk(int fd, short type, off_t start, off_t len)
{
	return ofd(fd, F_OFD_SETLK, type, start, len, NULL);
}

/* Opens `path` read-write at fd `at`. */
static void open_at(const char *path, int at, int create)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0600);

	if (fd < 0)
		zoo_die("open");
	if (fd != at) {
		if (dup3(fd, at, O_CLOEXEC) != at)
			zoo_die("dup3");
		close(fd);
	}
}

static int fresh(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		_exit(2);
	return fd;
}

static void probe(int out)
{
	struct report r;
	int one = fresh(p_one), two = fresh(p_two), sh = fresh(p_shared), fl = fresh(p_flock);

	memset(&r, 0, sizeof(r));
	r.write_held = setlk(one, F_RDLCK, 120, 1);
	if (ofd(one, F_OFD_GETLK, F_WRLCK, 0, 200, &r.got))
		_exit(2);
	r.outside = setlk(one, F_WRLCK, 200, 1);
	r.read_at_305 = setlk(one, F_RDLCK, 305, 1);
	setlk(one, F_UNLCK, 305, 1);
	r.write_at_305 = setlk(one, F_WRLCK, 305, 1);
	r.shared = setlk(sh, F_RDLCK, 0, 1);
	r.two_a = setlk(two, F_WRLCK, 20, 1);
	r.two_b = setlk(two, F_WRLCK, 120, 1);
	r.flock_sh = flock(fl, LOCK_SH | LOCK_NB) ? errno : 0;
	if (write(out, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(2);
	_exit(0);
}

/* C: holds the inherited descriptions until SIGTERM, then checks they are its own. */
static int child(void)
{
	struct flock got;
	int e;

	zoo_wait();
	if (ZOO_BREAK(INHERITED_SHARED))
		open_at(p_shared, FD_SHARED, 0);
	if (ZOO_BREAK(FLOCK_SHARED))
		open_at(p_flock, FD_FLOCK, 0);
	e = ofd(FD_SHARED, F_OFD_GETLK, F_WRLCK, 0, 0, &got);
	ZOO_CHECK(INHERITED_SHARED, e == 0 && got.l_type == F_UNLCK,
		  "F_OFD_GETLK through the inherited fd: errno %d, type %d at %lld+%lld, want "
		  "no conflict (the lock is this description's)",
		  e, got.l_type, (long long)got.l_start, (long long)got.l_len);
	e = flock(FD_FLOCK, LOCK_EX | LOCK_NB) ? errno : 0;
	ZOO_CHECK(FLOCK_SHARED, e == 0,
		  "flock(LOCK_EX|LOCK_NB) through the inherited fd: errno %d, want granted", e);
	return zoo_done();
}

int main(int argc, char **argv)
{
	struct flock a_sees, b_sees;
	struct report r;
	int p[2], st, ea, eb;
	pid_t c, kid;

	zoo_init(argc, argv, ITEMS);
	p_one = zoo_path("ofd");
	p_two = zoo_path("ofd-two");
	p_shared = zoo_path("ofd-shared");
	p_flock = zoo_path("fl-shared");
	open_at(p_one, FD_ONE, 1);
	open_at(p_two, FD_A, 1);
	open_at(p_two, FD_B, 0);
	open_at(p_shared, FD_SHARED, 1);
	open_at(p_flock, FD_FLOCK, 1);
	if (setlk(FD_ONE, F_WRLCK, 100, 50) || setlk(FD_ONE, F_RDLCK, 300, 10) ||
	    setlk(FD_A, F_RDLCK, 0, 100) || setlk(FD_A, F_WRLCK, 200, 10) ||
	    setlk(FD_B, F_RDLCK, 50, 100) || setlk(FD_B, F_WRLCK, 210, 10) ||
	    setlk(FD_SHARED, F_WRLCK, 0, 0))
		zoo_die("F_OFD_SETLK");
	if (flock(FD_FLOCK, LOCK_EX | LOCK_NB))
		zoo_die("flock");
	c = fork();
	if (c < 0)
		zoo_die("fork");
	if (c == 0)
		return child();

	zoo_ready();
	if (ZOO_BREAK(OFD_WRITE_HELD))
		setlk(FD_ONE, F_RDLCK, 100, 50);
	if (ZOO_BREAK(OFD_RANGE))
		setlk(FD_ONE, F_WRLCK, 150, 1);
	if (ZOO_BREAK(OFD_OUTSIDE_FREE))
		setlk(FD_ONE, F_WRLCK, 200, 1);
	if (ZOO_BREAK(OFD_READ_SHARED))
		setlk(FD_ONE, F_WRLCK, 300, 10);
	if (ZOO_BREAK(INHERITED_HELD))
		setlk(FD_SHARED, F_UNLCK, 0, 0);
	if (ZOO_BREAK(TWO_A_HELD))
		setlk(FD_A, F_UNLCK, 0, 50);
	if (ZOO_BREAK(TWO_B_HELD))
		setlk(FD_B, F_UNLCK, 100, 50);
	if (ZOO_BREAK(TWO_DISTINCT)) {
		setlk(FD_B, F_UNLCK, 210, 10);
		setlk(FD_A, F_WRLCK, 210, 10);
	}
	if (ZOO_BREAK(FLOCK_HELD))
		flock(FD_FLOCK, LOCK_UN);
	zoo_wait();

	if (pipe2(p, O_CLOEXEC))
		zoo_die("pipe");
	kid = fork();
	if (kid < 0)
		zoo_die("fork");
	if (kid == 0)
		probe(p[1]);
	close(p[1]);
	memset(&r, 0, sizeof(r));
	if (read(p[0], &r, sizeof(r)) != (ssize_t)sizeof(r))
		zoo_die("read the probe's report");
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		zoo_die("the probe failed");

	ZOO_CHECK(OFD_WRITE_HELD, r.write_held == EAGAIN,
		  "a read lock at 120 by another description: errno %d, want EAGAIN",
		  r.write_held);
	ZOO_CHECK(OFD_RANGE,
		  r.got.l_type != F_UNLCK && r.got.l_start == 100 && r.got.l_len == 50 &&
			  r.got.l_pid == -1,
		  "F_OFD_GETLK over 0..199 shows type %d at %lld+%lld pid %d, want a lock at "
		  "100+50 pid -1",
		  r.got.l_type, (long long)r.got.l_start, (long long)r.got.l_len, r.got.l_pid);
	ZOO_CHECK(OFD_OUTSIDE_FREE, r.outside == 0,
		  "a write lock at 200 by another description: errno %d, want granted", r.outside);
	ZOO_CHECK(OFD_READ_SHARED, r.read_at_305 == 0 && r.write_at_305 == EAGAIN,
		  "at 305 another description's read lock: errno %d (want granted), write lock: "
		  "errno %d (want EAGAIN)",
		  r.read_at_305, r.write_at_305);
	ZOO_CHECK(INHERITED_HELD, r.shared == EAGAIN,
		  "a read lock on the inherited description's file: errno %d, want EAGAIN",
		  r.shared);
	ZOO_CHECK(TWO_A_HELD, r.two_a == EAGAIN,
		  "a write lock at 20 (A's read lock): errno %d, want EAGAIN", r.two_a);
	ZOO_CHECK(TWO_B_HELD, r.two_b == EAGAIN,
		  "a write lock at 120 (B's read lock): errno %d, want EAGAIN", r.two_b);
	ZOO_CHECK(FLOCK_HELD, r.flock_sh == EWOULDBLOCK,
		  "flock(LOCK_SH|LOCK_NB) by another description: errno %d, want EWOULDBLOCK",
		  r.flock_sh);

	ea = ofd(FD_A, F_OFD_GETLK, F_WRLCK, 210, 10, &a_sees);
	eb = ofd(FD_B, F_OFD_GETLK, F_WRLCK, 60, 10, &b_sees);
	ZOO_CHECK(TWO_DISTINCT,
		  ea == 0 && eb == 0 && a_sees.l_type == F_WRLCK && a_sees.l_start == 210 &&
			  a_sees.l_len == 10 && b_sees.l_type == F_RDLCK,
		  "A's F_OFD_GETLK at 210: errno %d type %d at %lld+%lld (want B's write lock "
		  "210+10); B's at 60: errno %d type %d (want A's read lock)",
		  ea, a_sees.l_type, (long long)a_sees.l_start, (long long)a_sees.l_len, eb,
		  b_sees.l_type);

	if (kill(c, SIGTERM))
		zoo_fail(0, "kill C: %s", strerror(errno));
	zoo_reap(c, "C");
	return zoo_done();
}
