/*
 * SysV shared memory across processes.
 *
 *   A: IPC_PRIVATE, 3 pages + 100 bytes of a pattern, attached read-write by P and (across
 *      fork) by child C, then marked removed (IPC_RMID: SHM_DEST, it lives while attached).
 *   B: a keyed segment (key 0x7a<pid>), 2 pages, page 1 written, attached read-only by P;
 *      it outlives its attaches (P removes it at the end).
 * After SIGTERM: P tells C (SIGTERM) to write round-2 bytes into A and exit; then P checks
 * it sees them through its own attach (one segment), A's pattern, A still marked removed
 * and attached once, B's key, size, contents and read-only attach, and the segment ids.
 * A segment's size cannot change, nor can a removed segment come back: those are checked,
 * but no items.
 */
#include "zoo.h"

#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define PG 4096
#define A_SIZE (3 * PG + 100)
#define B_SIZE (2 * PG)

enum {
	A_PATTERN = 1, /* A's pattern, as C and P see it */
	A_SHARED,      /* P sees C's round-2 write: one segment */
	A_NATTCH,      /* attached once (by P) once C is gone */
	A_MODE,
	A_RDWR,        /* P's attach is read-write */
	B_KEYED,       /* the key still names B, which is not marked removed */
	B_MODE,
	B_CONTENTS,
	B_RDONLY,      /* P's attach is read-only */
	ITEMS = B_RDONLY
};

/* Mode `mode` for segment `id`. */
static void set_mode(int id, unsigned mode)
{
	struct shmid_ds ds;

	if (shmctl(id, IPC_STAT, &ds))
		zoo_die("IPC_STAT");
	ds.shm_perm.mode = mode;
	if (shmctl(id, IPC_SET, &ds))
		zoo_die("IPC_SET");
}

/* Attaches segment `id` at `addr` again, with `flags`. */
static void reattach(int id, void *addr, int flags)
{
	if (shmdt(addr) || shmat(id, addr, flags) != addr)
		zoo_die("reattach");
}

static unsigned char pattern_at(size_t i)
{
	return (unsigned char)(i * 37 + 11);
}

