/*
 * A process group led by a zombie: P (session leader) forks Z, which makes its own group
 * and exits with code 5 (P does not reap it), and M, which joins Z's group after Z has
 * exited. crs must create the zombie before M joins. After restore M checks its pgid and
 * sid; P checks M's, then reaps Z (exit code 5) and M.
 */
#include "zoo.h"

#include <sys/prctl.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	int ready[2], status;
	pid_t me, z, m;
	siginfo_t si;
	char c;

	zoo_init(argc, argv);
	me = getpid();
	if (getsid(0) != me)
		zoo_die("not a session leader");
	if (pipe2(ready, O_CLOEXEC))
		zoo_die("pipe2");

	z = fork();
	if (z < 0)
		zoo_die("fork Z");
	if (z == 0) {
		if (setpgid(0, 0))
			zoo_die("setpgid Z");
		_exit(5);
	}
	setpgid(z, z);
	/* Z has exited (not reaped): only its zombie holds the group. */
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, z, &si, WEXITED | WNOWAIT))
		zoo_die("waitid Z");

	m = fork();
	if (m < 0)
		zoo_die("fork M");
	if (m == 0) {
		close(ready[0]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL))
			zoo_die("PR_SET_PDEATHSIG");
		if (getppid() != me)
			_exit(2);
		if (setpgid(0, z))
			zoo_die("setpgid M");
		if (write(ready[1], "x", 1) != 1)
			zoo_die("write ready");
		close(ready[1]);
		zoo_wait();
		ZOO_CHECK(getpgid(0) == z, "M: pgid %d, want %d", getpgid(0), z);
		ZOO_CHECK(getsid(0) == me, "M: sid %d, want %d", getsid(0), me);
		return zoo_failures ? 1 : 0;
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		zoo_die("M did not get ready");
	close(ready[0]);

	zoo_ready();
	if (zoo_corrupt)
		setpgid(m, me);
	zoo_wait();

	ZOO_CHECK(getpgid(m) == z, "M's pgid is %d, want %d", getpgid(m), z);
	ZOO_CHECK(getpgid(z) == z, "Z's pgid is %d, want %d", getpgid(z), z);
	if (waitpid(z, &status, 0) != z || !WIFEXITED(status) || WEXITSTATUS(status) != 5)
		zoo_fail("Z ended with %#x, want exit 5", status);
	kill(m, SIGTERM);
	if (waitpid(m, &status, 0) != m || !WIFEXITED(status) || WEXITSTATUS(status))
		zoo_fail("M ended with %#x", status);
	return zoo_done();
}
