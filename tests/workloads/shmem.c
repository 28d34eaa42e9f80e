/*
 * Shared anonymous memory across processes: P maps 4 MiB MAP_SHARED|MAP_ANONYMOUS and
 * forks C1 and C2. Layout of the region:
 *   page 0          control: the round-2 flag P sets before it signals the children
 *   MiB 1, 2, 3     the slices of P, C1, C2: first half written before ready (round 1),
 *                   second half written by the owner after SIGTERM (round 2)
 *   rest of page 0..MiB 1   never touched: must read as zeros
 * After SIGTERM, P sets the flag in the shared page and sends SIGTERM to the children;
 * each child checks it sees the flag (P's write), checks its round-1 data, writes its
 * round-2 half and exits. P then checks everyone's round-1 data and the children's round-2
 * halves (their writes, seen through the mapping): the region is still one object.
 */
#include "zoo.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define REGION (4u << 20)
#define SLICE (1u << 20)
#define HALF (SLICE / 2)

enum {
	P_ROUND1 = 1, /* P's round-1 data */
	C1_ROUND1,    /* C1's round-1 data, as C1 and P see it */
	C2_ROUND1,
	FLAG_SEEN,    /* the children see the flag P sets after SIGTERM */
	C1_ROUND2,    /* P sees what C1 wrote after SIGTERM */
	C2_ROUND2,
	UNTOUCHED,    /* the untouched part of the region reads zeros */
	P_HALF,       /* and so does P's unwritten half */
	ITEMS = P_HALF
};

struct ctl {
	volatile uint32_t round2;
};

static unsigned char *region;

static unsigned char *slice(int who)
{
	return region + (size_t)(who + 1) * SLICE;
}

static uint64_t expected(uint64_t seed)
{
	static unsigned char buf[HALF];

	zoo_fill(buf, HALF, seed);
	return zoo_hash(buf, HALF);
}

static void check_round1(int who, const char *name)
{
	ZOO_CHECK(P_ROUND1 + who, zoo_hash(slice(who), HALF) == expected(10 + who),
		  "%s: round-1 data of slice %d changed", name, who);
}

int main(int argc, char **argv)
{
	struct ctl *ctl;
	pid_t me, kids[2];
	int ready[2], i;
	char c;
	size_t k;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	region = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		zoo_die("mmap");
	ctl = (struct ctl *)region;
	if (pipe2(ready, O_CLOEXEC))
		zoo_die("pipe2");

	for (i = 0; i < 2; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			zoo_die("fork");
		if (kids[i] == 0) {
			char name[8];

			snprintf(name, sizeof(name), "C%d", i + 1);
			close(ready[0]);
			if (prctl(PR_SET_PDEATHSIG, SIGKILL))
				zoo_die("PR_SET_PDEATHSIG");
			if (getppid() != me)
				_exit(2);
			zoo_fill(slice(i + 1), HALF, 10 + i + 1);
			if (write(ready[1], "x", 1) != 1)
				zoo_die("write ready byte");
			close(ready[1]);
			zoo_wait();
			ZOO_CHECK(FLAG_SEEN, ctl->round2 == 1, "%s: P's flag not seen (%u)", name,
				  ctl->round2);
			check_round1(i + 1, name);
			zoo_fill(slice(i + 1) + HALF, HALF,
				 20 + i + 1 + (ZOO_BREAK(C1_ROUND2 + i) ? 100 : 0));
			return zoo_failures ? 1 : 0;
		}
	}
	close(ready[1]);
	zoo_fill(slice(0), HALF, 10);
	for (i = 0; i < 2; i++)
		if (read(ready[0], &c, 1) != 1)
			zoo_die("a child did not get ready");
	close(ready[0]);

	zoo_ready();
	for (i = 0; i < 3; i++)
		if (ZOO_BREAK(P_ROUND1 + i))
			slice(i)[4321] ^= 0x5a;
	/* P's flag page becomes a private one: its write stays P's. */
	if (ZOO_BREAK(FLAG_SEEN) && mmap(region, 4096, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != region)
		zoo_die("mmap");
	if (ZOO_BREAK(UNTOUCHED))
		region[100] = 1;
	if (ZOO_BREAK(P_HALF))
		slice(0)[HALF + 5] = 1;
	zoo_wait();

	ctl->round2 = 1;
	for (i = 0; i < 2; i++)
		if (kill(kids[i], SIGTERM))
			zoo_fail(0, "kill C%d: %s", i + 1, strerror(errno));
	for (i = 0; i < 2; i++)
		zoo_reap(kids[i], i ? "C2" : "C1");
	for (i = 0; i < 3; i++)
		check_round1(i, "P");
	for (i = 1; i < 3; i++)
		ZOO_CHECK(C1_ROUND2 + i - 1, zoo_hash(slice(i) + HALF, HALF) == expected(20 + i),
			  "P: round-2 data of C%d not seen", i);
	for (k = sizeof(*ctl); k < SLICE; k++)
		if (region[k]) {
			zoo_fail(UNTOUCHED, "P: byte %zu of the untouched part is %#x", k, region[k]);
			break;
		}
	for (k = 0; k < HALF; k++)
		if (slice(0)[HALF + k]) {
			zoo_fail(P_HALF, "P: byte %zu of P's unwritten half is %#x", k,
				 slice(0)[HALF + k]);
			break;
		}
	return zoo_done();
}
