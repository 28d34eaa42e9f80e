/*
 * A wide tree: P forks 80 children (more than the 64 processes crs reads /proc for at a
 * time, and more than one restore builder's part), each with its own value in private
 * memory, then one more that exits with code 9 and stays a zombie. Children wait for
 * SIGTERM, check their value and getppid(), and exit 0. P signals and reaps every child
 * and checks each status, the zombie's code 9 last. One item, the children's values: to
 * break it, the 70th child changes its value once it is ready. A child's parent and the
 * zombie's exit code cannot change: they are checked, but are no items.
 */
#include "zoo.h"

#include <sys/prctl.h>
#include <sys/wait.h>

#define KIDS 80

enum { VALUES = 1, ITEMS = VALUES };

int main(int argc, char **argv)
{
	pid_t kids[KIDS], z, me;
	int ready[2], i, status;
	char c;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	if (pipe2(ready, O_CLOEXEC))
		zoo_die("pipe2");
	for (i = 0; i < KIDS; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			zoo_die("fork");
		if (kids[i] == 0) {
			volatile uint64_t value = 0x5eed0000ULL + (uint64_t)i * 7919;

			close(ready[0]);
			if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != me)
				_exit(2);
			if (write(ready[1], "x", 1) != 1)
				_exit(3);
			close(ready[1]);
			if (ZOO_BREAK(VALUES) && i == 69)
				value++;
			zoo_wait();
			ZOO_CHECK(VALUES, value == 0x5eed0000ULL + (uint64_t)i * 7919,
				  "child %d: value %#llx", i, (unsigned long long)value);
			ZOO_CHECK(ZOO_UNBREAKABLE, getppid() == me, "child %d: ppid %d", i,
				  getppid());
			_exit(zoo_failures ? 1 : 0);
		}
	}
	z = fork();
	if (z < 0)
		zoo_die("fork Z");
	if (z == 0)
		_exit(9);
	close(ready[1]);
	for (i = 0; i < KIDS; i++)
		if (read(ready[0], &c, 1) != 1)
			zoo_die("a child did not get ready");
	close(ready[0]);
	{
		siginfo_t si;

		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, z, &si, WEXITED | WNOWAIT))
			zoo_die("waitid Z");
	}

	zoo_ready();
	zoo_wait();

	for (i = 0; i < KIDS; i++)
		kill(kids[i], SIGTERM);
	for (i = 0; i < KIDS; i++)
		zoo_reap(kids[i], "a child");
	ZOO_CHECK(ZOO_UNBREAKABLE,
		  waitpid(z, &status, 0) == z && WIFEXITED(status) && WEXITSTATUS(status) == 9,
		  "Z ended with %#x, want exit 9", status);
	return zoo_done();
}
