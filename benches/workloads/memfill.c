/*
 * The benchmark workload: MIB MiB of anonymous private memory, every page touched with
 * non-zero pseudo-random bytes from SEED and checksummed; optionally THREADS extra threads
 * or CHILDREN child processes that only wait. It becomes a session leader, closes every
 * inherited fd above 2, writes "ready\n" to $ZOO_READY, waits for SIGTERM, then re-checks
 * the checksum: exit 0 and "PASS", or exit 1 and "FAIL: ...".
 *
 * usage: memfill MIB SEED [threads N | children N]
 */
#include "zoo.h"
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define CHUNK (1ul << 20)

static void *idle_thread(void *arg)
{
	sigset_t none;

	(void)arg;
	sigemptyset(&none);
	sigaddset(&none, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &none, NULL);
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	size_t size, c, nchunks;
	uint64_t seed, *hashes;
	unsigned char *m = NULL;
	long extra = 0, i;
	int children = 0;
	pid_t *kids = NULL;

	if (argc < 3) {
		fprintf(stderr, "usage: memfill MIB SEED [threads N | children N]\n");
		return 2;
	}
	if (setsid() < 0)
		zoo_die("setsid");
	if (syscall(SYS_close_range, 3, ~0u, 0) != 0)
		zoo_die("close_range");
	zoo_init(argc, argv);
	size = strtoull(argv[1], NULL, 0) << 20;
	seed = strtoull(argv[2], NULL, 0);
	if (argc >= 5) {
		extra = strtol(argv[4], NULL, 0);
		children = strcmp(argv[3], "children") == 0;
	}

	nchunks = size / CHUNK;
	hashes = calloc(nchunks ? nchunks : 1, sizeof(*hashes));
	if (!hashes)
		zoo_die("calloc");
	if (size) {
		m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			zoo_die("mmap");
	}
	for (c = 0; c < nchunks; c++) {
		zoo_fill(m + c * CHUNK, CHUNK, seed * 1000003u + c + 1);
		hashes[c] = zoo_hash(m + c * CHUNK, CHUNK);
	}

	if (children) {
		kids = calloc(extra, sizeof(*kids));
		for (i = 0; i < extra; i++) {
			kids[i] = fork();
			if (kids[i] < 0)
				zoo_die("fork");
			if (kids[i] == 0) {
				zoo_wait();
				_exit(0);
			}
		}
	} else {
		for (i = 0; i < extra; i++) {
			pthread_t t;

			if (pthread_create(&t, NULL, idle_thread, NULL))
				zoo_die("pthread_create");
		}
	}

	zoo_ready();
	zoo_wait();

	for (c = 0; c < nchunks; c++)
		ZOO_CHECK(zoo_hash(m + c * CHUNK, CHUNK) == hashes[c], "chunk %zu at %p changed",
			  c, (void *)(m + c * CHUNK));
	if (children) {
		for (i = 0; i < extra; i++) {
			int st;

			kill(kids[i], SIGTERM);
			ZOO_CHECK(waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) &&
					  WEXITSTATUS(st) == 0,
				  "child %ld did not exit cleanly", i);
		}
	}
	return zoo_done();
}
