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
	ZOO_CHECK(zoo_hash(slice(who), HALF) == expected(10 + who),
		  "%s: round-1 data of slice %d changed", name, who);
}

static int exited_with(pid_t pid, int code, const char *who)
{
	int status;

	if (waitpid(pid, &status, 0) != pid) {
		zoo_fail("waitpid %s (%d): %s", who, pid, strerror(errno));
		return 0;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != code) {
		zoo_fail("%s (%d) ended with status %#x, want exit %d", who, pid, status, code);
		return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	struct ctl *ctl;
	pid_t me, kids[2];
	int ready[2], i;
	char c;
	size_t k;

	zoo_init(argc, argv);
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
			ZOO_CHECK(ctl->round2 == 1, "%s: P's flag not seen (%u)", name, ctl->round2);
			check_round1(i + 1, name);
			zoo_fill(slice(i + 1) + HALF, HALF, 20 + i + 1);
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
	if (zoo_corrupt)
		slice(0)[4321] ^= 0x5a;
	zoo_wait();

	ctl->round2 = 1;
	for (i = 0; i < 2; i++)
		if (kill(kids[i], SIGTERM))
			zoo_fail("kill C%d: %s", i + 1, strerror(errno));
	for (i = 0; i < 2; i++)
		exited_with(kids[i], 0, i ? "C2" : "C1");
	for (i = 0; i < 3; i++)
		check_round1(i, "P");
	for (i = 1; i < 3; i++)
		ZOO_CHECK(zoo_hash(slice(i) + HALF, HALF) == expected(20 + i),
			  "P: round-2 data of C%d not seen", i);
	for (k = sizeof(*ctl); k < SLICE; k++)
		if (region[k]) {
			zoo_fail("P: byte %zu of the untouched part is %#x", k, region[k]);
			break;
		}
	for (k = 0; k < HALF; k++)
		if (slice(0)[HALF + k]) {
			zoo_fail("P: byte %zu of P's unwritten half is %#x", k, slice(0)[HALF + k]);
			break;
		}
	return zoo_done();
}
