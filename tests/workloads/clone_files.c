/*
 * An fd table shared by two processes: P clone()s C with CLONE_FILES (no CLONE_VM).
 * Before the dump, P has a file at fd 50 read up to offset 3 and C put another at fd 60.
 * After restore, P opens a file at fd 80 and C must see it; C checks fd 50 (same offset,
 * same contents) and puts /dev/null at fd 70, which P must see once C ended.
 */
#include "zoo.h"

#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char text[] = "0123456789";

enum {
	C_OFFSET = 1, /* C: fd 50 (P's) at offset 3 */
	C_CONTENT,    /* C: fd 50 reads "345" at offset 3 */
	C_SEES_80,    /* C: fd 80, opened by P after restore, is in its table */
	P_SEES_60,    /* P: fd 60, opened by C before the dump */
	P_SEES_70,    /* P: fd 70, opened by C after restore */
	ITEMS = P_SEES_70
};

static int same_file(int fd, const char *path)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

static void put_at(const char *path, int flags, int at)
{
	int fd = open(path, flags | O_CLOEXEC, 0600);

	if (fd < 0)
		zoo_die("open");
	if (dup2(fd, at) != at)
		zoo_die("dup2");
	close(fd);
}

int main(int argc, char **argv)
{
	char *p50 = NULL, *p60 = NULL, *p80 = NULL, buf[4] = { 0 };
	int ready[2];
	pid_t me, c;
	long ret;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	p50 = zoo_path("fifty");
	p60 = zoo_path("sixty");
	p80 = zoo_path("eighty");
	put_at(p50, O_RDWR | O_CREAT | O_TRUNC, 50);
	if (write(50, text, sizeof(text)) != sizeof(text) || lseek(50, 3, SEEK_SET) != 3)
		zoo_die("fill fd 50");
	if (pipe2(ready, O_CLOEXEC))
		zoo_die("pipe2");

	ret = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
	if (ret < 0)
		zoo_die("clone(CLONE_FILES)");
	if (ret == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL))
			zoo_die("PR_SET_PDEATHSIG");
		if (getppid() != me)
			_exit(2);
		put_at(p60, O_RDWR | O_CREAT | O_TRUNC, 60);
		if (write(ready[1], "x", 1) != 1)
			zoo_die("write ready");
		zoo_wait();
		ZOO_CHECK(C_OFFSET, lseek(50, 0, SEEK_CUR) == 3, "C: fd 50 at offset %ld, want 3",
			  (long)lseek(50, 0, SEEK_CUR));
		ZOO_CHECK(C_CONTENT, pread(50, buf, 3, 3) == 3 && memcmp(buf, "345", 3) == 0,
			  "C: fd 50 does not read \"345\" at offset 3");
		ZOO_CHECK(C_SEES_80, same_file(80, p80), "C: fd 80, opened by P, is not there");
		put_at(ZOO_BREAK(P_SEES_70) ? "/dev/zero" : "/dev/null", O_RDONLY, 70);
		exit(zoo_failures ? 1 : 0);
	}
	c = (pid_t)ret;
	if (read(ready[0], buf, 1) != 1)
		zoo_die("C did not get ready");
	if (!same_file(60, p60))
		zoo_die("fd 60 of C is not in P's table");

	zoo_ready();
	if (ZOO_BREAK(C_OFFSET))
		lseek(50, 4, SEEK_SET);
	if (ZOO_BREAK(C_CONTENT) && pwrite(50, "x", 1, 4) != 1)
		zoo_die("pwrite");
	if (ZOO_BREAK(P_SEES_60))
		close(60);
	zoo_wait();

	ZOO_CHECK(P_SEES_60, same_file(60, p60), "P: fd 60, opened by C, is not there");
	put_at(p80, O_RDWR | O_CREAT | O_TRUNC, 80);
	if (ZOO_BREAK(C_SEES_80))
		put_at("/dev/null", O_RDONLY, 80);
	kill(c, SIGTERM);
	zoo_reap(c, "C");
	ZOO_CHECK(P_SEES_70, same_file(70, "/dev/null"),
		  "P: fd 70, opened by C after restore, is not there");
	return zoo_done();
}
