/*
 * pidfds: of a running child, of a child that has exited and been reaped, of a zombie
 * child, of the process itself, nonblocking, PIDFD_THREAD, and one shared with a child.
 *
 * P opens H, a pidfd of itself, and forks A, which inherits it (one open description in
 * P and A) and waits for SIGTERM. Then P takes
 *   L  a pidfd of A (running),
 *   N  a PIDFD_NONBLOCK pidfd of A,
 *   T  a PIDFD_THREAD pidfd of A (its leader thread),
 *   D  a pidfd of child D, which exits at once and which P reaps,
 *   Z  a pidfd of child Z, which exits with 42 and which P leaves a zombie,
 *   S  a pidfd of itself (its own description, not A's).
 * After SIGTERM P checks each (the pid in /proc/self/fdinfo/N `Pid:`, flags, poll,
 * pidfd_send_signal, waitid(P_PIDFD)), then ends A through L and reaps it through L. A
 * checks that its H refers to its parent.
 */
#include "zoo.h"

#include <linux/kcmp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

enum {
	LIVE = 1, /* L: signal 0 works, Pid is A's; SIGTERM through L ends A, waitid reaps it */
	EXITED,   /* D: polls readable, Pid -1, pidfd_send_signal fails with ESRCH */
	ZOMBIE,   /* Z: Pid is Z's, waitid(P_PIDFD) reaps it with exit 42 */
	SELF,     /* S: Pid is P's own, signal 0 works */
	NONBLOCK, /* N: O_NONBLOCK, waitid(P_PIDFD) while A runs fails with EAGAIN, Pid A's */
	THREAD,   /* T: PIDFD_THREAD (O_EXCL) in its flags, Pid A's, signal 0 works */
	SHARED,   /* H: one description in P and A (kcmp), in A its Pid is A's parent */
	ITEMS = SHARED
};

static int pidfd_open(pid_t pid, unsigned int flags)
{
	return (int)syscall(SYS_pidfd_open, pid, flags);
}

static int pidfd_signal(int fd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
}

/* The `Pid:` of pidfd `fd` in /proc/self/fdinfo (-1: a reaped process), or -2 when there
 * is no such line. */
static int fdinfo_pid(int fd)
{
	char path[64], buf[512], *at;
	int pid;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zoo_read_file(path, buf, sizeof(buf)) < 0)
		return -2;
	at = strstr(buf, "\nPid:\t");
	if (!at || sscanf(at + 6, "%d", &pid) != 1)
		return -2;
	return pid;
}

/* Replaces fd `fd` with a new pidfd of `pid` (a break). */
static void replace(int fd, pid_t pid, unsigned int flags)
{
	int f = pidfd_open(pid, flags);

	if (f < 0 || dup2(f, fd) != fd)
		zoo_die("replace a pidfd");
	close(f);
}

