/* A personality with ADDR_NO_RANDOMIZE and UNAME26: its value, and UNAME26 in effect. */
#include "zoo.h"
#include <sys/personality.h>
#include <sys/utsname.h>

/* One item: the effect cannot be broken apart from the value it follows from. */
enum { PERSONALITY = 1, ITEMS = PERSONALITY };

int main(int argc, char **argv)
{
	unsigned long want = PER_LINUX | ADDR_NO_RANDOMIZE | UNAME26;
	struct utsname u;
	int got;

	zoo_init(argc, argv, ITEMS);
	if (personality(want) < 0)
		zoo_die("personality");

	zoo_ready();
	if (ZOO_BREAK(PERSONALITY))
		personality(want | ADDR_COMPAT_LAYOUT);
	zoo_wait();

	got = personality(0xffffffff);
	ZOO_CHECK(PERSONALITY,
		  (unsigned long)got == want && uname(&u) == 0 && strncmp(u.release, "2.6.", 4) == 0,
		  "personality %#x, want %#lx, with UNAME26 in effect (release %s)", got, want,
		  u.release);
	return zoo_done();
}
