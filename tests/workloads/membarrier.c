/*
 * membarrier registrations belong to the mm: the process registers for private
 * expedited membarriers; after restore MEMBARRIER_CMD_PRIVATE_EXPEDITED must still work
 * (EPERM when not registered) and MEMBARRIER_CMD_GET_REGISTRATIONS shows the same mask.
 */
#include "zoo.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>

#ifndef MEMBARRIER_CMD_GET_REGISTRATIONS
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)
#endif

enum { REGISTRATIONS = 1, ITEMS = REGISTRATIONS };

static long membarrier(int cmd)
{
	return syscall(SYS_membarrier, cmd, 0, 0);
}

int main(int argc, char **argv)
{
	long before, after;

	zoo_init(argc, argv, ITEMS);
	if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
		zoo_die("membarrier register");
	before = membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS);
	if (before < 0)
		zoo_die("membarrier get registrations");
	zoo_ready();
	if (ZOO_BREAK(REGISTRATIONS) && membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED))
		zoo_die("membarrier register global");
	zoo_wait();

	after = membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS);
	ZOO_CHECK(REGISTRATIONS, after == before, "registrations %#lx, want %#lx", after, before);
	/* Not an item: a registration cannot be dropped, so the workload cannot make the
	 * command fail once it is registered. */
	ZOO_CHECK(ZOO_UNBREAKABLE, membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0,
		  "private expedited membarrier: %s", strerror(errno));
	return zoo_done();
}