/* A: waits for SIGTERM, then checks its inherited pidfd `h` of its parent `parent`. */
static int child_a(int h, pid_t parent, int ready_w)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL))
		zoo_die("PR_SET_PDEATHSIG");
	if (getppid() != parent)
		_exit(2);
	if (write(ready_w, "x", 1) != 1)
		zoo_die("write ready byte");
	close(ready_w);
	zoo_wait();
	ZOO_CHECK(SHARED, fdinfo_pid(h) == getppid() && pidfd_signal(h, 0) == 0,
		  "A: its pidfd of its parent %d shows Pid %d (signal 0: %s)", getppid(),
		  fdinfo_pid(h), pidfd_signal(h, 0) ? strerror(errno) : "ok");
	return zoo_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	int h, l, n, t, d, z, s, fl, ready[2], got, live_ok;
	pid_t me, a, dead, zombie;
	struct pollfd pfd;
	siginfo_t si;
	char c;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	h = pidfd_open(me, 0);
	if (h < 0)
		zoo_die("pidfd_open self (H)");
	if (pipe2(ready, O_CLOEXEC))
		zoo_die("pipe2");
	a = fork();
	if (a < 0)
		zoo_die("fork A");
	if (a == 0) {
		close(ready[0]);
		return child_a(h, me, ready[1]);
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		zoo_die("A did not get ready");
	close(ready[0]);

	l = pidfd_open(a, 0);
	n = pidfd_open(a, PIDFD_NONBLOCK);
	t = pidfd_open(a, PIDFD_THREAD);
	if (l < 0 || n < 0 || t < 0)
		zoo_die("pidfd_open A (L, N, T)");

	dead = fork();
	if (dead < 0)
		zoo_die("fork D");
	if (dead == 0)
		_exit(0);
	d = pidfd_open(dead, 0); /* D is ours until reaped: its pid is not reused before */
	if (d < 0)
		zoo_die("pidfd_open D");
	if (waitpid(dead, NULL, 0) != dead)
		zoo_die("waitpid D");

	zombie = fork();
	if (zombie < 0)
		zoo_die("fork Z");
	if (zombie == 0)
		_exit(42);
	z = pidfd_open(zombie, 0);
	if (z < 0)
		zoo_die("pidfd_open Z");
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)z, &si, WEXITED | WNOWAIT))
		zoo_die("waitid Z (WNOWAIT)");

	s = pidfd_open(me, 0);
	if (s < 0)
		zoo_die("pidfd_open self (S)");

	zoo_ready();
	if (ZOO_BREAK(LIVE))
		replace(l, me, 0);
	if (ZOO_BREAK(EXITED))
		replace(d, a, 0);
	if (ZOO_BREAK(ZOMBIE) && waitpid(zombie, NULL, 0) != zombie)
		zoo_die("reap Z early");
	if (ZOO_BREAK(SELF))
		replace(s, a, 0);
	if (ZOO_BREAK(NONBLOCK) && fcntl(n, F_SETFL, 0))
		zoo_die("clear O_NONBLOCK");
	if (ZOO_BREAK(THREAD))
		replace(t, a, 0);
	if (ZOO_BREAK(SHARED))
		replace(h, me, 0);
	zoo_wait();

	live_ok = fdinfo_pid(l) == a && pidfd_signal(l, 0) == 0;
	ZOO_CHECK(LIVE, live_ok, "L: Pid %d, want A %d (signal 0: %s)", fdinfo_pid(l), a,
		  pidfd_signal(l, 0) ? strerror(errno) : "ok");

	pfd.fd = d;
	pfd.events = POLLIN;
	pfd.revents = 0;
	got = poll(&pfd, 1, 0);
	ZOO_CHECK(EXITED, got == 1 && (pfd.revents & POLLIN), "D: poll %d revents %#x, want POLLIN",
		  got, pfd.revents);
	ZOO_CHECK(EXITED, fdinfo_pid(d) == -1, "D: Pid %d, want -1", fdinfo_pid(d));
	errno = 0;
	ZOO_CHECK(EXITED, pidfd_signal(d, 0) == -1 && errno == ESRCH,
		  "D: pidfd_send_signal: %s, want ESRCH", strerror(errno));

	ZOO_CHECK(ZOMBIE, fdinfo_pid(z) == zombie, "Z: Pid %d, want %d", fdinfo_pid(z), zombie);
	memset(&si, 0, sizeof(si));
	got = waitid(P_PIDFD, (id_t)z, &si, WEXITED | WNOHANG);
	ZOO_CHECK(ZOMBIE,
		  got == 0 && si.si_pid == zombie && si.si_code == CLD_EXITED && si.si_status == 42,
		  "Z: waitid(P_PIDFD): %d (%s), pid %d code %d status %d; want %d exited 42", got,
		  got ? strerror(errno) : "ok", si.si_pid, si.si_code, si.si_status, zombie);

	ZOO_CHECK(SELF, fdinfo_pid(s) == me && pidfd_signal(s, 0) == 0,
		  "S: Pid %d, want its own %d (signal 0: %s)", fdinfo_pid(s), me,
		  pidfd_signal(s, 0) ? strerror(errno) : "ok");

	fl = fcntl(n, F_GETFL);
	ZOO_CHECK(NONBLOCK, fl >= 0 && (fl & O_NONBLOCK), "N: flags %#o, no O_NONBLOCK", fl);
	if (fl >= 0 && (fl & O_NONBLOCK)) { /* without it, waitid would wait for A */
		memset(&si, 0, sizeof(si));
		errno = 0;
		got = waitid(P_PIDFD, (id_t)n, &si, WEXITED);
		ZOO_CHECK(NONBLOCK, got == -1 && errno == EAGAIN,
			  "N: waitid on running A: %d (%s), want EAGAIN", got, strerror(errno));
	}
	ZOO_CHECK(NONBLOCK, fdinfo_pid(n) == a, "N: Pid %d, want A %d", fdinfo_pid(n), a);

	fl = fcntl(t, F_GETFL);
	ZOO_CHECK(THREAD, fl >= 0 && (fl & PIDFD_THREAD), "T: flags %#o, no PIDFD_THREAD", fl);
	ZOO_CHECK(THREAD, fdinfo_pid(t) == a && pidfd_signal(t, 0) == 0,
		  "T: Pid %d, want A %d (signal 0: %s)", fdinfo_pid(t), a,
		  pidfd_signal(t, 0) ? strerror(errno) : "ok");

	got = (int)syscall(SYS_kcmp, me, a, KCMP_FILE, h, h);
	ZOO_CHECK(SHARED, got == 0, "H: kcmp(P, A, KCMP_FILE) of fd %d is %d (%s), want 0", h,
		  got, got < 0 ? strerror(errno) : "two descriptions");
	ZOO_CHECK(SHARED, fdinfo_pid(h) == me, "H: Pid %d in P, want %d", fdinfo_pid(h), me);

	/* A ends through L and is reaped through it; without a working L, by pid. */
	memset(&si, 0, sizeof(si));
	if (live_ok && pidfd_signal(l, SIGTERM) == 0 &&
	    waitid(P_PIDFD, (id_t)l, &si, WEXITED) == 0) {
		ZOO_CHECK(LIVE, si.si_pid == a, "L: waitid reaped %d, want A %d", si.si_pid, a);
		if (si.si_code != CLD_EXITED || si.si_status > 1)
			zoo_fail(0, "A ended with code %d status %d", si.si_code, si.si_status);
		else if (si.si_status == 1) { /* its FAIL lines name their items */
			fprintf(stderr, "%s: A (%d) failed its checks\n", zoo_name, a);
			__atomic_fetch_add(&zoo_failures, 1, __ATOMIC_RELAXED);
		}
	} else {
		if (live_ok)
			zoo_fail(LIVE, "L: ending A through it: %s", strerror(errno));
		kill(a, SIGTERM);
		zoo_reap(a, "A");
	}
	return zoo_done();
}
