/*
 * The benchmark workload: MIB MiB of anonymous private memory, every page touched with
 * non-zero pseudo-random bytes from SEED and checksummed; optionally THREADS extra threads
 * or CHILDREN child processes that only wait. It becomes a session leader, closes every
 * inherited fd above 2, writes "ready\n" to $ZOO_READY, waits for SIGTERM, then re-checks
 * the checksum: exit 0 and "PASS", or exit 1 and "FAIL: ...".
 *
 * Heartbeat (for the bench's frozen time, measured from outside the tools): when
 * $ZOO_HEARTBEAT names a file (at least HB_FILE_SIZE bytes), it is mapped MAP_SHARED (its
 * fd closed at once) and each process waits in its main thread, as it would otherwise, until
 * SIGUSR1 arrives while the file's control word is 1. From then until SIGTERM or until the
 * control word is 0 again, it stores the CLOCK_MONOTONIC time into its slot every period
 * (the root: slot 0, root_period_ns; child i: slot 1 + i, child_period_ns), sleeping with
 * TIMER_ABSTIME: a deadline that passed while the process was frozen ends the sleep at once,
 * so the first beat after a thaw comes at the thaw. Layout, little-endian u64 words: header
 * [control, root_period_ns, child_period_ns, 0...] (64 bytes), then HB_SLOTS slots of 32
 * words: [seq (odd while the slot is written), pid, period_ns, beats, first_ns, last_ns,
 * max_gap_ns, ngaps, then (start, end) of the last HB_RING gaps longer than 2 periods, the
 * newest at index (ngaps - 1) % HB_RING].
 *
 * `conns N`: N established TCP connections on loopback, both ends held by the root, each
 * with 64 bytes the client end sent and the server end has not read; at SIGTERM each
 * server end must hold exactly those bytes, and one more byte must go through each
 * connection (dumped with --tcp-established).
 *
 * usage: memfill MIB SEED [threads N | children N | conns N]
 */
#include "zoo.h"
#include <pthread.h>
#include <sys/mman.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#define CHUNK (1ul << 20)

/* What the workload checks (zoo.h's items): its memory, and that its children ended well. */
enum { MEMORY = 1, CHILDREN, CONNS, ITEMS = CONNS };

#define CONN_BYTES 64

static void conn_bytes(unsigned char *b, long i)
{
	for (int k = 0; k < CONN_BYTES; k++)
		b[k] = (unsigned char)(i * 7 + k * 13 + 1);
}

/* n connections on loopback: fds[2i] the client end, fds[2i + 1] the server end. */
static int *make_conns(long n)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	struct rlimit rl = { .rlim_cur = (rlim_t)(2 * n + 64), .rlim_max = (rlim_t)(2 * n + 64) };
	int *fds = calloc((size_t)(2 * n), sizeof(int)), l;
	struct rlimit cur;

	if (!fds || getrlimit(RLIMIT_NOFILE, &cur))
		zoo_die("conns");
	if (cur.rlim_cur < rl.rlim_cur) {
		if (cur.rlim_max > rl.rlim_max)
			rl.rlim_max = cur.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			zoo_die("RLIMIT_NOFILE");
	}
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, len) || listen(l, 128) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		zoo_die("listener");
	for (long i = 0; i < n; i++) {
		unsigned char b[CONN_BYTES];

		fds[2 * i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[2 * i] < 0 || connect(fds[2 * i], (struct sockaddr *)&a, len))
			zoo_die("connect");
		fds[2 * i + 1] = accept(l, NULL, NULL);
		if (fds[2 * i + 1] < 0)
			zoo_die("accept");
		conn_bytes(b, i);
		if (write(fds[2 * i], b, CONN_BYTES) != CONN_BYTES)
			zoo_die("write");
	}
	close(l);
	return fds;
}

static void check_conns(const int *fds, long n)
{
	for (long i = 0; i < n; i++) {
		unsigned char want[CONN_BYTES], got[CONN_BYTES + 1];
		char x = 0;
		ssize_t r;

		conn_bytes(want, i);
		r = recv(fds[2 * i + 1], got, sizeof(got), MSG_DONTWAIT);
		ZOO_CHECK(CONNS, r == CONN_BYTES && memcmp(got, want, CONN_BYTES) == 0,
			  "connection %ld: %zd bytes queued, want its %d", i, r, CONN_BYTES);
		ZOO_CHECK(CONNS,
			  write(fds[2 * i + 1], "x", 1) == 1 && read(fds[2 * i], &x, 1) == 1 && x == 'x',
			  "connection %ld: a byte did not go through", i);
	}
}

#define HB_SLOTS 63
#define HB_RING 12
#define HB_FILE_SIZE (64 + HB_SLOTS * 256)

struct hb_slot {
	uint64_t seq, pid, period_ns, beats, first_ns, last_ns, max_gap_ns, ngaps;
	uint64_t gaps[HB_RING][2];
};

struct hb_file {
	uint64_t control, root_period_ns, child_period_ns, pad[5];
	struct hb_slot slot[HB_SLOTS];
};

static struct hb_file *hb;
static volatile sig_atomic_t hb_kick;

static void hb_usr1(int sig)
{
	(void)sig;
	hb_kick = 1;
}

static uint64_t hb_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + t.tv_nsec;
}

