/* Protections: one 14-page area split by mprotect into RW, PROT_NONE guard, read-only with
 * data, PROT_NONE holding data, read+exec with code, and a trailing guard. Faults on the
 * guards must still happen. */
#include "zoo.h"
#include <setjmp.h>
#include <sys/mman.h>

#define PG 4096

static sigjmp_buf jb;
static volatile int faults;

static void on_segv(int sig)
{
	(void)sig;
	faults++;
	siglongjmp(jb, 1);
}

static int touches(volatile unsigned char *p)
{
	if (sigsetjmp(jb, 1))
		return 0;
	(void)*p;
	return 1;
}

static void check_perms(const void *addr, const char *want)
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
			ZOO_CHECK(strcmp(perms, want) == 0, "vma at %p is %s, want %s", addr, perms,
				  want);
		}
	}
	if (f)
		fclose(f);
	ZOO_CHECK(found, "no vma starts at %p (want %s)", addr, want);
}

int main(int argc, char **argv)
{
	static const unsigned char code[] = {0xb8, 42, 0, 0, 0, 0xc3}; /* mov $42,%eax; ret */
	unsigned char *a, *rw, *g1, *ro, *hidden, *rx, *g2;
	uint64_t rw_hash, ro_hash, hidden_hash;
	int (*fn)(void);

	zoo_init(argc, argv);
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
	if (zoo_corrupt)
		mprotect(g1, 2 * PG, PROT_READ);
	zoo_wait();

	check_perms(rw, "rw-p");
	check_perms(g1, "---p");
	check_perms(ro, "r--p");
	check_perms(hidden, "---p");
	check_perms(rx, "r-xp");
	check_perms(g2, "---p");
	ZOO_CHECK(zoo_hash(rw, 4 * PG) == rw_hash, "rw pages differ");
	ZOO_CHECK(zoo_hash(ro, 3 * PG) == ro_hash, "read-only pages differ");
	ZOO_CHECK(!touches(g1) && !touches(g1 + PG) && !touches(g2 + PG) && !touches(hidden),
		  "a guard page is accessible");
	ZOO_CHECK(touches(ro) && touches(rw), "an accessible page faults");
	ZOO_CHECK(faults == 4, "%d faults, want 4", faults);
	fn = (int (*)(void))(void *)rx;
	ZOO_CHECK(fn() == 42, "code page does not run");
	if (mprotect(hidden, 2 * PG, PROT_READ) == 0)
		ZOO_CHECK(zoo_hash(hidden, 2 * PG) == hidden_hash,
			  "data under PROT_NONE was lost");
	return zoo_done();
}
