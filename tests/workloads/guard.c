/* Protections: one 14-page area split by mprotect into RW, PROT_NONE guard, read-only with
 * data, PROT_NONE holding data, read+exec with code, and a trailing guard. Faults on the
 * guards must still happen. */
#include "zoo.h"
#include <setjmp.h>
#include <sys/mman.h>

#define PG 4096

/* An area's item covers its protection in /proc/self/maps and what an access does. */
enum {
	RW = 1,      /* rw-p, readable */
	RW_DATA,
	GUARD1,      /* ---p, both pages fault */
	RO,          /* r--p, readable */
	RO_DATA,
	HIDDEN,      /* ---p, faults */
	HIDDEN_DATA, /* readable again after mprotect(PROT_READ), intact */
	RX,          /* r-xp, and its code runs (returns 42) */
	GUARD2,      /* ---p, faults */
	ITEMS = GUARD2
};

static sigjmp_buf jb;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(jb, 1);
}

static int touches(volatile unsigned char *p)
{
	if (sigsetjmp(jb, 1))
		return 0;
	(void)*p;
	return 1;
}

static void check_perms(int item, const void *addr, const char *want)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long start, end;
	char perms[8];
	int found = 0;

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) != 3)
			continue;
		if (start == (unsigned long)addr) {
			found = 1;
			ZOO_CHECK(item, strcmp(perms, want) == 0, "vma at %p is %s, want %s", addr,
				  perms, want);
		}
	}
	if (f)
		fclose(f);
	ZOO_CHECK(item, found, "no vma starts at %p (want %s)", addr, want);
}

int main(int argc, char **argv)
{
	static const unsigned char code[] = {0xb8, 42, 0, 0, 0, 0xc3}; /* mov $42,%eax; ret */
	unsigned char *a, *rw, *g1, *ro, *hidden, *rx, *g2;
	uint64_t rw_hash, ro_hash, hidden_hash;
	int (*fn)(void);

	zoo_init(argc, argv, ITEMS);
	signal(SIGSEGV, on_segv);
	a = mmap(NULL, 14 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		zoo_die("mmap");
	rw = a;                /* 4 pages rw */
	g1 = a + 4 * PG;       /* 2 pages guard */
	ro = a + 6 * PG;       /* 3 pages r-- with data */
	hidden = a + 9 * PG;   /* 2 pages --- with data */
	rx = a + 11 * PG;      /* 1 page r-x code */
	g2 = a + 12 * PG;      /* 2 pages guard */
	zoo_fill(rw, 4 * PG, 1);
	zoo_fill(ro, 3 * PG, 2);
	zoo_fill(hidden, 2 * PG, 3);
	memcpy(rx, code, sizeof(code));
	rw_hash = zoo_hash(rw, 4 * PG);
	ro_hash = zoo_hash(ro, 3 * PG);
	hidden_hash = zoo_hash(hidden, 2 * PG);
	if (mprotect(g1, 2 * PG, PROT_NONE) || mprotect(ro, 3 * PG, PROT_READ) ||
	    mprotect(hidden, 2 * PG, PROT_NONE) || mprotect(rx, PG, PROT_READ | PROT_EXEC) ||
	    mprotect(g2, 2 * PG, PROT_NONE))
		zoo_die("mprotect");

	zoo_ready();
	/* Each break keeps the areas next to it from merging with the broken one, but for
	 * the guard that becomes rw- and merges into the rw area (whose start stays). */
	if (ZOO_BREAK(RW))
		mprotect(rw, 4 * PG, PROT_READ);
	if (ZOO_BREAK(RW_DATA))
		rw[5] ^= 1;
	if (ZOO_BREAK(GUARD1))
		mprotect(g1, 2 * PG, PROT_READ | PROT_WRITE);
	if (ZOO_BREAK(RO))
		mprotect(ro, 3 * PG, PROT_READ | PROT_WRITE);
	if (ZOO_BREAK(RO_DATA) && !mprotect(ro, 3 * PG, PROT_READ | PROT_WRITE)) {
		ro[PG + 7] ^= 1;
		mprotect(ro, 3 * PG, PROT_READ);
	}
	if (ZOO_BREAK(HIDDEN))
		mprotect(hidden, 2 * PG, PROT_READ);
	if (ZOO_BREAK(HIDDEN_DATA) && !mprotect(hidden, 2 * PG, PROT_READ | PROT_WRITE)) {
		hidden[PG + 9] ^= 1;
		mprotect(hidden, 2 * PG, PROT_NONE);
	}
	if (ZOO_BREAK(RX) && !mprotect(rx, PG, PROT_READ | PROT_WRITE | PROT_EXEC)) {
		rx[1] = 43;
		mprotect(rx, PG, PROT_READ | PROT_EXEC);
	}
	if (ZOO_BREAK(GUARD2))
		mprotect(g2, 2 * PG, PROT_READ);
	zoo_wait();

	check_perms(RW, rw, "rw-p");
	check_perms(GUARD1, g1, "---p");
	check_perms(RO, ro, "r--p");
	check_perms(HIDDEN, hidden, "---p");
	check_perms(RX, rx, "r-xp");
	check_perms(GUARD2, g2, "---p");
	ZOO_CHECK(RW, touches(rw), "the rw area faults");
	ZOO_CHECK(RW_DATA, zoo_hash(rw, 4 * PG) == rw_hash, "rw pages differ");
	ZOO_CHECK(GUARD1, !touches(g1) && !touches(g1 + PG), "the first guard is accessible");
	ZOO_CHECK(RO, touches(ro), "the read-only area faults");
	ZOO_CHECK(RO_DATA, zoo_hash(ro, 3 * PG) == ro_hash, "read-only pages differ");
	ZOO_CHECK(HIDDEN, !touches(hidden), "the PROT_NONE data area is accessible");
	ZOO_CHECK(GUARD2, !touches(g2) && !touches(g2 + PG), "the second guard is accessible");
	fn = (int (*)(void))(void *)rx;
	ZOO_CHECK(RX, fn() == 42, "the code page does not return 42");
	ZOO_CHECK(HIDDEN_DATA,
		  mprotect(hidden, 2 * PG, PROT_READ) == 0 && zoo_hash(hidden, 2 * PG) == hidden_hash,
		  "data under PROT_NONE was lost");
	return zoo_done();
}