/* Whether the mapping at `addr` shows permissions `perms` in /proc/self/maps. */
static int maps_perms(void *addr, const char *perms)
{
	char line[512], want[32];
	FILE *f = fopen("/proc/self/maps", "r");
	int found = 0;

	if (!f)
		return 0;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, want, strlen(want)) == 0)
			found = strstr(line, perms) != NULL;
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	unsigned char *a, *b;
	int ida, idb;
	struct shmid_ds ds;
	key_t key;
	pid_t me, kid;
	int ready[2];
	size_t i;
	char c;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	key = 0x7a000000 | (me & 0xffffff);
	ida = shmget(IPC_PRIVATE, A_SIZE, IPC_CREAT | 0600);
	idb = shmget(key, B_SIZE, IPC_CREAT | IPC_EXCL | 0640);
	if (ida < 0 || idb < 0)
		zoo_die("shmget");
	a = shmat(ida, NULL, 0);
	b = shmat(idb, NULL, 0);
	if (a == (void *)-1 || b == (void *)-1)
		zoo_die("shmat");
	for (i = 0; i < A_SIZE; i++)
		a[i] = pattern_at(i);
	memset(b + PG, 0x5b, PG);
	if (shmdt(b))
		zoo_die("shmdt b");
	b = shmat(idb, NULL, SHM_RDONLY);
	if (b == (void *)-1)
		zoo_die("shmat b read-only");
	if (shmctl(ida, IPC_RMID, NULL))
		zoo_die("IPC_RMID a");
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
		ZOO_CHECK(A_PATTERN, a[2 * PG + 1] == pattern_at(2 * PG + 1), "C: pattern of A lost");
		if (ZOO_BREAK(A_SHARED)) {
			/* C's attach becomes a private copy: its write stays C's. */
			static unsigned char copy[A_SIZE];

			memcpy(copy, a, A_SIZE);
			if (shmdt(a) || mmap(a, A_SIZE, PROT_READ | PROT_WRITE,
					     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != a)
				zoo_die("replace the attach");
			memcpy(a, copy, A_SIZE);
		}
		memcpy(a + PG, "round2", 6);
		return zoo_failures ? 1 : 0;
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		zoo_die("child did not get ready");
	close(ready[0]);

	zoo_ready();
	if (ZOO_BREAK(A_PATTERN))
		a[PG * 2 + 50] ^= 0x77;
	if (ZOO_BREAK(A_NATTCH) && shmat(ida, NULL, 0) == (void *)-1)
		zoo_die("attach A again");
	if (ZOO_BREAK(A_MODE))
		set_mode(ida, 0640);
	if (ZOO_BREAK(A_RDWR))
		reattach(ida, a, SHM_RDONLY);
	if (ZOO_BREAK(B_KEYED) && shmctl(idb, IPC_RMID, NULL))
		zoo_die("IPC_RMID b");
	if (ZOO_BREAK(B_MODE))
		set_mode(idb, 0600);
	if (ZOO_BREAK(B_CONTENTS)) {
		reattach(idb, b, 0);
		b[PG + 9] ^= 1;
		reattach(idb, b, SHM_RDONLY);
	}
	if (ZOO_BREAK(B_RDONLY))
		reattach(idb, b, 0);
	zoo_wait();

	if (kill(kid, SIGTERM))
		zoo_fail(0, "kill C: %s", strerror(errno));
	zoo_reap(kid, "C");

	ZOO_CHECK(A_SHARED, memcmp(a + PG, "round2", 6) == 0, "C's write into A not seen by P");
	for (i = 0; i < A_SIZE; i++) {
		if (i >= PG && i < PG + 6)
			continue;
		if (a[i] != pattern_at(i)) {
			zoo_fail(A_PATTERN, "byte %zu of A is %#x", i, a[i]);
			break;
		}
	}
	if (shmctl(ida, IPC_STAT, &ds)) {
		zoo_fail(0, "IPC_STAT of A (id %d): %s", ida, strerror(errno));
	} else {
		ZOO_CHECK(ZOO_UNBREAKABLE, ds.shm_perm.mode & SHM_DEST,
			  "A is no longer marked removed");
		ZOO_CHECK(A_NATTCH, ds.shm_nattch == 1, "A attached %lu times, want 1",
			  (unsigned long)ds.shm_nattch);
		ZOO_CHECK(ZOO_UNBREAKABLE, ds.shm_segsz == A_SIZE, "A is %zu bytes",
			  (size_t)ds.shm_segsz);
		ZOO_CHECK(A_MODE, (ds.shm_perm.mode & 0777) == 0600, "A mode %o", ds.shm_perm.mode);
	}
	if (shmctl(idb, IPC_STAT, &ds)) {
		zoo_fail(0, "IPC_STAT of B (id %d): %s", idb, strerror(errno));
	} else {
		ZOO_CHECK(B_KEYED, shmget(key, 0, 0) == idb && !(ds.shm_perm.mode & SHM_DEST),
			  "key %#x no longer names segment %d, or it is marked removed", key, idb);
		ZOO_CHECK(ZOO_UNBREAKABLE, ds.shm_segsz == B_SIZE, "B is %zu bytes",
			  (size_t)ds.shm_segsz);
		ZOO_CHECK(B_MODE, (ds.shm_perm.mode & 0777) == 0640, "B mode %o", ds.shm_perm.mode);
	}
	for (i = 0; i < B_SIZE; i++)
		if (b[i] != (i >= PG ? 0x5b : 0)) {
			zoo_fail(B_CONTENTS, "byte %zu of B is %#x", i, b[i]);
			break;
		}
	ZOO_CHECK(B_RDONLY, maps_perms(b, "r--s"), "B is not attached read-only");
	ZOO_CHECK(A_RDWR, maps_perms(a, "rw-s"), "A is not attached read-write");
	shmctl(idb, IPC_RMID, NULL);
	return zoo_done();
}
