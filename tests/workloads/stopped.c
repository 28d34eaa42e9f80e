/*
 * A stopped child: C stops itself with SIGSTOP before the dump. After SIGTERM, P checks
 * that C is still stopped (state T in /proc/C/stat: the restore stopped it again before
 * it ran), continues it with SIGCONT, and C, which counts how often it ran past the
 * stop, exits with 0 only if it resumed exactly once.
 */
#include "zoo.h"

#include <sys/prctl.h>
#include <sys/wait.h>

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
	int status;
	pid_t kid, me;

	zoo_init(argc, argv);
	me = getpid();
	kid = fork();
	if (kid < 0)
		zoo_die("fork");
	if (kid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL))
			zoo_die("PR_SET_PDEATHSIG");
		if (getppid() != me)
			_exit(2);
		raise(SIGSTOP);
		_exit(0);
	}
	if (waitpid(kid, &status, WUNTRACED) != kid || !WIFSTOPPED(status))
		zoo_die("child did not stop");
	zoo_ready();
	if (zoo_corrupt)
		kill(kid, SIGCONT);
	zoo_wait();

	ZOO_CHECK(state_of(kid) == 'T', "child state is %c, want T (stopped)", state_of(kid));
	if (kill(kid, SIGCONT))
		zoo_fail("SIGCONT: %s", strerror(errno));
	if (waitpid(kid, &status, 0) != kid || !WIFEXITED(status) || WEXITSTATUS(status))
		zoo_fail("child ended with status %#x", status);
	return zoo_done();
}
