/*
 * A process group led by a zombie: P (session leader) forks Z, which makes its own group
 * and exits with code 5 (P does not reap it), and M, which joins Z's group after Z has
 * exited. crs must create the zombie before M joins. After restore M checks its pgid and
 * sid; P checks M's, then reaps Z (exit code 5) and M.
 */
#include "zoo.h"

#include <sys/prctl.h>
#include <sys/wait.h>

enum {
	M_IDS = 1, /* M in Z's group of P's session, as M and P see it */
	Z_PGID,    /* the zombie leads its group */
	ITEMS = Z_PGID
};

int main(int argc, char **argv)
{
	int ready[2], status;
	pid_t me, z, m;
	siginfo_t si;
	char c;

	zoo_init(argc, argv, ITEMS);
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
		ZOO_CHECK(M_IDS, getpgid(0) == z && getsid(0) == me, "M: pgid %d sid %d, want %d %d",
			  getpgid(0), getsid(0), z, me);
		return zoo_failures ? 1 : 0;
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		zoo_die("M did not get ready");
	close(ready[0]);

	zoo_ready();
	if (ZOO_BREAK(M_IDS))
		setpgid(m, me);
	if (ZOO_BREAK(Z_PGID))
		setpgid(z, me); /* a zombie can be moved; M stays in the group */
	zoo_wait();

	ZOO_CHECK(M_IDS, getpgid(m) == z, "M's pgid is %d, want %d", getpgid(m), z);
	ZOO_CHECK(Z_PGID, getpgid(z) == z, "Z's pgid is %d, want %d", getpgid(z), z);
	/* Not an item: an exit code cannot change. */
	ZOO_CHECK(ZOO_UNBREAKABLE,
		  waitpid(z, &status, 0) == z && WIFEXITED(status) && WEXITSTATUS(status) == 5,
		  "Z ended with %#x, want exit 5", status);
	kill(m, SIGTERM);
	zoo_reap(m, "M");
	return zoo_done();
}
