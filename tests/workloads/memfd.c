/*
 * memfds: fds, mappings, contents, seals, positions, across two processes.
 *
 * P creates:
 *   A "zoo-memfd-a": 3 pages + 100 bytes of a pattern, MFD_ALLOW_SEALING, sealed
 *     F_SEAL_SHRINK|F_SEAL_GROW; an fd at position 1234 (fd kept open), mapped MAP_SHARED
 *     in P and in child C (inherited), and MAP_PRIVATE in P with one page changed
 *     privately (must stay private: A itself keeps the pattern).
 *   B "zoo-memfd-b": no sealing allowed (F_SEAL_SEAL), 64 KiB, only page 5 written, mapped
 *     only (its fd closed), by P.
 *   C inherits P's fd of A (one open description: a seek by C moves P's position).
 *   X "zoo-memfd-exec": a "#!/bin/true" script; after restore it must still be executable
 *     with execveat(fd, "", AT_EMPTY_PATH): a restore that reopens it read-write through
 *     /proc makes it "busy" (ETXTBSY).
 * After SIGTERM: P tells C (SIGTERM) to write round-2 bytes through its shared mapping of A
 * and seek the shared description to 777, waits for it, then checks: contents, sizes,
 * seals (growing A fails with EPERM), names (/proc/self/fd link), C's write seen through
 * P's mapping and through read() on the fd, the position C set, B's other pages zero,
 * P's private page intact. A memfd's name cannot change, nor can A's size (sealed): both
 * are checked, but no items.
 */
#include "zoo.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define PG 4096
#define A_SIZE (3 * PG + 100)
#define B_SIZE (64 * 1024)

enum {
	X_EXEC = 1,   /* the memfd script still runs through execveat */
	A_POSITION,   /* P sees the position C set on their shared description */
	A_SEALS,      /* A's seals, and growing it fails */
	A_SHARED,     /* C's write through its shared mapping is in A (read and P's mapping) */
	A_PATTERN,    /* the rest of A is the pattern (as P and C see it) */
	PRIVATE_PAGE, /* P's private mapping of A: its own change, the data, nothing leaked */
	B_BYTES,      /* B: page 5 written, the rest zero */
	ITEMS = B_BYTES
};

static unsigned char pattern_at(size_t i)
{
	return (unsigned char)(i * 131 + 7);
}

static void check_link(int fd, const char *want)
{
	char path[64], buf[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0) {
		zoo_fail(0, "readlink fd %d: %s", fd, strerror(errno));
		return;
	}
	buf[n] = 0;
	ZOO_CHECK(ZOO_UNBREAKABLE, strcmp(buf, want) == 0, "fd %d is %s, want %s", fd, buf, want);
}

