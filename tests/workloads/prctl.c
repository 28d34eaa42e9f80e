/* prctl state: not dumpable, a parent-death signal, child subreaper, comm, no_new_privs
 * and THP disabled. */
#include "zoo.h"
#include <sys/prctl.h>

enum { DUMPABLE = 1, PDEATHSIG, SUBREAPER, COMM, THP_DISABLE, ITEMS = THP_DISABLE };

int main(int argc, char **argv)
{
	char name[17] = {0};
	int v = -1;

	zoo_init(argc, argv, ITEMS);
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) || prctl(PR_SET_PDEATHSIG, SIGWINCH, 0, 0, 0) ||
	    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) || prctl(PR_SET_NAME, "zoo-prctl-x", 0, 0, 0) ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
		zoo_die("prctl");

	zoo_ready();
	if (ZOO_BREAK(DUMPABLE))
		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	if (ZOO_BREAK(PDEATHSIG))
		prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0);
	if (ZOO_BREAK(SUBREAPER))
		prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
	if (ZOO_BREAK(COMM))
		prctl(PR_SET_NAME, "zoo-prctl-y", 0, 0, 0);
	if (ZOO_BREAK(THP_DISABLE))
		prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
	zoo_wait();

	ZOO_CHECK(DUMPABLE, prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0, "dumpable is %d",
		  prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
	prctl(PR_GET_PDEATHSIG, &v, 0, 0, 0);
	ZOO_CHECK(PDEATHSIG, v == SIGWINCH, "pdeath signal %d, want SIGWINCH", v);
	v = -1;
	prctl(PR_GET_CHILD_SUBREAPER, &v, 0, 0, 0);
	ZOO_CHECK(SUBREAPER, v == 1, "child_subreaper %d", v);
	prctl(PR_GET_NAME, name, 0, 0, 0);
	ZOO_CHECK(COMM, strcmp(name, "zoo-prctl-x") == 0, "comm %s", name);
	/* Not an item: no_new_privs cannot be cleared once set. */
	ZOO_CHECK(ZOO_UNBREAKABLE, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1,
		  "no_new_privs lost");
	ZOO_CHECK(THP_DISABLE, prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1, "THP disable lost");
	return zoo_done();
}