/* Maps $ZOO_HEARTBEAT if given, and blocks SIGUSR1 (delivered only while waiting). */
static void hb_init(void)
{
	const char *path = getenv("ZOO_HEARTBEAT");
	struct sigaction sa;
	sigset_t set;
	void *m;
	int fd;

	if (!path || !*path)
		return;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		zoo_die("open ZOO_HEARTBEAT");
	m = mmap(NULL, HB_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		zoo_die("mmap ZOO_HEARTBEAT");
	close(fd);
	hb = m;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = hb_usr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		zoo_die("sigaction(SIGUSR1)");
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		zoo_die("sigprocmask");
	/* A 100 us period must not be stretched by the default 50 us timer slack. */
	prctl(PR_SET_TIMERSLACK, 1ul);
}

static void hb_store(uint64_t *w, uint64_t v)
{
	__atomic_store_n(w, v, __ATOMIC_RELAXED);
}

/* One beat at time t into slot s: a seqlock write, so a reader sees whole slots. */
static void hb_beat(struct hb_slot *s, uint64_t t)
{
	uint64_t seq = s->seq, gap = s->beats ? t - s->last_ns : 0;

	hb_store(&s->seq, seq + 1);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	if (!s->beats)
		hb_store(&s->first_ns, t);
	if (gap > s->max_gap_ns)
		hb_store(&s->max_gap_ns, gap);
	if (gap > 2 * s->period_ns) {
		uint64_t *g = s->gaps[s->ngaps % HB_RING];

		hb_store(&g[0], s->last_ns);
		hb_store(&g[1], t);
		hb_store(&s->ngaps, s->ngaps + 1);
	}
	hb_store(&s->last_ns, t);
	hb_store(&s->beats, s->beats + 1);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	hb_store(&s->seq, seq + 2);
}

/* Beats into slot `idx` until SIGTERM or until the control word is 0. */
static void hb_run(unsigned idx)
{
	struct hb_slot *s = &hb->slot[idx];
	uint64_t period = idx ? hb->child_period_ns : hb->root_period_ns, next, t;
	struct timespec ts;

	if (!period)
		period = 100000;
	hb_store(&s->pid, getpid());
	hb_store(&s->period_ns, period);
	next = hb_now();
	while (!zoo_term && __atomic_load_n(&hb->control, __ATOMIC_RELAXED) == 1) {
		next += period;
		ts.tv_sec = next / 1000000000u;
		ts.tv_nsec = next % 1000000000u;
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		t = hb_now();
		hb_beat(s, t);
		/* Late (starved, or frozen): the next beat is one period from now, not a burst. */
		if (t > next)
			next = t;
	}
}

/*
 * zoo_wait() with the heartbeat: sleeps in sigsuspend() until SIGTERM; a SIGUSR1 while the
 * control word is 1 starts beating into slot `idx` (with SIGTERM and SIGUSR1 deliverable).
 */
static void hb_wait(unsigned idx)
{
	sigset_t mask, old;

	if (!hb) {
		zoo_wait();
		return;
	}
	zoo_wait_mask(&mask);
	sigdelset(&mask, SIGUSR1);
	while (!zoo_term) {
		if (hb_kick && __atomic_load_n(&hb->control, __ATOMIC_RELAXED) == 1) {
			hb_kick = 0;
			sigprocmask(SIG_SETMASK, &mask, &old);
			hb_run(idx);
			sigprocmask(SIG_SETMASK, &old, NULL);
			continue;
		}
		hb_kick = 0;
		sigsuspend(&mask);
	}
}

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
	int children = 0, conns = 0, *conn_fds = NULL;
	pid_t *kids = NULL;

	if (argc < 3) {
		fprintf(stderr, "usage: memfill MIB SEED [threads N | children N]\n");
		return 2;
	}
	if (setsid() < 0)
		zoo_die("setsid");
	if (syscall(SYS_close_range, 3, ~0u, 0) != 0)
		zoo_die("close_range");
	zoo_init(argc, argv, ITEMS);
	hb_init();
	size = strtoull(argv[1], NULL, 0) << 20;
	seed = strtoull(argv[2], NULL, 0);
	if (argc >= 5) {
		extra = strtol(argv[4], NULL, 0);
		children = strcmp(argv[3], "children") == 0;
		conns = strcmp(argv[3], "conns") == 0;
	}
	if (children && extra >= HB_SLOTS) {
		fprintf(stderr, "memfill: at most %d children\n", HB_SLOTS - 1);
		return 2;
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
				hb_wait(1 + i);
				_exit(0);
			}
		}
	} else if (conns) {
		conn_fds = make_conns(extra);
	} else {
		for (i = 0; i < extra; i++) {
			pthread_t t;

			if (pthread_create(&t, NULL, idle_thread, NULL))
				zoo_die("pthread_create");
		}
	}

	zoo_ready();
	hb_wait(0);

	for (c = 0; c < nchunks; c++)
		ZOO_CHECK(MEMORY, zoo_hash(m + c * CHUNK, CHUNK) == hashes[c], "chunk %zu at %p changed",
			  c, (void *)(m + c * CHUNK));
	if (conns)
		check_conns(conn_fds, extra);
	if (children) {
		for (i = 0; i < extra; i++) {
			int st;

			kill(kids[i], SIGTERM);
			ZOO_CHECK(CHILDREN, waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) &&
					  WEXITSTATUS(st) == 0,
				  "child %ld did not exit cleanly", i);
		}
	}
	return zoo_done();
}