int main(int argc, char **argv)
{
	unsigned char *shared_a, *private_a, *map_b, buf[A_SIZE];
	int a, b, x, status, seals, f;
	char proc[64];
	pid_t me, kid;
	size_t i;
	int ready[2];
	char c;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	a = memfd_create("zoo-memfd-a", MFD_ALLOW_SEALING);
	b = memfd_create("zoo-memfd-b", 0);
	x = memfd_create("zoo-memfd-exec", 0);
	if (a < 0 || b < 0 || x < 0)
		zoo_die("memfd_create");
	if (write(x, "#!/bin/true\n", 12) != 12)
		zoo_die("write x");
	for (i = 0; i < A_SIZE; i++)
		buf[i] = pattern_at(i);
	if (write(a, buf, A_SIZE) != A_SIZE)
		zoo_die("write a");
	if (fcntl(a, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW))
		zoo_die("F_ADD_SEALS");
	if (lseek(a, 1234, SEEK_SET) != 1234)
		zoo_die("lseek a");
	if (ftruncate(b, B_SIZE))
		zoo_die("ftruncate b");
	shared_a = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
	private_a = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, a, 0);
	map_b = mmap(NULL, B_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0);
	if (shared_a == MAP_FAILED || private_a == MAP_FAILED || map_b == MAP_FAILED)
		zoo_die("mmap");
	close(b);
	memset(map_b + 5 * PG, 0xb5, PG);
	private_a[PG + 10] = 0xee; /* a private copy of page 1 */
	if (pipe2(ready, O_CLOEXEC))
		zoo_die("pipe2");

	kid = fork();
	if (kid < 0)
		zoo_die("fork");
	if (kid == 0) {
		close(ready[0]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL))
			zoo_die("PR_SET_PDEATHSIG");
		if (getppid() != me)
			_exit(2);
		if (write(ready[1], "x", 1) != 1)
			zoo_die("write ready byte");
		close(ready[1]);
		zoo_wait();
		ZOO_CHECK(A_PATTERN, shared_a[2 * PG + 3] == pattern_at(2 * PG + 3),
			  "C: pattern of A lost");
		/* C's mapping becomes a private one: its write stays C's. */
		if (ZOO_BREAK(A_SHARED) &&
		    mmap(shared_a, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, a, 0) !=
			    shared_a)
			zoo_die("remap A privately");
		memcpy(shared_a + 2 * PG, "round2", 6);
		if (lseek(a, 777, SEEK_SET) != 777)
			zoo_fail(0, "C: lseek: %s", strerror(errno));
		return zoo_failures ? 1 : 0;
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		zoo_die("child did not get ready");
	close(ready[0]);

	zoo_ready();
	if (ZOO_BREAK(X_EXEC))
		fchmod(x, 0666);
	if (ZOO_BREAK(A_POSITION)) {
		/* Another description of A at P's fd: C's seek does not move it. */
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", a);
		f = open(proc, O_RDWR);
		if (f < 0 || lseek(f, 1234, SEEK_SET) != 1234 || dup2(f, a) != a)
			zoo_die("reopen A");
		close(f);
	}
	if (ZOO_BREAK(A_SEALS) && fcntl(a, F_ADD_SEALS, F_SEAL_SEAL))
		zoo_die("F_SEAL_SEAL");
	if (ZOO_BREAK(A_PATTERN))
		shared_a[3 * PG + 7] ^= 1;
	if (ZOO_BREAK(PRIVATE_PAGE))
		private_a[PG + 11] ^= 1;
	if (ZOO_BREAK(B_BYTES))
		map_b[5 * PG + 17] = 0;
	zoo_wait();

	if (kill(kid, SIGTERM))
		zoo_fail(0, "kill C: %s", strerror(errno));
	zoo_reap(kid, "C");

	check_link(a, "/memfd:zoo-memfd-a (deleted)");
	kid = fork();
	if (kid == 0) {
		const char *argv_[] = {"true", NULL}, *envp_[] = {NULL};

		syscall(SYS_execveat, x, "", argv_, envp_, AT_EMPTY_PATH);
		_exit(errno == ETXTBSY ? 3 : 4);
	}
	ZOO_CHECK(X_EXEC,
		  kid > 0 && waitpid(kid, &status, 0) == kid && WIFEXITED(status) &&
			  WEXITSTATUS(status) == 0,
		  "execveat of the memfd script: status %#x (3: ETXTBSY)", status);
	ZOO_CHECK(A_POSITION, lseek(a, 0, SEEK_CUR) == 777,
		  "position of A is %ld, want 777 (C's seek)", (long)lseek(a, 0, SEEK_CUR));
	ZOO_CHECK(ZOO_UNBREAKABLE, lseek(a, 0, SEEK_END) == A_SIZE, "size of A changed");
	seals = fcntl(a, F_GET_SEALS);
	ZOO_CHECK(A_SEALS,
		  seals == (F_SEAL_SHRINK | F_SEAL_GROW) && ftruncate(a, 10 * PG) == -1 &&
			  errno == EPERM,
		  "seals of A are %#x, or A can grow", seals);
	if (pread(a, buf, A_SIZE, 0) != A_SIZE)
		zoo_fail(0, "pread A: %s", strerror(errno));
	ZOO_CHECK(A_SHARED,
		  memcmp(buf + 2 * PG, "round2", 6) == 0 &&
			  memcmp(shared_a + 2 * PG, "round2", 6) == 0,
		  "C's write not in A, or not seen by P's map");
	for (i = 0; i < A_SIZE; i++) {
		if (i >= 2 * PG && i < 2 * PG + 6)
			continue;
		if (buf[i] != pattern_at(i)) {
			zoo_fail(A_PATTERN, "byte %zu of A is %#x", i, buf[i]);
			break;
		}
	}
	ZOO_CHECK(PRIVATE_PAGE,
		  private_a[PG + 10] == 0xee && private_a[PG + 11] == pattern_at(PG + 11) &&
			  shared_a[PG + 10] == pattern_at(PG + 10),
		  "P's private page of A lost its change or its data, or its write leaked into A");
	for (i = 0; i < B_SIZE; i++) {
		unsigned char want = (i >= 5 * PG && i < 6 * PG) ? 0xb5 : 0;

		if (map_b[i] != want) {
			zoo_fail(B_BYTES, "byte %zu of B is %#x, want %#x", i, map_b[i], want);
			break;
		}
	}
	return zoo_done();
}
