/* File locks (dumped and restored with --file-locks): an flock(LOCK_EX) on one file and a
 * POSIX (fcntl) write lock on bytes 100..149 of another. After SIGTERM a child opens both
 * files afresh and must be refused the flock (LOCK_NB -> EWOULDBLOCK) and a read lock
 * inside the range (F_SETLK -> EAGAIN/EACCES: the lock there is a write lock) while a byte
 * outside the range stays lockable; it reports what F_GETLK shows it over the whole file,
 * and the parent checks that it is its own lock over exactly that range. */
#include "zoo.h"
#include <sys/file.h>
#include <sys/wait.h>

#define R_START 100
#define R_LEN 50

enum {
	FLOCK_HELD = 1, /* another process is refused the flock */
	POSIX_HELD,     /* and a read lock inside the range */
	OUTSIDE_FREE,   /* but granted a lock outside it */
	GETLK_RANGE,    /* F_GETLK shows P's lock over exactly the range */
	ITEMS = GETLK_RANGE
};

struct report {
	int flock_errno;   /* errno of flock(LOCK_EX|LOCK_NB), 0 if it was granted */
	int setlk_errno;   /* errno of F_SETLK (read lock) inside the range, 0 if granted */
	int outside_errno; /* errno of F_SETLK on byte 200, 0 if granted (expected) */
	struct flock got;  /* F_GETLK over the whole file */
};

static int setlk(int fd, short type, off_t start, off_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};

	return fcntl(fd, F_SETLK, &fl);
}

static void child(const char *a, const char *b, int out)
{
	struct report r;
	int fa, fb;

	memset(&r, 0, sizeof(r));
	fa = open(a, O_RDWR | O_CLOEXEC);
	fb = open(b, O_RDWR | O_CLOEXEC);
	if (fa < 0 || fb < 0)
		_exit(2);
	r.flock_errno = flock(fa, LOCK_EX | LOCK_NB) ? errno : 0;
	r.setlk_errno = setlk(fb, F_RDLCK, R_START + 20, 1) ? errno : 0;
	r.outside_errno = setlk(fb, F_WRLCK, 200, 1) ? errno : 0;
	r.got.l_type = F_WRLCK;
	r.got.l_whence = SEEK_SET;
	r.got.l_start = 0;
	r.got.l_len = 0;
	if (fcntl(fb, F_GETLK, &r.got))
		_exit(2);
	if (write(out, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(2);
	_exit(0);
}

int main(int argc, char **argv)
{
	char *a, *b, buf[4096];
	struct report r;
	int fa, fb, p[2], st;
	pid_t kid;

	zoo_init(argc, argv, ITEMS);
	a = zoo_path("flocked");
	b = zoo_path("posix-locked");
	fa = open(a, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	fb = open(b, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fa < 0 || fb < 0)
		zoo_die("open");
	memset(buf, 'x', sizeof(buf));
	if (write(fb, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		zoo_die("write");
	if (flock(fa, LOCK_EX | LOCK_NB))
		zoo_die("flock");
	if (setlk(fb, F_WRLCK, R_START, R_LEN))
		zoo_die("F_SETLK");

	zoo_ready();
	if (ZOO_BREAK(FLOCK_HELD))
		flock(fa, LOCK_UN);
	if (ZOO_BREAK(POSIX_HELD))
		setlk(fb, F_RDLCK, R_START, R_LEN);
	if (ZOO_BREAK(OUTSIDE_FREE))
		setlk(fb, F_WRLCK, 200, 1);
	if (ZOO_BREAK(GETLK_RANGE))
		setlk(fb, F_WRLCK, R_START + R_LEN, 1);
	zoo_wait();

	if (pipe2(p, O_CLOEXEC))
		zoo_die("pipe");
	kid = fork();
	if (kid < 0)
		zoo_die("fork");
	if (kid == 0)
		child(a, b, p[1]);
	close(p[1]);
	memset(&r, 0, sizeof(r));
	if (read(p[0], &r, sizeof(r)) != (ssize_t)sizeof(r))
		zoo_die("read the child's report");
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		zoo_die("the child failed");

	ZOO_CHECK(FLOCK_HELD, r.flock_errno == EWOULDBLOCK,
		  "flock by another process: errno %d, want EWOULDBLOCK", r.flock_errno);
	ZOO_CHECK(POSIX_HELD, r.setlk_errno == EAGAIN || r.setlk_errno == EACCES,
		  "F_SETLK (read) inside the range by another process: errno %d, want EAGAIN",
		  r.setlk_errno);
	ZOO_CHECK(OUTSIDE_FREE, r.outside_errno == 0,
		  "F_SETLK outside the range: errno %d, want granted", r.outside_errno);
	ZOO_CHECK(GETLK_RANGE,
		  r.got.l_type != F_UNLCK && r.got.l_start == R_START && r.got.l_len == R_LEN &&
			  r.got.l_pid == getpid(),
		  "F_GETLK shows type %d at %lld+%lld pid %d, want a lock at %d+%d pid %d",
		  r.got.l_type, (long long)r.got.l_start, (long long)r.got.l_len, r.got.l_pid,
		  R_START, R_LEN, getpid());
	return zoo_done();
}
