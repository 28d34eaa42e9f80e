/* A personality with ADDR_NO_RANDOMIZE and UNAME26. */
#include "zoo.h"
#include <sys/personality.h>
#include <sys/utsname.h>

int main(int argc, char **argv)
{
	unsigned long want = PER_LINUX | ADDR_NO_RANDOMIZE | UNAME26;
	struct utsname u;
	int got;

	zoo_init(argc, argv);
	if (personality(want) < 0)
		zoo_die("personality");

	zoo_ready();
	if (zoo_corrupt)
		personality(PER_LINUX);
	zoo_wait();

	got = personality(0xffffffff);
	ZOO_CHECK((unsigned long)got == want, "personality %#x, want %#lx", got, want);
	ZOO_CHECK(uname(&u) == 0 && strncmp(u.release, "2.6.", 4) == 0,
		  "UNAME26 not in effect: release %s", u.release);
	return zoo_done();
}
