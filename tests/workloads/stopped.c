/*
 * A stopped child: C, leader of its own process group (so job-control stops are not
 * discarded as for an orphaned group), stops itself with SIGTSTP before the dump. After
 * SIGTERM, P checks that C is still stopped (state T in /proc/C/stat) and, since the
 * restore stops it again, that waitpid(WUNTRACED) reports it stopped by SIGTSTP, not
 * SIGSTOP. Then P continues it with SIGCONT and SIGTERM, and C exits 0.
 */
#include "zoo.h"

#include <sys/prctl.h>
#include <sys/wait.h>

enum {
	STOPPED = 1, /* C is stopped, and goes on and exits 0 when continued and told to */
	STOP_SIGNAL, /* a stop reported after the restore is one by SIGTSTP */
	ITEMS = STOP_SIGNAL
};

static char state_of(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		return '?';
	}
	fclose(f);
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

int main(int argc, char **argv)
{
	int status, r;
	pid_t kid, me;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	kid = fork();
	if (kid < 0)
		zoo_die("fork");
	if (kid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL))
			zoo_die("PR_SET_PDEATHSIG");
		if (getppid() != me)
			_exit(2);
		if (setpgid(0, 0))
			_exit(3);
		raise(SIGTSTP);
		zoo_wait();
		_exit(0);
	}
	if (waitpid(kid, &status, WUNTRACED) != kid || !WIFSTOPPED(status) ||
	    WSTOPSIG(status) != SIGTSTP)
		zoo_die("child did not stop with SIGTSTP");
	zoo_ready();
	if (ZOO_BREAK(STOPPED)) {
		/* Killed, and dead (not reaped) before P looks at it. */
		siginfo_t si;

		if (kill(kid, SIGKILL) || waitid(P_PID, kid, &si, WEXITED | WNOWAIT))
			zoo_die("kill the child");
	}
	if (ZOO_BREAK(STOP_SIGNAL)) {
		/* Continued, then stopped anew by SIGSTOP: a stop P has not seen yet. */
		if (kill(kid, SIGCONT) || waitpid(kid, &status, WCONTINUED) != kid ||
		    kill(kid, SIGSTOP))
			zoo_die("restop the child");
	}
	zoo_wait();

	/* A restored C stops again as soon as it is let go, maybe a moment after P wakes:
	 * if it is not stopped yet (and not dead), wait for that stop without reaping. */
	if (state_of(kid) != 'T' && state_of(kid) != 'Z') {
		siginfo_t si;

		if (waitid(P_PID, kid, &si, WSTOPPED | WNOWAIT))
			zoo_fail(0, "waitid: %s", strerror(errno));
	}
	ZOO_CHECK(STOPPED, state_of(kid) == 'T', "child state is %c, want T (stopped)",
		  state_of(kid));
	/* A restored C stopped anew and that stop is reported with its own signal (none is
	 * pending in a run without restore). */
	r = waitpid(kid, &status, WUNTRACED | WNOHANG);
	ZOO_CHECK(STOP_SIGNAL, r != kid || !WIFSTOPPED(status) || WSTOPSIG(status) == SIGTSTP,
		  "stop reported as %#x, want a stop by SIGTSTP (%d)", status, SIGTSTP);
	if (r != kid || WIFSTOPPED(status)) {
		kill(kid, SIGCONT);
		kill(kid, SIGTERM);
		r = waitpid(kid, &status, 0);
	}
	ZOO_CHECK(STOPPED, r == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "child ended with status %#x", status);
	return zoo_done();
}
